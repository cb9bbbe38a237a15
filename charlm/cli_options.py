"""Click options shared by cli.py, cli_explore.py and cli_diagnose.py."""

from __future__ import annotations

import click

from charlm.config import IMPLS, UNKNOWN_POLICIES
from charlm.corpus import ENCODING_ERRORS


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                        show_default=True, help="Where to run; auto picks cuda, then mps, then cpu.")(f)


def encoding_errors_option(f):
    return click.option("--encoding-errors", type=click.Choice(ENCODING_ERRORS), default="strict", show_default=True,
                        help="What to do with bytes of the text that are not UTF-8.")(f)


def unknown_option(f):
    return click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error", show_default=True,
                        help="Characters the model never saw: error lists them; unk maps them to <unk>; skip drops them.")(f)


def impl_override_option(f):
    return click.option("--impl", type=click.Choice(IMPLS), default=None,
                        help="Run the checkpoint's weights with torch's fused kernels or the reference cells "
                             "(charlm.cells); default: the implementation it was trained with.")(f)
