"""Charts for the terminal (plotext, as text with or without ANSI colours) and as PNG pictures (matplotlib, an
optional dependency: pip install 'charlm[plot]').

    curves_chart / curves_png        loss vs step and vs wall time of one or more runs (charlm report)
    gradients_chart / gradients_png  ‖d loss_T / d h_t‖ against distance (charlm diagnose gradients)
"""

from __future__ import annotations

import io
import math

from charlm.errors import CharlmError


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick positions (multiples of 1, 2 or 5 × 10^k) covering [low, high], about ``count`` of them."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _plotext_figure(width: int, height: int):
    """plotext's figure, cleared and sized ``width`` × ``height`` whatever the terminal (or pipe) is."""
    import plotext

    fig = plotext.figure
    fig.clear()
    plotext.terminal.limit(False, False)
    fig.plot_size(width, height)
    return fig


# ----- training curves --------------------------------------------------------------------------------------


def _names(runs) -> list[str]:
    """A label per run: '' for a single run, else its folder's name."""
    return [""] if len(runs) == 1 else [str(curves.run_dir.name) + " " for curves in runs]


def curves_chart(runs, width: int = 100, height: int = 36, colour: bool = True) -> str:
    """Two stacked charts (loss vs step, loss vs wall time) of explore.curves.Curves, as terminal text; several
    runs are overlaid, each labelled by its folder's name. ANSI colours unless colour=False."""
    from charlm.explore.curves import loss_range, time_axis

    scale, unit = time_axis(*runs)
    low, high = loss_range(*runs)
    fig = _plotext_figure(width, height)
    fig.subplots(2, 1)
    fig.plot_size(width, height)
    for row, (title, x_of) in enumerate([
        ("loss (nats/token) vs step", lambda s: s.step),
        (f"loss (nats/token) vs wall time ({unit})", lambda s: [e / scale for e in s.elapsed]),
    ], start=1):
        plot = fig.subplot(row, 1)
        plot.theme("simple")
        plot.title(title)
        xs = []
        for name, curves in zip(_names(runs), runs):
            if curves.train.step:
                plot.draw(plot.signal(x_of(curves.train), curves.train.loss).label(f"{name}train").lines())
            if curves.val.step:  # points, not a line, so the two read apart without colour too
                plot.draw(plot.signal(x_of(curves.val), curves.val.loss, marker="●").label(f"{name}val"))
            xs += x_of(curves.train) + x_of(curves.val)
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


def curves_png(runs, title: str, dpi: int = 120) -> bytes:
    """The same two charts side by side as a PNG; several runs overlaid."""
    from charlm.explore.curves import loss_range, time_axis

    scale, unit = time_axis(*runs)
    fig = new_figure((11, 4.2), dpi)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for name, curves in zip(_names(runs), runs):
        for part, series, style in (("train", curves.train, dict(lw=1, alpha=0.8)),
                                    ("val", curves.val, dict(lw=1.5, marker="o", ms=3))):
            if series.step:
                by_step.plot(series.step, series.loss, label=name + part, **style)
                by_time.plot([e / scale for e in series.elapsed], series.loss, label=name + part, **style)
    by_step.set(xlabel="step", ylabel="loss (nats/token)", ylim=loss_range(*runs))
    by_time.set(xlabel=f"wall time ({unit})")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return figure_png(fig)


# ----- gradient flow ----------------------------------------------------------------------------------------


def _log10(value: float) -> float:
    return math.log10(max(value, 1e-300))  # a norm that underflowed to 0 sits at the bottom


def _log_ticks(flows) -> list[int]:
    """Whole powers of ten spanning every norm: the y ticks of a chart of log10(norm)."""
    logs = [_log10(v) for f in flows for v in f.norms]
    low, high = math.floor(min(logs)), math.ceil(max(logs))
    return [int(t) for t in nice_ticks(low, high) if t == int(t)] or [low, high]


def gradients_chart(flows, labels: list[str], width: int, height: int, colour: bool) -> str:
    """log10(norm) against distance as terminal text: lines in colour, numbered markers without."""
    fig = _plotext_figure(width, height)
    fig.theme("simple")
    for i, (f, label) in enumerate(zip(flows, labels), start=1):
        signal = fig.signal(list(range(len(f.norms))), [_log10(v) for v in f.norms],
                            **({} if colour else {"marker": str(i % 10)})).label(label)
        fig.draw(signal.lines() if colour else signal)
    ticks = _log_ticks(flows)
    fig.ruler("y").ticks(ticks, [f"1e{t}" for t in ticks])
    lowest = min(_log10(v) for f in flows for v in f.norms)
    fig.legend(x=0, y=lowest, va="bottom", relative=True)  # bottom left: the corner the decaying lines leave empty
    x_ticks = [int(t) for t in nice_ticks(0, len(flows[0].norms) - 1)]
    fig.ruler("x").ticks(x_ticks, [str(t) for t in x_ticks])
    return fig.build().string(colorless=not colour)


def gradients_png(flows, labels: list[str], title: str) -> bytes:
    fig = new_figure((8, 4.5))
    ax = fig.subplots()
    for f, label in zip(flows, labels):
        ax.semilogy(range(len(f.norms)), [max(v, 1e-300) for v in f.norms], label=label, lw=1.5)
    ax.set(xlabel="k = T − t (steps back from the loss)", ylabel="‖d loss_T / d h_t‖")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.suptitle(title, fontsize=10)
    return figure_png(fig)
