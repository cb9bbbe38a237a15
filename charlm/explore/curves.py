"""Training curves of a run folder: its figures, and its loss against steps and wall time as charts.

Reads config.json and metrics.jsonl through charlm.checkpoint (the records
written during training: "train" with step, loss, elapsed, tokens_per_s;
"val" with step, loss, bpc, perplexity, elapsed; "event"). Returns values:
rows of figures, a chart as a string of terminal text (plotext) and a PNG as
bytes (matplotlib, an optional dependency); the command prints or writes them.
"""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from charlm import checkpoint, console
from charlm.errors import CharlmError


@dataclass
class Series:
    step: list[int] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)  # seconds since the run started
    loss: list[float] = field(default_factory=list)  # nats per token


@dataclass
class Curves:
    """What a run folder says about its training."""

    run_dir: Path
    info: dict  # config.json
    train: Series
    val: Series
    val_bpc: list[float]
    tokens_per_s: list[float]
    events: list[dict]

    @property
    def title(self) -> str:
        m = self.info["model"]
        return f"{self.run_dir.name}: {m['cell'].upper()} {m['num_layers']}×{m['hidden_size']}"


def read_curves(run_dir: Path | str) -> Curves:
    """Load a run folder's config and metrics; CharlmError when it is not a run or has no records yet."""
    run_dir = Path(run_dir)
    info = checkpoint.read_config(run_dir)
    records = checkpoint.read_metrics(run_dir)
    train, val, bpc, rates, events = Series(), Series(), [], [], []
    for r in records:
        kind = r.get("type")
        if kind in ("train", "val") and _finite(r.get("loss")) and isinstance(r.get("step"), int):
            series = train if kind == "train" else val
            series.step.append(r["step"])
            series.elapsed.append(float(r.get("elapsed") or 0.0))
            series.loss.append(float(r["loss"]))
            if kind == "val":
                bpc.append(float(r.get("bpc", math.nan)))
            elif _finite(r.get("tokens_per_s")):
                rates.append(float(r["tokens_per_s"]))
        elif kind == "event":
            events.append(r)
    if not train.step and not val.step:
        raise CharlmError(f"{run_dir} has no training records in {checkpoint.METRICS_FILE} yet: "
                          "train it for a few steps first (charlm train … --out " f"{run_dir})")
    return Curves(run_dir, info, train, val, bpc, rates, events)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def summary_rows(curves: Curves) -> list[tuple[str, str]]:
    """(name, value) rows: the run's settings and its best figures."""
    info, m, t = curves.info, curves.info["model"], curves.info["train"]
    corpus = info.get("corpus", {})
    decay = console.weight_decay_clause(t["optimizer"], t["weight_decay"])
    rows = [
        ("run folder", str(curves.run_dir)),
        ("model", f"{m['cell'].upper()} {m['num_layers']}×{m['hidden_size']}, embed {m['embed_size']}, "
                  f"{console.dropout_clause(m['dropout'], m.get('dropout_kind'), m.get('weight_drop', 0.0))}"
                  f"{', tied' if m.get('tie_weights') else ''}"),
        ("corpus", f"{corpus.get('source', '?')} ({corpus.get('train_characters', 0):,} training characters)"),
        ("tokenizer", f"{info['tokenizer'].get('kind', '?')}, vocabulary {info['tokenizer'].get('vocab_size', '?')}"),
        ("batch × seq_len", f"{t['batch_size']} × {t['seq_len']}"),
        ("optimizer", f"{t['optimizer']}, lr {t['lr']:g}, {decay}warmup {t['warmup_steps']}, clip {t['grad_clip']:g}"),
    ]
    last = _last(curves)
    rows += [("steps", f"{last[0]:,}"), ("time", _duration(last[1]))]
    if curves.tokens_per_s:
        rows.append(("tokens/s (median)", f"{statistics.median(curves.tokens_per_s):,.0f}"))
    if curves.train.loss:
        rows.append(("last train loss", f"{curves.train.loss[-1]:.4f}"))
    if curves.val.loss:
        best = min(range(len(curves.val.loss)), key=curves.val.loss.__getitem__)
        rows += [
            ("best val loss", f"{curves.val.loss[best]:.4f} at step {curves.val.step[best]:,}"),
            ("best val perplexity", f"{math.exp(curves.val.loss[best]):.3f}"),
            ("best val bpc", f"{curves.val_bpc[best]:.4f}"),
        ]
    if curves.events:
        rows.append(("events", f"{len(curves.events)}; last: {curves.events[-1].get('message', '?')}"))
    return rows


def _last(curves: Curves) -> tuple[int, float]:
    """(step, elapsed) of the latest record."""
    candidates = [(s.step[-1], s.elapsed[-1]) for s in (curves.train, curves.val) if s.step]
    return max(candidates)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def time_axis(curves: Curves) -> tuple[float, str]:
    """Seconds per unit and the unit's name for the wall-time axis (s, min or h, by the run's length)."""
    seconds = _last(curves)[1]
    return (1.0, "s") if seconds < 120 else (60.0, "min") if seconds < 7200 else (3600.0, "h")


def loss_range(curves: Curves) -> tuple[float, float]:
    """y-axis limits that leave out the first 5% of steps, where the loss falls from ln(vocab) in a few steps
    and would squash the rest of the curve to a flat line."""
    last_step = _last(curves)[0]
    losses = [loss for s in (curves.train, curves.val) for step, loss in zip(s.step, s.loss) if step >= 0.05 * last_step]
    losses = losses or curves.train.loss + curves.val.loss
    low, high = min(losses), max(losses)
    pad = 0.05 * (high - low) or 0.05
    return low - pad, high + pad


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick positions (multiples of 1, 2 or 5 × 10^k) covering [low, high], about ``count`` of them."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def terminal_chart(curves: Curves, width: int = 100, height: int = 36, colour: bool = True) -> str:
    """Two stacked charts (loss vs step, loss vs wall time) as terminal text, ANSI colours unless colour=False."""
    import plotext

    scale, unit = time_axis(curves)
    low, high = loss_range(curves)
    fig = plotext.figure
    fig.clear()
    plotext.terminal.limit(False, False)  # the size below, whatever the terminal (or pipe) is
    fig.subplots(2, 1)
    fig.plot_size(width, height)
    for row, (title, x_of) in enumerate([
        ("loss (nats/token) vs step", lambda s: s.step),
        (f"loss (nats/token) vs wall time ({unit})", lambda s: [e / scale for e in s.elapsed]),
    ], start=1):
        plot = fig.subplot(row, 1)
        plot.theme("simple")
        plot.title(title)
        if curves.train.step:
            plot.draw(plot.signal(x_of(curves.train), curves.train.loss).label("train").lines())
        if curves.val.step:  # points, not a line, so the two read apart without colour too
            plot.draw(plot.signal(x_of(curves.val), curves.val.loss, marker="●").label("val"))
        xs = x_of(curves.train) + x_of(curves.val)
        ticks = nice_ticks(min(xs), max(xs))
        plot.ruler("x").ticks(ticks, [f"{t:,.0f}" if row == 1 else f"{t:g}" for t in ticks])
        plot.ruler("y").lim(low, high)
    return fig.build().string(colorless=not colour)


def new_figure(figsize: tuple[float, float], dpi: int = 120):
    """A matplotlib Figure drawn off-screen (no GUI, no pyplot state); CharlmError when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CharlmError("--png needs matplotlib, which is not installed: pip install 'charlm[plot]' "
                          "(or pip install matplotlib)") from None
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def png_bytes(curves: Curves, dpi: int = 120) -> bytes:
    """The same two charts side by side as a PNG (needs matplotlib: pip install 'charlm[plot]')."""
    scale, unit = time_axis(curves)
    fig = new_figure((11, 4.2), dpi)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for name, series, style in (("train", curves.train, dict(lw=1, alpha=0.8)),
                                ("val", curves.val, dict(lw=1.5, marker="o", ms=3))):
        if series.step:
            by_step.plot(series.step, series.loss, label=name, **style)
            by_time.plot([e / scale for e in series.elapsed], series.loss, label=name, **style)
    by_step.set(xlabel="step", ylabel="loss (nats/token)", ylim=loss_range(curves))
    by_time.set(xlabel=f"wall time ({unit})")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(curves.title)
    return figure_png(fig)
