"""Click options and parameter helpers shared by the command modules, and the check of an output path.

No torch here: `charlm --help` stays fast.
"""

from __future__ import annotations

import importlib.resources
import os
import shlex
from pathlib import Path

import click

from charlm.config import IMPLS, UNKNOWN_POLICIES, parse_duration
from charlm.corpus import ENCODING_ERRORS
from charlm.errors import ConfigError


def complete_corpus(ctx, param, incomplete: str):
    """Shell completion for a corpus: the shipped corpora's names, then the shell's own file names."""
    from click.shell_completion import CompletionItem

    from charlm.corpus import shipped_corpora

    names = [CompletionItem(name, help="shipped corpus") for name in shipped_corpora() if name.startswith(incomplete)]
    return names + [CompletionItem(incomplete, type="file")]


def complete_run(ctx, param, incomplete: str):
    """Shell completion for a run folder: the shipped models' names, then the shell's own folder names."""
    from click.shell_completion import CompletionItem

    root = Path(str(importlib.resources.files("charlm.checkpoints")))
    shipped = sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())
    names = [CompletionItem(name, help="shipped model") for name in shipped if name.startswith(incomplete)]
    return names + [CompletionItem(incomplete, type="dir")]


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                        show_default=True, help="Where to run; auto picks cuda, then mps, then cpu.")(f)


def encoding_errors_option(f):
    return click.option("--encoding-errors", type=click.Choice(ENCODING_ERRORS), default="strict", show_default=True,
                        help="What to do with bytes of the text that are not UTF-8.")(f)


def unknown_option(f):
    return click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error", show_default=True,
                        help="Characters the model never saw: error lists them; unk maps them to <unk>; skip drops "
                             "them.")(f)


def impl_override_option(f):
    return click.option("--impl", type=click.Choice(IMPLS), default=None,
                        help="Run the checkpoint's weights with torch's fused kernels or the reference cells "
                             "(charlm.cells); default: the implementation it was trained with.")(f)


def duration(ctx, param, value):
    """Click callback: '90s', '5m', '1.5h' (or bare seconds) → seconds."""
    return None if value is None else parse_duration(value)


def given(ctx: click.Context) -> set[str]:
    """Names of the parameters the user set on the command line (not left to their defaults)."""
    return {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}


def command_line(ctx: click.Context) -> str:
    """The command as the user gave it (arguments and explicitly set options), recorded in config.json."""
    words = ["charlm", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if param.name not in given(ctx):
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
        elif getattr(param, "is_flag", False):
            words.append(param.opts[-1] if value else (param.secondary_opts or [param.opts[-1]])[0])
        else:
            words += [param.opts[-1], f"{value:g}s" if param.name == "time_budget" else str(value)]
    return shlex.join(words)


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


def write_output(path: Path, data: bytes) -> None:
    """Write an output file atomically (a failure is a one-line CheckpointError) and say so on stderr."""
    from charlm.checkpoint import atomic_write
    from charlm.cli import console

    atomic_write(path, data)
    console.info(f"wrote {path}")
