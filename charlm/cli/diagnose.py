"""`charlm diagnose gradients` and `charlm diagnose memory`: the course's long-dependency lesson, measured.

The measurements live in charlm.explore.diagnose and return values. Each
command checks its options (cheap things first), runs the measurement, and
renders it: a table and a terminal chart on stdout, a PNG (written atomically)
or JSON. The library is imported inside the commands so that `charlm --help`
does not load torch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from rich.text import Text

from charlm.cli import console
from charlm.cli.options import (
    check_writable,
    complete_corpus,
    complete_run,
    encoding_errors_option,
    given,
    unknown_option,
    write_output,
)
from charlm.config import MemoryConfig, ModelConfig
from charlm.errors import ConfigError, CorpusError

COMMANDS: list = []
FRESH_TEXT = "shakespeare"  # the fresh models' text when no --text is given
DEFAULT_CELLS = "rnn,lstm,gru"
SHOWN_DISTANCES = (1, 10, 50, 100, 200, 500)  # table columns that fit in the window, then its far end


@click.group(epilog="""\b
Examples:
  charlm diagnose gradients
  charlm diagnose gradients checkpoints/shakespeare-lstm --png gradients.png
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
  charlm diagnose gradients checkpoints/shakespeare-lstm --json     # on the run's own validation text
""")
@click.argument("checkpoints", nargs=-1, type=click.Path(path_type=Path), shell_complete=complete_run)
@click.option("--fresh", is_flag=True,
              help="Also measure freshly initialised models of --cells (the default when no CHECKPOINTS are given).")
@click.option("--cells", "cells_spec", default=DEFAULT_CELLS, show_default=True,
              help="Cells of the --fresh models, comma-separated.")
@click.option("--hidden", "hidden_size", type=int, default=ModelConfig.hidden_size, show_default=True,
              help="Hidden units per layer of the --fresh models.")
@click.option("--layers", "num_layers", type=int, default=ModelConfig.num_layers, show_default=True,
              help="Layers of the --fresh models.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --fresh models' initial weights.")
@click.option("--text", "text_source", metavar="TEXT", shell_complete=complete_corpus,
              help="Where the windows come from: a file, folder or shipped corpus name (default: each run's own "
                   f"validation text; {FRESH_TEXT} for the fresh models).")
@click.option("-T", "--length", type=int, default=100, show_default=True,
              help="Window length T: the loss is at its last step, gradients go back to its first.")
@click.option("--windows", type=int, default=8, show_default=True,
              help="Windows, evenly spaced over the text, whose norms are averaged.")
@click.option("--png", "png_out", type=click.Path(path_type=Path),
              help="Also write the chart as a PNG picture (needs matplotlib).")
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

    from charlm import checkpoint, corpus
    from charlm.cli import charts
    from charlm.explore import diagnose as lib
    from charlm.tokenizers import TokenizerSpec

    shaping = {"cells_spec": "--cells", "hidden_size": "--hidden", "num_layers": "--layers", "seed": "--seed"}
    set_by_user = given(click.get_current_context())
    shaped = [option for name, option in shaping.items() if name in set_by_user]
    if checkpoints and not fresh and shaped:
        raise ConfigError(f"{', '.join(shaped)} shape the --fresh models: add --fresh to measure some beside the "
                          "checkpoints")
    fresh = fresh or not checkpoints
    cells = lib.parse_cells(cells_spec) if fresh else []
    ModelConfig(num_layers=num_layers, hidden_size=hidden_size)  # checks the sizes
    lib.check_window(length, windows)
    if height < 10:
        raise ConfigError(f"--height must be at least 10 lines, got {height}")
    check_writable(png_out, "--png", "gradients.png")
    console.fit_threads("measuring gradients", "cpu")
    loaded = corpus.load_text(text_source, encoding_errors) if text_source is not None else None
    models = []
    for path in checkpoints:
        ck = checkpoint.load(path, "cpu")
        ids = ck.tokenizer.encode(loaded.text, unknown=unknown) if loaded else _validation_ids(path, ck)
        models.append((str(path), ck.model, torch.from_numpy(ids.astype("int64"))))
    if fresh:
        fresh_text = loaded or corpus.load_text(FRESH_TEXT)
        tokenizer = TokenizerSpec().fit(fresh_text.text)
        ids = torch.from_numpy(tokenizer.encode(fresh_text.text).astype("int64"))
        models += [("fresh", lib.fresh_model(cell, tokenizer.vocab_size, hidden_size, num_layers, seed), ids)
                   for cell in cells]
    flows = lib.gradient_flow(models, length, windows)
    on = loaded.source if loaded else ("each run's validation text" if not fresh else
                                        f"each run's validation text ({FRESH_TEXT} for the fresh models)"
                                        if checkpoints else FRESH_TEXT)
    title = f"‖d loss_T / d h_t‖ against distance T − t, on {on} (mean of {windows} windows of {length})"
    labels = [_label(f) for f in flows]
    if png_out is not None:
        write_output(png_out, charts.gradients_png(flows, labels, title))
    if as_json:
        click.echo(json.dumps({"text": on, "length": length, "windows": windows,
                               "models": [f.to_dict() for f in flows]}, ensure_ascii=False))
        return
    distances = sorted({k for k in SHOWN_DISTANCES if 0 < k < length} | {length - 1})
    columns = ["model", *[f"k={k}" for k in distances], "ratio", "×/step"]
    rows = [[label, *[f"{f.norms[k]:.1e}" for k in distances], f"{f.ratio:.0e}", f"{f.per_step:.2f}"]
            for f, label in zip(flows, labels)]
    console.out.print(console.comparison_table(f"{title}; k = T − t steps back from the loss", columns, rows))
    console.out.print(f"ratio: the norm at k={length - 1} over the norm at k=1; ×/step: the average factor it shrinks "
                      "by for each step back", markup=False)
    if chart:
        width = max(40, min(console.out.size.width, 120))
        console.out.print(Text.from_ansi(charts.gradients_chart(flows, labels, width, height, colour=console.colour())))


def _validation_ids(path: Path, ck):
    """A run's own validation text, as ids of its vocabulary; a one-line error naming --text when it cannot
    be read again (the corpus moved or changed, or the run had no validation part)."""
    from charlm import data
    from charlm.cli.train import read_with_progress

    try:
        ids, _ = read_with_progress(data.recorded_split_steps(ck.info["corpus"], ck.info["train"], "val",
                                                              ck.tokenizer))
    except CorpusError as e:
        raise ConfigError(f"{path}: its validation text cannot be read ({e}); "
                          "pass --text FILE with text in the model's language") from None
    return ids


def _label(flow) -> str:
    """'LSTM 2×256 (fresh)', or the cell and size followed by the run folder."""
    where = "(fresh)" if flow.name == "fresh" else flow.name
    return f"{flow.cell.upper()} {flow.num_layers}×{flow.hidden_size} {where}"


# ----- memory -----------------------------------------------------------------------------------------------


@diagnose.command(epilog="""\b
Examples:
  charlm diagnose memory
  charlm diagnose memory --cells lstm,gru --gaps 20,40,80,160 --steps 5000
  charlm diagnose memory --gaps 2,5 --steps 200 --json
""")
@click.option("--cells", "cells_spec", default=DEFAULT_CELLS, show_default=True,
              help="Cells to train, comma-separated.")
@click.option("--gaps", "gaps_spec", default="2,5,10,20,40,80", show_default=True,
              help="Filler characters between the symbol and the query, comma-separated.")
@click.option("--steps", type=int, default=MemoryConfig.steps, show_default=True,
              help="Training steps at most, per cell and gap (it stops early once learned).")
@click.option("--hidden", "hidden_size", type=int, default=MemoryConfig.hidden_size, show_default=True,
              help="Hidden units (one layer).")
@click.option("-b", "--batch-size", type=int, default=MemoryConfig.batch_size, show_default=True,
              help="Sequences per step.")
@click.option("--lr", type=float, default=MemoryConfig.lr, show_default=True, help="Adam learning rate.")
@click.option("--threshold", type=float, default=MemoryConfig.threshold, show_default=True,
              help="Answer accuracy that counts as remembering (chance is 0.25).")
@click.option("--seed", type=int, default=MemoryConfig.seed, show_default=True,
              help="Seed of the weights and of the sequences.")
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
    from charlm.explore import diagnose as lib

    config = MemoryConfig(**options)
    cells, gaps = lib.parse_cells(cells_spec), lib.parse_gaps(gaps_spec)
    console.fit_threads("the memory probe", "cpu")

    def collected():
        results = []
        for result in lib.memory_probe(cells, gaps, config):
            results.append(result)
            yield result
        return results

    def show(bar, result) -> None:
        if not bar.tasks:
            bar.add_task("memory", total=len(cells) * len(gaps))
        bar.update(bar.task_ids[0], advance=1, description=f"{result.cell} gap {result.gap}")

    def line(result) -> str:
        tried = "not tried" if result.accuracy is None else f"accuracy {result.accuracy:.2f} in {result.steps:,} steps"
        return f"memory: {result.cell} gap {result.gap}: {tried}"

    results = console.drive(collected(), console.jobs_progress, show, line)
    largest = {cell: lib.largest_gap([r for r in results if r.cell == cell], config.threshold) for cell in cells}
    if as_json:
        click.echo(json.dumps({"example": lib.example(gaps[0], config.seed), "chance": 1 / len(lib.SYMBOLS),
                               "test_sequences": lib.TEST_SIZE, "config": dataclasses.asdict(config),
                               "results": [r.to_dict() for r in results], "largest_gap": largest}))
        return
    _print_memory(results, cells, gaps, largest, config)


def _print_memory(results, cells: list[str], gaps: list[int], largest: dict, config: MemoryConfig) -> None:
    """One row per gap, one column per cell: accuracy (steps taken); the last row the largest gap bridged."""
    from charlm.explore import diagnose as lib

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
