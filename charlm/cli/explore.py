"""`charlm score`, `charlm inspect` and `charlm report`: look inside a trained model and its training.

Each command checks its inputs (cheap things first), calls one library module
(explore.surprisal, explore.units, explore.curves), and renders the result:
rich text on stdout, JSON, or a self-contained HTML page / PNG written
atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from charlm.cli import console
from charlm.cli.display import (
    cells,
    diverging,
    html_heatmap,
    html_legend,
    html_page,
    html_table,
    legend_cells,
    print_heatmap,
    print_legend,
    sequential,
    visible,
)
from charlm.cli.options import (
    check_writable,
    complete_run,
    device_option,
    encoding_errors_option,
    unknown_option,
    write_output,
)
from charlm.errors import ConfigError

COMMANDS: list = []
UNITS_PER_FEATURE = 3  # units listed per feature in inspect's ranking table
# explore.units.FEATURES' names, spelt out so that `charlm --help` need not import torch (a test keeps them equal)
FEATURE_NAMES = ("in_quotes", "in_parens", "line_position", "after_newline", "word_position", "is_upper")
# config.CELLS with their article, for messages
_A_CELL = {"lstm": "an LSTM", "gru": "a GRU", "rnn": "a vanilla RNN (tanh)", "rnn-relu": "a vanilla RNN (ReLU)",
           "mingru": "a minGRU", "minlstm": "a minLSTM"}


def _read_text(file: Path | None, text: str | None, encoding_errors: str = "strict") -> tuple[str, str]:
    """Exactly one of FILE and --text → (text, label)."""
    from charlm import corpus

    if (file is None) == (text is None):
        raise ConfigError("give the text to read either as a FILE argument or with --text 'some text', not both or "
                          "neither")
    if text is not None:
        if not text:
            raise ConfigError("--text is empty: pass some text, e.g. --text 'ROMEO: What light'")
        return text, "--text"
    if not file.exists():
        raise ConfigError(f"no file {file}: check the path, or pass the text itself with --text")
    if not file.is_file():
        raise ConfigError(f"{file} is not a regular file: pass a text file, or --text")
    content = corpus.read_file(file, encoding_errors)
    if not content:
        raise ConfigError(f"{file} is empty: pass a file with some text in it")
    return content, str(file)


def _shown(text: str, limit: int) -> int:
    """How many characters to draw (0 = all); says so on stderr when that cuts the text."""
    if limit and len(text) > limit:
        console.info(f"showing the first {limit:,} of {len(text):,} characters (--show 0 shows all)")
        return limit
    return len(text)


# ----- score ------------------------------------------------------------------------------------------------


@click.command(epilog="""\b
Examples:
  charlm score checkpoints/shakespeare-lstm --text "ROMEO: But soft, what light through yonder window breaks?"
  charlm score checkpoints/shakespeare-lstm corpora/hihello.txt --html score.html
  charlm score checkpoints/shakespeare-lstm --context "JULIET:" --text "O Romeo, Romeo" --json
""")
@click.argument("checkpoint", type=click.Path(path_type=Path), shell_complete=complete_run)
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--text", help="Score this text instead of a FILE.")
@click.option("--context", default="",
              help="Text the model reads first, not scored (so the first character is scored too).")
@click.option("--html", "html_out", type=click.Path(path_type=Path),
              help="Also write the heatmap as a self-contained HTML page.")
@click.option("--json", "as_json", is_flag=True,
              help="Print figures (text_characters, scored_characters, text_tokens, total_bits, bpc), spans and "
                   "per-token bits as one JSON object instead.")
@click.option("--max-bits", type=float, default=8.0, show_default=True, help="Surprisal that gets the darkest colour.")
@click.option("--spans", "n_spans", type=int, default=5, show_default=True,
              help="How many most surprising spans to list.")
@click.option("--span-width", type=int, default=8, show_default=True, help="Characters per span.")
@click.option("--show", type=int, default=5000, show_default=True,
              help="Characters drawn in the heatmap (0 = all); figures always cover the whole text.")
@encoding_errors_option
@unknown_option
@device_option
def score(checkpoint, file, text, context, html_out, as_json, max_bits, n_spans, span_width, show, encoding_errors,
          unknown, device):
    """Colour every character of a text by its surprisal (bits the model needed for it).

    Prints the text as a heatmap (pale: expected, dark red: surprising), the
    total bits, bits per character and the most surprising spans. The first
    character has nothing before it to predict it, so it is not scored
    unless you give --context.
    """
    from charlm import checkpoint as ckpt
    from charlm import runtime
    from charlm.explore import surprisal

    if not (max_bits > 0 and math.isfinite(max_bits)):
        raise ConfigError(f"--max-bits must be a positive number, got {max_bits}")
    if n_spans < 0 or span_width < 1 or show < 0:
        raise ConfigError("--spans and --show must be 0 or more, --span-width at least 1")
    text, label = _read_text(file, text, encoding_errors)
    check_writable(html_out, "--html", "score.html")
    dev = runtime.select_device(device)
    loaded = ckpt.load(checkpoint, dev)
    scored = surprisal.score(loaded.model, loaded.tokenizer, text, context, dev, unknown)
    spans = surprisal.surprising_spans(scored, n_spans, span_width)
    if html_out is not None:  # files first: a closed stdout (… | head) must not lose them
        write_output(html_out, _score_html(scored, spans, max_bits, show,
                                           f"Surprisal: {checkpoint} on {label}").encode())
    if as_json:
        click.echo(json.dumps(_score_json(scored, spans, checkpoint, label), ensure_ascii=False))
    else:
        _print_score(scored, spans, max_bits, show, f"{checkpoint} on {label}")


def _score_rows(scored) -> list[tuple[str, str]]:
    rows = [("characters scored", f"{scored.scored_chars:,} of {len(scored.text):,}")]
    if len(scored.tokens) != len(scored.text):  # a subword tokenizer
        rows.append(("tokens", f"{len(scored.tokens):,}"))
    return rows + [("total bits", f"{scored.total_bits:,.1f}"), ("bits per character", f"{scored.bpc:.3f}")]


def _print_score(scored, spans, max_bits: float, show: int, title: str) -> None:
    n = _shown(scored.text, show)
    heat = cells(list(scored.text[:n]), scored.char_bits[:n], sequential, max_bits, "bits")
    print_heatmap(heat, 0, max_bits)
    console.out.print()
    print_legend(sequential, 0, max_bits, "0 bits", f"{max_bits:g}+ bits")
    console.out.print(console.key_value_table(title, _score_rows(scored)))
    if spans:
        width = len(spans[0].text)
        table = Table(title=f"most surprising spans of {width} character{'s' if width > 1 else ''}",
                      title_justify="left")
        for column, justify in (("line:col", "right"), ("text", "left"), ("bits", "right"), ("bits/char", "right")):
            table.add_column(column, justify=justify)
        for s in spans:
            table.add_row(f"{s.line}:{s.column}", Text(visible(s.text)), f"{s.bits:.1f}",
                          f"{s.bits / max(s.scored, 1):.2f}")
        console.out.print(table)


def _score_json(scored, spans, checkpoint: Path, label: str) -> dict:
    def number(x: float):
        return None if math.isnan(x) else round(float(x), 4)

    return {
        "checkpoint": str(checkpoint), "text": label, "text_characters": len(scored.text),
        "scored_characters": scored.scored_chars, "text_tokens": len(scored.tokens),
        "total_bits": number(scored.total_bits), "bpc": number(scored.bpc),
        "spans": [{"start": s.start, "end": s.end, "line": s.line, "column": s.column, "text": s.text,
                   "bits": number(s.bits)} for s in spans],
        "token_bits": [[t, number(b)] for t, b in zip(scored.tokens, scored.bits)],
    }


def _score_html(scored, spans, max_bits: float, show: int, title: str) -> str:
    n = show or len(scored.text)
    heat = cells(list(scored.text[:n]), scored.char_bits[:n], sequential, max_bits, "bits")
    note = f"<p>showing the first {n:,} of {len(scored.text):,} characters</p>" if n < len(scored.text) else ""
    span_rows = [(f"{s.line}:{s.column}", visible(s.text), f"{s.bits:.1f}") for s in spans]
    return html_page(title, [
        ("", html_table(_score_rows(scored))),
        ("", html_legend(legend_cells(sequential, 0, max_bits), "0 bits", f"{max_bits:g}+ bits")),
        ("Heatmap (hover for each character's bits)", note + html_heatmap(heat)),
        ("Most surprising spans", html_table(span_rows, ("line:col", "text", "bits"))),
    ])


COMMANDS.append(score)


# ----- inspect ----------------------------------------------------------------------------------------------


@click.command(epilog="""\b
Examples:
  charlm inspect checkpoints/shakespeare-lstm --text "ROMEO: (aside) But soft! What light?" --html units.html
  charlm inspect checkpoints/shakespeare-lstm corpora/shakespeare.txt --max-chars 1000 --feature line_position --top 3
  charlm inspect checkpoints/shakespeare-lstm --text "ROMEO: Ay me! sad hours seem long." --units 1:42,7 --state c
""")
@click.argument("checkpoint", type=click.Path(path_type=Path), shell_complete=complete_run)
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--text", help="Read this text instead of a FILE.")
@click.option("--units", "units_spec",
              help="Units to show: UNIT or LAYER:UNIT, comma-separated, 0-based (UNIT alone: last layer).")
@click.option("--feature", type=click.Choice(FEATURE_NAMES), help="Show the units that track this feature best.")
@click.option("--top", type=int, default=4, show_default=True, help="Units shown for --feature.")
@click.option("--state", "kind", type=click.Choice(["h", "c"]), default="h", show_default=True,
              help="Hidden state h, or the LSTM's cell state c.")
@click.option("--html", "html_out", type=click.Path(path_type=Path),
              help="Also write the heatmaps as a self-contained HTML page.")
@click.option("--max-chars", type=int, default=2000, show_default=True,
              help="Read at most this many characters of the text.")
@encoding_errors_option
@unknown_option
def inspect(checkpoint, file, text, units_spec, feature, top, kind, html_out, max_chars, encoding_errors, unknown):
    """Show how hidden units respond to each character of a text, and which track simple features.

    Lists, for each feature (inside quotes, inside parentheses, position in
    line, after a newline, position in word, upper-case), the units whose
    activation correlates with it most (Pearson r), then draws units as
    heatmaps over the text: blue negative, white zero, red positive. By
    default it draws the best unit of each feature; --feature draws the --top
    units of one feature; --units draws the units you name.
    """
    from charlm import checkpoint as ckpt
    from charlm.explore import units

    if top < 1 or max_chars < 1:
        raise ConfigError("--top and --max-chars must be at least 1")
    if units_spec and feature:
        raise ConfigError("--units names the units to draw and --feature picks them for you: give one of the two")
    text, label = _read_text(file, text, encoding_errors)
    check_writable(html_out, "--html", "units.html")
    loaded = ckpt.load(checkpoint, "cpu")  # a step-by-step loop over small vectors: the CPU is the fast place
    config = loaded.model_config
    chosen = units.parse_units(units_spec, config.num_layers, config.hidden_size) if units_spec else None
    if kind == "c" and config.cell != "lstm":
        raise ConfigError(f"--state c needs an LSTM (it has a cell state); this model is {_A_CELL[config.cell]}: "
                          "use --state h")
    if len(text) > max_chars:
        console.info(f"reading the first {max_chars:,} of {len(text):,} characters (--max-chars to change)")
        text = text[:max_chars]
    ids = loaded.tokenizer.encode(text, unknown=unknown)
    if len(ids) < 2:
        raise ConfigError("the text has fewer than 2 characters the model knows: pass a longer text")
    trace = units.trace(loaded.model, loaded.tokenizer, ids)
    ranking = {f: units.rank_units(trace, kind, f, UNITS_PER_FEATURE) for f in units.varying_features(trace)}
    if chosen is not None:
        shown = chosen
    elif feature is not None:
        shown = [(s.layer, s.unit) for s in units.rank_units(trace, kind, feature, top)]
    else:
        shown = list(dict.fromkeys((scores[0].layer, scores[0].unit) for scores in ranking.values()))
    panels = [_unit_panel(trace, kind, layer, unit, config.cell) for layer, unit in shown]
    if html_out is not None:
        write_output(html_out, _inspect_html(ranking, panels, kind, f"Units: {checkpoint} on {label}").encode())
    _print_inspect(ranking, panels, kind, len(trace.tokens))


@dataclass
class _Panel:
    heading: str
    heat: list  # display.Cell per token
    vmax: float  # the colour scale runs from -vmax to +vmax


def _unit_panel(trace, kind: str, layer: int, unit: int, cell: str) -> _Panel:
    """One unit's heatmap: bounded states (h of tanh cells) use a fixed ±1 scale, others their own largest |value|."""
    from charlm.explore import units

    values = trace.states(kind)[layer, :, unit].numpy()  # (T,)
    bounded = kind == "h" and cell != "rnn-relu"
    vmax = 1.0 if bounded else max(float(abs(values).max()), 1e-6)
    best = units.best_feature(trace, kind, layer, unit)
    heading = f"layer {layer}, {kind}[{unit}]  (scale ±{vmax:.3g})"
    if best is not None:
        heading += f"  tracks {best.feature} best: r {best.r:+.2f}"
    return _Panel(heading, cells(trace.tokens, values, diverging, vmax, kind), vmax)


def _print_inspect(ranking: dict, panels: list, kind: str, n_tokens: int) -> None:
    if ranking:
        table = Table(title=f"units that track each feature ({kind}, Pearson r over {n_tokens:,} tokens)",
                      title_justify="left")
        table.add_column("feature")
        table.add_column("best units (layer:unit r)")
        for name, scores in ranking.items():
            table.add_row(name, "  ".join(f"{s.layer}:{s.unit} {s.r:+.2f}" for s in scores))
        console.out.print(table)
    else:
        console.out.print("no feature varies over this text, so none can be ranked")
    for panel in panels:
        console.out.print()
        console.out.print(Text(panel.heading, style="bold"))
        print_heatmap(panel.heat, -panel.vmax, panel.vmax)
    console.out.print()
    print_legend(diverging, -1, 1, "negative", "positive")


def _inspect_html(ranking: dict, panels: list, kind: str, title: str) -> str:
    from charlm.explore.units import FEATURES

    rows = [(name, "   ".join(f"{s.layer}:{s.unit}\u00a0{s.r:+.2f}" for s in scores), FEATURES[name])
            for name, scores in ranking.items()]  # a no-break space keeps each unit with its r
    sections = [("Units that track each feature", html_table(rows, ("feature", f"best units ({kind}, layer:unit r)",
                                                                    "meaning"))),
                ("", html_legend(legend_cells(diverging, -1, 1), "negative", "positive"))]
    sections += [(panel.heading, html_heatmap(panel.heat)) for panel in panels]
    return html_page(title, sections)


COMMANDS.append(inspect)


# ----- report -----------------------------------------------------------------------------------------------


@click.command(epilog="""\b
Examples:
  charlm report checkpoints/shakespeare-lstm
  charlm report checkpoints/shakespeare-lstm --png curves.png
  charlm report checkpoints/shakespeare-lstm --json
""")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), shell_complete=complete_run)
@click.option("--png", "png_out", type=click.Path(path_type=Path),
              help="Also write the curves as a PNG picture (needs matplotlib).")
@click.option("--chart/--no-chart", default=True, show_default=True, help="Draw the loss curves in the terminal.")
@click.option("--height", type=int, default=36, show_default=True, help="Terminal chart height in lines (both charts).")
@click.option("--json", "as_json", is_flag=True,
              help="Print each run's settings, best figures and curves as JSON instead: an object for one run, a list "
                   "for several.")
def report(run_dirs, png_out, chart, height, as_json):
    """Show runs' settings, best figures and loss curves (train and validation, by step and by wall time).

    Several runs are shown side by side, with their curves overlaid.
    """
    from charlm.cli import charts
    from charlm.explore import curves

    if height < 10:
        raise ConfigError(f"--height must be at least 10 lines, got {height}")
    check_writable(png_out, "--png", "curves.png")
    runs = [curves.read_curves(run_dir) for run_dir in run_dirs]
    if png_out is not None:
        title = runs[0].title if len(runs) == 1 else ", ".join(str(r.run_dir.name) for r in runs)
        write_output(png_out, charts.curves_png(runs, title))
    if as_json:
        records = [_report_json(run) for run in runs]
        click.echo(json.dumps(records[0] if len(records) == 1 else records, ensure_ascii=False))
        return
    if len(runs) == 1:
        console.out.print(console.key_value_table(runs[0].title, report_rows(runs[0])))
    else:
        every = [report_rows(run) for run in runs]
        names = dict.fromkeys(name for rows in every for name, _ in rows if name != "run folder")
        columns = [dict(rows) for rows in every]
        console.out.print(console.comparison_table("runs side by side", ["", *[str(r.run_dir) for r in runs]],
                                                   [[name, *[c.get(name, "–") for c in columns]] for name in names]))
    if chart:
        width = max(40, min(console.out.size.width, 120))
        console.out.print(Text.from_ansi(charts.curves_chart(runs, width, height, colour=console.colour())))


def report_rows(run) -> list[tuple[str, str]]:
    """(name, value) rows of a run (explore.curves.Curves): its settings and its best figures."""
    from charlm.explore import curves

    info, m, t = run.info, run.info["model"], run.info["train"]
    corpus = info.get("corpus", {})
    decay = console.weight_decay_clause(t["optimizer"], t["weight_decay"])
    rows = [
        ("run folder", str(run.run_dir)),
        ("model", f"{m['cell'].upper()} {m['num_layers']}×{m['hidden_size']}, embed {m['embed_size']}, "
                  f"{console.dropout_clause(m['dropout'], m.get('dropout_kind'), m.get('weight_drop', 0.0))}"
                  f"{', tied' if m.get('tie_weights') else ''}"),
        ("corpus", f"{corpus.get('source', '?')} ({corpus.get('train_characters', 0):,} training characters)"),
        *([("started from", _lineage(info["parent"]))] if info.get("parent") else []),
        ("tokenizer", f"{info['tokenizer'].get('kind', '?')}, vocabulary {info['tokenizer'].get('vocab_size', '?')}"),
        ("batch × seq_len", f"{t['batch_size']} × {t['seq_len']}"),
        ("optimizer", f"{t['optimizer']}, lr {t['lr']:g}, {decay}warmup {t['warmup_steps']}, clip {t['grad_clip']:g}"),
    ]
    step, elapsed = curves.last(run)
    rows += [("steps", f"{step:,}"), ("time", _duration(elapsed))]
    rate = curves.median_rate(run)
    if rate is not None:
        rows.append(("tokens/s while training (median)", f"{rate:,.0f}"))
    if run.train.loss:
        rows.append(("last train loss", f"{run.train.loss[-1]:.4f}"))
    best = curves.best(run)
    if best is not None:
        rows += [
            ("best val loss", f"{best['loss']:.4f} at step {best['step']:,}"),
            ("best val perplexity", f"{best['perplexity']:.3f}"),
            ("best val bpc", f"{best['bpc']:.4f}"),
        ]
    if run.events:
        rows.append(("events", f"{len(run.events)}; last: {run.events[-1].get('message', '?')}"))
    return rows


def _lineage(parent: dict) -> str:
    """'checkpoints/base (step 40,000, val loss 1.2345; weights 3f2a1c…)': the run a run started from."""
    figures = [f"step {parent['step']:,}" if parent.get("step") is not None else None,
               f"val loss {parent['val_loss']:.4f}" if parent.get("val_loss") is not None else None,
               f"weights {parent.get('weights_sha256', '')[:12]}…"]
    return f"{parent.get('run', '?')} ({'; '.join(f for f in figures if f)})"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _report_json(run) -> dict:
    """A run's settings (config.json), best evaluation, median training speed and curves, for --json."""
    from charlm.explore import curves

    step, elapsed = curves.last(run)
    return {
        "run": str(run.run_dir), "config": run.info, "steps": step, "elapsed": elapsed,
        "tokens_per_s_median": curves.median_rate(run), "best": curves.best(run),
        "train": [{"step": s, "elapsed": e, "loss": v} for s, e, v in zip(run.train.step, run.train.elapsed,
                                                                          run.train.loss)],
        "val": [{"step": s, "elapsed": e, "loss": v, "bpc": b} for s, e, v, b in zip(run.val.step, run.val.elapsed,
                                                                                    run.val.loss, run.val_bpc)],
        "events": run.events,
    }


COMMANDS.append(report)
