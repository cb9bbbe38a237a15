"""Terminal output: stdout carries only the product (text, figures, --json); everything else goes to stderr.

The consoles look up sys.stdout / sys.stderr when they write, so click's
CliRunner captures them in tests. Long work shows a live rich bar on a terminal
and, when stderr is a file or a pipe (a log), complete plain lines instead:
``drive`` runs a generator of progress reports either way.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, Generator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

# Piped or redirected, rich would fit tables to 80 columns and cut the cells of a wide one (eval of several
# runs); there is no screen to fit then, so allow wider lines (tables stay as narrow as their contents).
_PIPE_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
out = Console(highlight=False, soft_wrap=True, width=_PIPE_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def colour() -> bool:
    """Whether stdout shows colours: a terminal, with colours, and no NO_COLOR in the environment."""
    return out.is_terminal and out.color_system is not None and not out.no_color


def fit_threads(work: str, device: str = "auto") -> None:
    """Before CPU work: as many torch threads as there are CPUs other processes leave free, said when that is
    fewer than usual (runtime.fit_threads_to_free_cpus; an explicit OMP_NUM_THREADS is left alone)."""
    from charlm import runtime

    if runtime.select_device(device).type == "cpu":
        note = runtime.fit_threads_to_free_cpus(work)
        if note:
            info(note)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)


def info(message: str) -> None:
    err.print(message, highlight=False)


def weight_decay_clause(optimizer: str, weight_decay: float) -> str:
    """'weight decay 0.1, ' for a run's settings line under AdamW; '' under SGD, which has none."""
    return f"weight decay {weight_decay:g}, " if optimizer == "adamw" else ""


def dropout_clause(dropout: float, kind: str = "standard", weight_drop: float = 0.0) -> str:
    """'dropout 0.2', 'dropout 0.2 locked', 'dropout 0.2, weight drop 0.3': a model's regularisation in words."""
    words = f"dropout {dropout:g}{' locked' if kind == 'locked' else ''}"
    return words + (f", weight drop {weight_drop:g}" if weight_drop else "")


def plain(message: str) -> None:
    """A complete line on stderr without markup, flushed at once: a log read after a crash still has it."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    err.file.flush()


PLAIN_EVERY_S = 10.0  # seconds between plain progress lines in a log


def drive(steps: Generator, make_bar: Callable[[], Progress], show: Callable, line: Callable | None = None):
    """Run a generator of progress reports to its end and return its value.

    On a terminal, ``show(bar, report)`` draws each report on the bar ``make_bar()`` makes on stderr.
    Otherwise ``line(report)`` (when given) words a report as one plain line: work that takes longer than
    PLAIN_EVERY_S prints one such line every PLAIN_EVERY_S seconds and one for its last report, so a log
    shows how far it got; quicker work prints none.
    """
    if err.is_terminal:
        with make_bar() as bar:
            while True:
                try:
                    report = next(steps)
                except StopIteration as stop:
                    return stop.value
                show(bar, report)
    printed_at, printed, pending = time.monotonic(), False, None
    while True:
        try:
            report = next(steps)
        except StopIteration as stop:
            if printed and pending is not None:
                plain(pending)
            return stop.value
        pending = line(report) if line is not None else None
        if pending is not None and time.monotonic() - printed_at >= PLAIN_EVERY_S:
            plain(pending)
            printed_at, printed, pending = time.monotonic(), True, None


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min': a time span for progress lines."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def training_progress() -> Progress:
    """Progress bar over the run's horizon (0..1000) with live train/val figures."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("step {task.fields[step]}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("val {task.fields[val]} ppl {task.fields[ppl]} bpc {task.fields[bpc]}"),
        TextColumn("{task.fields[rate]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        refresh_per_second=4,
    )


def transfer_progress() -> Progress:
    """Progress of a pass over a corpus: MB read, MB/s and time left, on stderr; cleared when done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


def jobs_progress() -> Progress:
    """Progress through a known number of jobs on stderr: the current one, a bar, done/total, time; cleared after."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def task_progress() -> Progress:
    """Progress of one long task whose description says how far it is: a bar, percent, time; cleared when done."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def comparison_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table
