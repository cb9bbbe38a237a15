"""Training curves of a run folder: its loss against steps and wall time, and its best figures, as data.

Reads config.json and metrics.jsonl through charlm.checkpoint (the records
written during training: "train" with step, loss, elapsed, tokens_per_s;
"val" with step, loss, bpc, perplexity, elapsed; "event"). The command
(charlm.cli.explore) turns them into a table, charts (charlm.cli.charts) or JSON.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from charlm import checkpoint
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
    run_dir = checkpoint.find_run(run_dir)
    info = checkpoint.read_config(run_dir, checkpoint.LANGUAGE_MODEL)
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


def best(curves: Curves) -> dict | None:
    """The evaluation with the lowest validation loss: {step, elapsed, loss, bpc, perplexity}; None without one."""
    if not curves.val.loss:
        return None
    i = min(range(len(curves.val.loss)), key=curves.val.loss.__getitem__)
    loss = curves.val.loss[i]
    return {"step": curves.val.step[i], "elapsed": curves.val.elapsed[i], "loss": loss, "bpc": curves.val_bpc[i],
            "perplexity": math.exp(loss) if loss < 700 else math.inf}


def median_rate(curves: Curves) -> float | None:
    """The median training speed of the run's progress reports (tokens/s over training steps only)."""
    return statistics.median(curves.tokens_per_s) if curves.tokens_per_s else None


def last(curves: Curves) -> tuple[int, float]:
    """(step, elapsed) of the latest record."""
    candidates = [(s.step[-1], s.elapsed[-1]) for s in (curves.train, curves.val) if s.step]
    return max(candidates)


def time_axis(*runs: Curves) -> tuple[float, str]:
    """Seconds per unit and the unit's name for the wall-time axis (s, min or h, by the longest run)."""
    seconds = max(last(curves)[1] for curves in runs)
    return (1.0, "s") if seconds < 120 else (60.0, "min") if seconds < 7200 else (3600.0, "h")


def loss_range(*runs: Curves) -> tuple[float, float]:
    """y-axis limits that leave out the first 5% of each run's steps, where the loss falls from ln(vocab) in a few
    steps and would squash the rest of the curves to a flat line."""
    losses, every = [], []
    for curves in runs:
        last_step = last(curves)[0]
        for s in (curves.train, curves.val):
            losses += [loss for step, loss in zip(s.step, s.loss) if step >= 0.05 * last_step]
            every += s.loss
    losses = losses or every
    low, high = min(losses), max(losses)
    pad = 0.05 * (high - low) or 0.05
    return low - pad, high + pad
