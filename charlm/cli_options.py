"""Click options shared by cli.py and cli_explore.py."""

from __future__ import annotations

import click

from charlm.config import UNKNOWN_POLICIES


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                        show_default=True, help="Where to run; auto picks cuda, then mps, then cpu.")(f)


def unknown_option(f):
    return click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error", show_default=True,
                        help="Characters the model never saw: error lists them; unk maps them to <unk>; skip drops them.")(f)
