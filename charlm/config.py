"""Settings as frozen dataclasses: one per concern, with defaults and validation.

Click options take their defaults from these classes and the checkpoint stores
them as JSON, so a run can be read back and resumed exactly. Validation raises
ConfigError with a message a user can act on (never ``assert``).

The training defaults were chosen by measurement on tinyshakespeare for a few
minutes of CPU training; docs/performance.md has the figures and the commands.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any

from charlm.errors import ConfigError

CELLS = ("lstm", "gru", "rnn", "rnn-relu")
DROPOUT_KINDS = ("locked", "standard")  # one mask per sequence, or a fresh mask per time step
IMPLS = ("fused", "reference")  # torch's fused kernels, or charlm.cells' textbook equations over a time loop
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
UNKNOWN_POLICIES = ("error", "unk", "skip")
# Peak learning rate by cell when --lr is not given, measured on tinyshakespeare (docs/performance.md):
# 1e-2 is the LSTM's best, but it makes a GRU's training drift away (gradient norms 30x, loss rising).
DEFAULT_LR = {"lstm": 1e-2, "gru": 3e-3, "rnn": 3e-3, "rnn-relu": 3e-3}


def _from_dict(cls, data: dict[str, Any]):
    """Build dataclass ``cls`` from a dict, naming unknown keys instead of failing on them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} settings {unknown}: the file was edited or written by a newer charlm")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the recurrent language model (embedding → RNN layers → linear decoder)."""

    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 256
    embed_size: int = 64  # 0 = one-hot input, as in the classic exercise
    dropout: float = 0.2  # between layers and before the decoder
    dropout_kind: str = "standard"  # DROPOUT_KINDS; "locked": a 1.1-1.2x faster LSTM step on CPU (docs/performance.md)
    weight_drop: float = 0.0  # DropConnect on the recurrent weights W_h while training (AWD-LSTM's weight drop)
    tie_weights: bool = False  # decoder shares the embedding matrix; needs embed_size == hidden_size
    impl: str = "fused"  # same weights either way; "reference" runs charlm.cells' equations step by step

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        if self.dropout_kind not in DROPOUT_KINDS:
            raise ConfigError(f"unknown dropout kind {self.dropout_kind!r}: choose {' or '.join(DROPOUT_KINDS)}")
        if self.impl not in IMPLS:
            raise ConfigError(f"unknown implementation {self.impl!r}: choose --impl {' or --impl '.join(IMPLS)}")
        if self.num_layers < 1:
            raise ConfigError(f"--layers must be at least 1, got {self.num_layers}")
        if self.hidden_size < 1:
            raise ConfigError(f"--hidden must be at least 1, got {self.hidden_size}")
        if self.embed_size < 0:
            raise ConfigError(f"--embed must be 0 (one-hot) or more, got {self.embed_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.weight_drop < 1.0:
            raise ConfigError(f"--weight-drop must be in [0, 1), got {self.weight_drop}")
        if self.tie_weights and self.embed_size != self.hidden_size:
            raise ConfigError(
                f"--tie-weights needs --embed equal to --hidden (got {self.embed_size} and {self.hidden_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


# The settings a run gets for the options its user leaves out, by time budget, measured on
# tinyshakespeare (docs/performance.md, "Settings by time budget"). Up to 2 minutes the LSTM's faster
# steps win, and about four epochs fit, where dropout 0.1 beats 0.2 (1.508 against 1.542 at 60 s). By
# 5 minutes the GRU, which learns more per step, wins (1.448 against the LSTM's 1.481), with dropout 0.2,
# and a wider one more so: 2x384 beat 2x256 in every run at 5 minutes (1.414-1.420 in three runs against
# 1.428-1.435 in four). Given 30 minutes that GRU overfits from minute 14 (best 1.455; the 2x256 reached 1.432).
# Weight drop (DropConnect on W_h) with less dropout between layers did better still: 0.1 of each beat the 2x384's
# dropout 0.2 alone in three 300 s pairings (1.407-1.411 against 1.413-1.417) and at 10 minutes (1.401 against
# 1.419). Above MEDIUM_BUDGET the 2x384 keeps its width with weight drop 0.3 and dropout 0.2: given 30 minutes it
# went on improving to the end, 1.380, against the 2x256's 1.432 (0.3 held a 300 s run back: 1.461).
# AdamW's weight decay 0.1 beat 0.01 by 0.012-0.017 at 300 s (0.05 and 0.2 about as well, 0.3 less); at 60 s
# by 0.01 on tinyshakespeare and not at all on the shipped copy, so one value serves every budget.
SHORT_BUDGET = 120.0  # seconds
MEDIUM_BUDGET = 600.0  # seconds
BUDGET_WEIGHT_DECAY = 0.1


def budget_preset(time_budget: float | None) -> dict[str, Any]:
    """Cell, width, dropout, weight drop and weight decay for a run with this time budget in seconds; None (a
    run bounded by --epochs or --max-steps only) keeps ModelConfig's and TrainConfig's defaults."""
    if time_budget is None:
        return {"cell": ModelConfig.cell, "hidden_size": ModelConfig.hidden_size, "dropout": ModelConfig.dropout,
                "weight_drop": ModelConfig.weight_drop, "weight_decay": TrainConfig.weight_decay}
    if time_budget <= SHORT_BUDGET:
        preset = {"cell": "lstm", "hidden_size": 256, "dropout": 0.1, "weight_drop": 0.0}
    elif time_budget <= MEDIUM_BUDGET:
        preset = {"cell": "gru", "hidden_size": 384, "dropout": 0.1, "weight_drop": 0.1}
    else:
        preset = {"cell": "gru", "hidden_size": 384, "dropout": 0.2, "weight_drop": 0.3}
    return preset | {"weight_decay": BUDGET_WEIGHT_DECAY}


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batches, optimiser, schedule, stopping and evaluation.

    Training stops at whichever comes first of ``epochs``, ``max_steps`` and
    ``time_budget`` (seconds); the learning-rate schedule spans that same
    horizon, so a 60 s run decays fully within its 60 s.
    """

    batch_size: int = 32
    seq_len: int = 64  # truncated BPTT length
    optimizer: str = "adamw"
    lr: float = DEFAULT_LR["lstm"]  # the CLI takes DEFAULT_LR[cell] when --lr is not given
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.01  # a --time-budget run gets BUDGET_WEIGHT_DECAY (budget_preset)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    epochs: float | None = None
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of wall-clock time, evaluation included
    eval_every: int = 500  # steps between validation passes
    eval_batch_size: int = 128
    patience: int | None = None  # stop after this many evaluations without improvement
    seed: int = 1337
    precision: str = "auto"  # bf16 autocast where it is fast, fp16 with loss scaling on older GPUs, else fp32
    compile: bool = False  # torch.compile the training forward pass
    deterministic: bool = False  # bit-reproducible runs (and resumes) on CPU, 30-40% slower (no oneDNN RNN kernels)
    val_fraction: float = 0.1  # last fraction of the text held out (nanoGPT's split)
    test_fraction: float = 0.0  # a further fraction before validation, never trained on

    def __post_init__(self):
        checks = [
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.seq_len >= 1, f"--seq-len must be at least 1, got {self.seq_len}"),
            (self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}: choose {' or '.join(OPTIMIZERS)}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (0.0 <= self.min_lr_ratio <= 1.0, f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (self.warmup_steps >= 0, f"--warmup must be 0 or more steps, got {self.warmup_steps}"),
            (self.weight_decay >= 0, f"--weight-decay must be 0 or more, got {self.weight_decay}"),
            (self.grad_clip >= 0, f"--clip must be 0 (off) or more, got {self.grad_clip}"),
            (self.epochs is None or self.epochs > 0, f"--epochs must be positive, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"--max-steps must be at least 1, got {self.max_steps}"),
            (self.time_budget is None or self.time_budget > 0, f"--time-budget must be positive, got {self.time_budget}"),
            (self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}"),
            (self.eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {self.eval_batch_size}"),
            (self.patience is None or self.patience >= 1, f"--patience must be at least 1, got {self.patience}"),
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r}: choose {', '.join(PRECISIONS)}"),
            (0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (0.0 <= self.test_fraction < 1.0, f"--test-fraction must be in [0, 1), got {self.test_fraction}"),
            (self.val_fraction + self.test_fraction < 1.0, "--val-fraction plus --test-fraction must leave training text"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def has_horizon(self) -> bool:
        return any(x is not None for x in (self.epochs, self.max_steps, self.time_budget))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)


@dataclass(frozen=True)
class SampleConfig:
    """How to pick the next token: temperature 0 is greedy; top-k 0 and top-p 1 disable those filters."""

    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if not math.isfinite(self.temperature):
            raise ConfigError(f"--temperature must be a finite number, 0 (greedy) or more, got {self.temperature}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class MemoryConfig:
    """How `charlm diagnose memory` trains and scores each (cell, gap) model: one layer, one-hot input, Adam.

    The defaults were chosen by measurement (docs/tutorial.md § 10): about half a
    minute on two CPU cores for the default gaps, and enough steps for the three
    cells to come out differently.
    """

    steps: int = 3000  # optimizer steps at most; a model that answers 10 batches in a row perfectly stops early
    batch_size: int = 32  # sequences per step
    hidden_size: int = 32
    lr: float = 0.01
    threshold: float = 0.9  # answer accuracy that counts as remembering (chance is 0.25)
    seed: int = 0

    def __post_init__(self):
        checks = [
            (self.steps >= 1, f"--steps must be at least 1, got {self.steps}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.hidden_size >= 1, f"--hidden must be at least 1, got {self.hidden_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (0.0 < self.threshold <= 1.0, f"--threshold must be in (0, 1], got {self.threshold}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(text: str) -> float:
    """'90' → 90.0, '300s' → 300.0, '5m' → 300.0, '1.5h' → 5400.0 (seconds)."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"cannot read duration {text!r}: write it like 90s, 5m or 1.5h")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) and match.group(2).lower()]
    if seconds <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return seconds
