"""The command line: the `charlm` group, its commands, and the one place where problems become exit codes.

One module per command (``charlm X`` lives in ``charlm/cli/X.py``; score,
inspect and report in explore.py; the diagnose group in diagnose.py). This
package is the only code that imports click, rich or prompt_toolkit, and the
only code that prints; the library below it returns values and yields reports.
The command modules import torch and the library inside their functions, so
`charlm --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from charlm import __version__
from charlm.errors import CharlmError


class CharlmGroup(click.Group):
    """A click group that reports problems as one line on stderr, no traceback: CharlmError as
    ``Error: …`` with exit status 1, a mistyped command line (click's usage errors) as ``Error: …
    (see 'charlm train --help')`` with click's exit status 2, and Ctrl-C as ``interrupted`` with 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharlmError as e:
            if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone reports the problem
                raise SystemExit(1) from None
            raise click.ClickException(str(e)) from None
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            click.echo(f"Error: {e.format_message()} (see '{where} --help')", err=True)
            raise SystemExit(e.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C where a command does not handle it (training does: it saves first)
            click.echo("\ninterrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charlm")
def cli():
    """Train, evaluate and sample character-level RNN / LSTM / GRU language models.

    \b
    Examples:
      charlm train shakespeare --time-budget 60s --out checkpoints/quickstart
      charlm sample checkpoints/quickstart --prompt "ROMEO:" --length 300
      charlm eval checkpoints/quickstart
    """


def main() -> None:
    try:
        cli(prog_name="charlm")
    except SystemExit as e:  # click ends every command with sys.exit(status)
        joined = sys.modules.get("charlm.distributed")  # imported (with torch) only by commands that may train
        if joined is not None and (e.code is None or isinstance(e.code, int)):
            joined.end_process(e.code or 0)  # returns unless this process joined a torchrun process group
        raise


def _register() -> None:
    from charlm.cli.classify import classify
    from charlm.cli.diagnose import COMMANDS as DIAGNOSE_COMMANDS
    from charlm.cli.eval import eval_
    from charlm.cli.explore import COMMANDS as EXPLORE_COMMANDS
    from charlm.cli.repl import repl
    from charlm.cli.sample import sample
    from charlm.cli.train import train

    for command in (train, eval_, sample, repl, *EXPLORE_COMMANDS, *DIAGNOSE_COMMANDS, classify):
        cli.add_command(command)


_register()
