"""Click options shared by cli.py, cli_explore.py and cli_diagnose.py, and the check of an output path
(repl.py's :save too). No torch here: `charlm --help` stays fast."""

from __future__ import annotations

import os
from pathlib import Path

import click

from charlm.config import IMPLS, UNKNOWN_POLICIES
from charlm.corpus import ENCODING_ERRORS
from charlm.errors import ConfigError


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


def check_writable(path: Path | None, option: str, example: str) -> None:
    """Refuse, before any work, a ``path`` that cannot be written as a file because of what it names.

    ``option`` is how the user gave it ('--html', ':save'); ``example`` is a file name to suggest.
    """
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder: give a file name, e.g. {option} {path / example}")
    parent = path.parent
    if not parent.is_dir():
        why = "is a file, not a folder; pick" if parent.exists() else "does not exist; create it or pick"
        raise ConfigError(f"cannot write {option} {path}: folder {parent} {why} another path")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write {option} {path}: folder {parent} is not writable; pick another path")
