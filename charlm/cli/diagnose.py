"""`charlm diagnose gradients` and `charlm diagnose memory`: the course's long-dependency lesson, measured.

The measurements live in charlm.diagnose and return values. Each command
checks its options (cheap things first), runs the measurement, and renders
it: a table and a terminal chart (plotext) on stdout, a PNG (matplotlib,
written atomically) or JSON. Registered by cli.py; the library is imported
inside the commands so that `charlm --help` does not load torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import click

from charlm.cli_explore import _write
from charlm.cli_options import check_writable, encoding_errors_option, unknown_option
from charlm.config import MemoryConfig, ModelConfig
from charlm.errors import ConfigError

COMMANDS: list = []
MODEL_DEFAULTS, MEMORY_DEFAULTS = ModelConfig(), MemoryConfig()
DEFAULT_CELLS = "rnn,lstm,gru"
SHOWN_DISTANCES = (1, 10, 50, 100, 200, 500)  # table columns that fit in the window, then its far end


@click.group(epilog="""\b
Examples:
  charlm diagnose gradients
  charlm diagnose gradients checkpoints/shakespeare --png gradients.png
  charlm diagnose memory --gaps 5,10,20,40
""")
def diagnose():
    """See the vanishing gradient, and measure how far back each cell remembers.

    `gradients` measures how the gradient of a late loss shrinks on its way back
    through time; `memory` trains each cell on a remember-across-a-gap task and
    reports the longest gap it bridges.
    """


COMMANDS.append(diagnose)


# ----- gradients --------------------------------------------------------------------------------------------


@diagnose.command(epilog="""\b
Examples:
  charlm diagnose gradients                           # fresh RNN, LSTM and GRU on Shakespeare
  charlm diagnose gradients --fresh --cells rnn,lstm --hidden 64 --layers 1 --length 200 --png grads.png
  charlm diagnose gradients checkpoints/shakespeare checkpoints/shakespeare-gru --text hamlet.txt --json
""")
@click.argument("checkpoints", nargs=-1, type=click.Path(path_type=Path))
@click.option("--fresh", is_flag=True, help="Also measure freshly initialised models of --cells (the default when no CHECKPOINTS are given).")
@click.option("--cells", "cells_spec", default=DEFAULT_CELLS, show_default=True, help="Cells of the --fresh models, comma-separated.")
@click.option("--hidden", "hidden_size", type=int, default=MODEL_DEFAULTS.hidden_size, show_default=True, help="Hidden units per layer of the --fresh models.")
@click.option("--layers", "num_layers", type=int, default=MODEL_DEFAULTS.num_layers, show_default=True, help="Layers of the --fresh models.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --fresh models' initial weights.")
@click.option("--text", "text_source", default="shakespeare", show_default=True, metavar="TEXT", help="Where the windows come from: a file, folder or shipped corpus name.")
@click.option("-T", "--length", type=int, default=100, show_default=True, help="Window length T: the loss is at its last step, gradients go back to its first.")
@click.option("--windows", type=int, default=8, show_default=True, help="Windows, evenly spaced over the text, whose norms are averaged.")
@click.option("--png", "png_out", type=click.Path(path_type=Path), help="Also write the chart as a PNG picture (needs matplotlib).")
@click.option("--chart/--no-chart", default=True, show_default=True, help="Draw the chart in the terminal.")
@click.option("--height", type=int, default=20, show_default=True, help="Terminal chart height in lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the norms at every distance as JSON instead.")
@encoding_errors_option
@unknown_option
def gradients(checkpoints, fresh, cells_spec, hidden_size, num_layers, seed, text_source, length, windows, png_out,
              chart, height, as_json, encoding_errors, unknown):
    """Show how ‖d loss_T / d h_t‖ shrinks as t goes back from T, for each model.

    Each window of T tokens is scored at its last position only; the norm of the
    gradient with respect to the top layer's hidden state h_t is measured for
    every t and averaged over the windows. A vanilla RNN's gradient vanishes
    geometrically; the LSTM's cell state carries it much further. Printed: the
    norms at a few distances, the far/near ratio and the average factor per step.
    """
    import torch

    from charlm import checkpoint as ckpt, corpus, diagnose as lib
    from charlm.tokenizer import CharTokenizer

    ctx = click.get_current_context()
    shaping = {"cells_spec": "--cells", "hidden_size": "--hidden", "num_layers": "--layers", "seed": "--seed"}
    given = [opt for name, opt in shaping.items() if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if checkpoints and not fresh and given:
        raise ConfigError(f"{', '.join(given)} shape the --fresh models: add --fresh to measure some beside the checkpoints")
    fresh = fresh or not checkpoints
    cells = lib.parse_cells(cells_spec) if fresh else []
    ModelConfig(num_layers=num_layers, hidden_size=hidden_size)  # checks the sizes
    lib.check_window(length, windows)
    if height < 10:
        raise ConfigError(f"--height must be at least 10 lines, got {height}")
    check_writable(png_out, "--png", "gradients.png")
    loaded = corpus.load_text(text_source, encoding_errors)
    default_text = ctx.get_parameter_source("text_source") == click.core.ParameterSource.DEFAULT
    models = []
    for path in checkpoints:
        ck = ckpt.load(path, "cpu")
        ids = _encode(ck.tokenizer, loaded.text, unknown, path, text_source if default_text else None)
        models.append((str(path), ck.model, torch.from_numpy(ids.astype("int64"))))
    if fresh:
        tokenizer = CharTokenizer.fit(loaded.text)
        ids = torch.from_numpy(tokenizer.encode(loaded.text).astype("int64"))
        models += [("fresh", lib.fresh_model(cell, tokenizer.vocab_size, hidden_size, num_layers, seed), ids)
                   for cell in cells]
    flows = lib.gradient_flow(models, length, windows)
    title = f"‖d loss_T / d h_t‖ against distance T − t, on {loaded.source} (mean of {windows} windows of {length})"
    if png_out is not None:
        _write(png_out, _gradient_png(flows, title))
    if as_json:
        click.echo(json.dumps({"text": loaded.source, "length": length, "windows": windows,
                               "models": [f.to_dict() for f in flows]}, ensure_ascii=False))
        return
    _print_gradients(flows, length, title, chart, height)


def _encode(tokenizer, text: str, unknown: str, path: Path, default_corpus: str | None):
    """A checkpoint's ids for the windows' text. When that text is the default (``default_corpus``, a shipped corpus
    in English), characters the model never saw mean a model of another language: the message says so."""
    from charlm.errors import TokenizerError
    from charlm.tokenizer import describe_chars

    try:
        return tokenizer.encode(text, unknown=unknown)
    except TokenizerError:
        if default_corpus is None:
            raise
    chars = tokenizer.unknown_chars(text)
    raise ConfigError(f"--text defaults to the shipped {default_corpus} corpus, which has {len(chars)} character(s) "
                      f"{path} never saw ({describe_chars(chars)}): pass --text FILE with text in the model's "
                      "language, or --unknown skip")


def _print_gradients(flows, length: int, title: str, chart: bool, height: int) -> None:
    from rich.text import Text

    from charlm import console

    distances = sorted({k for k in SHOWN_DISTANCES if 0 < k < length} | {length - 1})
    columns = ["model", *[f"k={k}" for k in distances], "ratio", "×/step"]
    rows = [[_label(f), *[f"{f.norms[k]:.1e}" for k in distances],
             f"{f.ratio:.0e}", f"{f.per_step:.2f}"] for f in flows]
    console.out.print(console.comparison_table(f"{title}; k = T − t steps back from the loss", columns, rows))
    console.out.print(f"ratio: the norm at k={length - 1} over the norm at k=1; ×/step: the average factor it shrinks "
                      "by for each step back", markup=False)
    if chart:
        width = max(40, min(console.out.size.width, 120))
        console.out.print(Text.from_ansi(_gradient_chart(flows, width, height, colour=console.out.is_terminal)))


def _label(flow) -> str:
    """'LSTM 2×256 (fresh)', or the cell and size followed by the run folder."""
    return f"{flow.cell.upper()} {flow.num_layers}×{flow.hidden_size} " + ("(fresh)" if flow.name == "fresh" else flow.name)


def _log_ticks(flows) -> list[int]:
    """Whole powers of ten spanning every norm: the y ticks of a chart of log10(norm)."""
    from charlm.curves import nice_ticks

    logs = [_log10(v) for f in flows for v in f.norms]
    low, high = math.floor(min(logs)), math.ceil(max(logs))
    return [int(t) for t in nice_ticks(low, high) if t == int(t)] or [low, high]


def _log10(value: float) -> float:
    return math.log10(max(value, 1e-300))  # a norm that underflowed to 0 sits at the bottom


def _gradient_chart(flows, width: int, height: int, colour: bool) -> str:
    """log10(norm) against distance as terminal text: lines in colour, numbered markers without."""
    import plotext

    from charlm.curves import nice_ticks

    fig = plotext.figure
    fig.clear()
    plotext.terminal.limit(False, False)  # the size below, whatever the terminal (or pipe) is
    fig.plot_size(width, height)
    fig.theme("simple")
    for i, f in enumerate(flows, start=1):
        signal = fig.signal(list(range(len(f.norms))), [_log10(v) for v in f.norms],
                            **({} if colour else {"marker": str(i % 10)})).label(_label(f))
        fig.draw(signal.lines() if colour else signal)
    ticks = _log_ticks(flows)
    fig.ruler("y").ticks(ticks, [f"1e{t}" for t in ticks])
    lowest = min(_log10(v) for f in flows for v in f.norms)
    fig.legend(x=0, y=lowest, va="bottom", relative=True)  # bottom left: the corner the decaying lines leave empty
    x_ticks = [int(t) for t in nice_ticks(0, len(flows[0].norms) - 1)]
    fig.ruler("x").ticks(x_ticks, [str(t) for t in x_ticks])
    return fig.build().string(colorless=not colour)


def _gradient_png(flows, title: str) -> bytes:
    from charlm.curves import figure_png, new_figure

    fig = new_figure((8, 4.5))
    ax = fig.subplots()
    for f in flows:
        ax.semilogy(range(len(f.norms)), [max(v, 1e-300) for v in f.norms], label=_label(f), lw=1.5)
    ax.set(xlabel="k = T − t (steps back from the loss)", ylabel="‖d loss_T / d h_t‖")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.suptitle(title, fontsize=10)
    return figure_png(fig)


# ----- memory -----------------------------------------------------------------------------------------------


@diagnose.command(epilog="""\b
Examples:
  charlm diagnose memory
  charlm diagnose memory --cells lstm,gru --gaps 20,40,80,160 --steps 5000
  charlm diagnose memory --gaps 2,5 --steps 200 --json
""")
@click.option("--cells", "cells_spec", default=DEFAULT_CELLS, show_default=True, help="Cells to train, comma-separated.")
@click.option("--gaps", "gaps_spec", default="2,5,10,20,40,80", show_default=True, help="Filler characters between the symbol and the query, comma-separated.")
@click.option("--steps", type=int, default=MEMORY_DEFAULTS.steps, show_default=True, help="Training steps at most, per cell and gap (it stops early once learned).")
@click.option("--hidden", "hidden_size", type=int, default=MEMORY_DEFAULTS.hidden_size, show_default=True, help="Hidden units (one layer).")
@click.option("-b", "--batch-size", type=int, default=MEMORY_DEFAULTS.batch_size, show_default=True, help="Sequences per step.")
@click.option("--lr", type=float, default=MEMORY_DEFAULTS.lr, show_default=True, help="Adam learning rate.")
@click.option("--threshold", type=float, default=MEMORY_DEFAULTS.threshold, show_default=True, help="Answer accuracy that counts as remembering (chance is 0.25).")
@click.option("--seed", type=int, default=MEMORY_DEFAULTS.seed, show_default=True, help="Seed of the weights and of the sequences.")
@click.option("--json", "as_json", is_flag=True, help="Print every result as JSON instead.")
def memory(cells_spec, gaps_spec, as_json, **options):
    """Train each cell briefly to remember a symbol across a gap; report the longest gap it bridges.

    A sequence is a symbol (A, B, C or D), N random filler letters, then '?':
    the model must answer the symbol. Only that answer is scored, on 500 fresh
    sequences after training. A cell bridges a gap when it reaches --threshold
    there and at every shorter gap; after its first miss, longer gaps are not
    tried. Each sequence is one training window, so backpropagation spans the
    whole gap; in `charlm train` a dependency longer than --seq-len cannot be
    learned, because truncated BPTT cuts the gradient at the window's edge.
    """
    from charlm import console, diagnose as lib

    config = MemoryConfig(**options)
    cells, gaps = lib.parse_cells(cells_spec), lib.parse_gaps(gaps_spec)
    results = []
    runs = lib.memory_probe(cells, gaps, config)
    if console.err.is_terminal:
        with console.jobs_progress() as bar:
            task = bar.add_task("memory", total=len(cells) * len(gaps))
            for result in runs:
                results.append(result)
                bar.update(task, advance=1, description=f"{result.cell} gap {result.gap}")
    else:
        results = list(runs)
    largest = {cell: lib.largest_gap([r for r in results if r.cell == cell], config.threshold) for cell in cells}
    if as_json:
        click.echo(json.dumps({"example": lib.example(gaps[0], config.seed), "chance": 1 / len(lib.SYMBOLS),
                               "test_sequences": lib.TEST_SIZE, "config": dataclasses.asdict(config),
                               "results": [r.to_dict() for r in results], "largest_gap": largest}))
        return
    _print_memory(results, cells, gaps, largest, config)


def _print_memory(results, cells: list[str], gaps: list[int], largest: dict, config: MemoryConfig) -> None:
    """One row per gap, one column per cell: accuracy (steps taken); the last row the largest gap bridged."""
    from charlm import console, diagnose as lib

    by_key = {(r.cell, r.gap): r for r in results}

    def shown(r) -> str:
        if r.accuracy is None:
            return "–"
        colour = "green" if r.accuracy >= config.threshold else "red"
        return f"[{colour}]{r.accuracy:.2f}[/] ({r.steps:,} steps)"

    rows = [[str(gap), *[shown(by_key[cell, gap]) for cell in cells]] for gap in gaps]
    rows.append(["[bold]bridged[/]", *[f"[bold]up to {largest[cell]}[/]" for cell in cells]])
    title = (f"answer accuracy on {lib.TEST_SIZE} fresh sequences per gap (chance {1 / len(lib.SYMBOLS):.2f}, "
             f"remembered at ≥ {config.threshold:g}); e.g. gap 5: {lib.example(5, config.seed)}")
    console.out.print(console.comparison_table(title, ["gap", *[cell.upper() for cell in cells]], rows))
    console.out.print(f"one layer of {config.hidden_size} units, one-hot input, Adam lr {config.lr:g}, up to "
                      f"{config.steps:,} steps of {config.batch_size} sequences, seed {config.seed}; "
                      "– = not tried after a shorter gap failed", markup=False)
