"""Settings as frozen dataclasses: one per concern, with defaults and validation.

Click options take their defaults from these classes and the checkpoint stores
them as JSON, so a run can be read back and resumed exactly. Validation raises
ConfigError with a message a user can act on (never ``assert``).

Every default that depends on the situation of a run (its time budget, and the
cell for the learning rate) is decided in one place: the preset table below and
``resolve``, which turns the options a user gave into a run's configs. The
table's rows were chosen by measurement (docs/performance.md); the dataclasses'
own defaults are the table's row for runs without a time budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from typing import Any

from charlm.errors import ConfigError

CELLS = ("lstm", "gru", "rnn", "rnn-relu", "mingru", "minlstm")
PARALLEL_CELLS = ("mingru", "minlstm")  # gates from x_t alone: no recurrent weights, an element-wise scan
DROPOUT_KINDS = ("locked", "standard")  # one mask per sequence, or a fresh mask per time step
IMPLS = ("fused", "reference")  # torch's fused kernels, or charlm.cells' textbook equations over a time loop
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
UNKNOWN_POLICIES = ("error", "unk", "skip")


def _from_dict(cls, data: dict[str, Any]):
    """Build dataclass ``cls`` from a dict, naming unknown keys instead of failing on them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} settings {unknown}: "
                          "the file was edited or written by a newer charlm")
    return cls(**data)


# ----- presets: the settings a run gets for the options its user leaves out --------------------------------


@dataclass(frozen=True)
class Preset:
    """One row of the preset table: the defaults for the runs it applies to."""

    applies: str  # which runs, in words, as --help and the docs say it ("up to 2m")
    max_budget: float | None  # a --time-budget up to this many seconds; None: any longer one (or none)
    cell: str
    hidden_size: int
    dropout: float
    weight_drop: float
    weight_decay: float


# The preset-driven fields: ModelConfig / TrainConfig fields whose default comes from a row.
PRESET_FIELDS = ("cell", "hidden_size", "dropout", "weight_drop", "weight_decay")
# Runs bounded by --epochs or --max-steps only. Also the dataclasses' own defaults.
UNBUDGETED = Preset("for --epochs or --max-steps", None, "lstm", 256, 0.2, 0.0, 0.01)
# Runs with a --time-budget, the first row whose max_budget holds it (docs/performance.md, "Presets").
BUDGET_PRESETS = (
    Preset("up to 2m", 120.0, "lstm", 256, 0.1, 0.0, 0.1),
    Preset("up to 10m", 600.0, "gru", 384, 0.1, 0.1, 0.1),
    Preset("above 10m", None, "gru", 384, 0.2, 0.3, 0.1),
)


@dataclass(frozen=True)
class FineTunePreset:
    """The defaults of a language model started from another one (--from RUN), which keeps the parent's
    architecture, weight decay, batch and window."""

    applies: str
    lr_fraction: float  # peak learning rate as a fraction of the parent's
    warmup_steps: int
    dropout: float  # dropout and weight drop while fine-tuning, whatever the parent's were
    weight_drop: float


# Runs started from a parent run (docs/performance.md, "Fine-tuning").
FINE_TUNE = FineTunePreset("--from RUN", 0.4, 20, 0.0, 0.0)
# The ModelConfig fields a run started from a parent takes from it, whatever it is given.
ARCHITECTURE_FIELDS = ("cell", "num_layers", "hidden_size", "embed_size", "tie_weights")
# Peak learning rate by cell when --lr is not given: 1e-2 is the LSTM's best, and makes a GRU's training drift away.
LR_BY_CELL = {"lstm": 1e-2, "gru": 3e-3, "rnn": 3e-3, "rnn-relu": 3e-3, "mingru": 3e-3, "minlstm": 3e-3}
DEFAULT_TIME_BUDGET = 300.0  # seconds, for a run given no --epochs, --max-steps or --time-budget


def preset_for(time_budget: float | None) -> Preset:
    """The preset row of a run with this time budget in seconds (None: bounded by epochs or steps only)."""
    if time_budget is None:
        return UNBUDGETED
    return next(row for row in BUDGET_PRESETS if row.max_budget is None or time_budget <= row.max_budget)


def preset_help(name: str) -> str:
    """How preset field ``name`` defaults, for --help: '[default: by --time-budget: lstm up to 2m, …]'."""
    def shown(row: Preset) -> str:
        value = getattr(row, name)
        return f"{value:g} {row.applies}" if isinstance(value, float) else f"{value} {row.applies}"

    tuned = f"; {getattr(FINE_TUNE, name):g} with --from" if name in ("dropout", "weight_drop") else ""
    return f"[default: by --time-budget: {', '.join(map(shown, BUDGET_PRESETS))}; {shown(UNBUDGETED)}{tuned}]"


def resolve(given: dict[str, Any], parent: tuple["ModelConfig", "TrainConfig"] | None = None
            ) -> tuple["ModelConfig", "TrainConfig"]:
    """The configs of a new run from the options its user gave (``given``: ModelConfig and TrainConfig field
    names → values; leave out what was not given).

    Without --epochs, --max-steps or --time-budget a run gets DEFAULT_TIME_BUDGET. The time budget picks the
    preset row for cell, width, dropout, weight drop and weight decay; --tie-weights without --hidden takes
    --embed's width (the one it can tie); the learning rate follows the cell (LR_BY_CELL).

    The rows ignore the corpus's size: on 34 M characters the 10-minute row beat a wider model, more
    streams per step and no dropout (docs/performance.md, "A corpus of tens of megabytes").

    A run started from a ``parent`` (its ModelConfig and TrainConfig) takes the parent's architecture
    (ARCHITECTURE_FIELDS, whatever ``given`` says: the caller refuses a contradiction), and by default its
    dropout kind, weight decay, batch size and window; FINE_TUNE gives its peak learning rate (a share of the
    parent's), warm-up, dropout and weight drop.
    """
    settings = dict(given)
    if all(settings.get(k) is None for k in ("epochs", "max_steps", "time_budget")):
        settings["time_budget"] = DEFAULT_TIME_BUDGET
    if parent is not None:
        parent_model, parent_train = parent
        settings |= {name: getattr(parent_model, name) for name in ARCHITECTURE_FIELDS}
        settings.setdefault("dropout_kind", parent_model.dropout_kind)
        for name in ("dropout", "weight_drop"):
            settings.setdefault(name, getattr(FINE_TUNE, name))
        for name in ("weight_decay", "batch_size", "seq_len"):
            settings.setdefault(name, getattr(parent_train, name))
        if settings.get("lr") is None:  # the caller gives the lineage's first rate (transfer.Parent.configs)
            settings["lr"] = float(f"{parent_train.lr * FINE_TUNE.lr_fraction:.6g}")
        settings.setdefault("warmup_steps", FINE_TUNE.warmup_steps)
    row = preset_for(settings.get("time_budget"))
    if settings.get("tie_weights") and settings.get("hidden_size") is None:
        settings["hidden_size"] = settings.get("embed_size", ModelConfig.embed_size)
    for name in PRESET_FIELDS:
        if settings.get(name) is None:
            settings[name] = getattr(row, name)
            if name == "weight_drop" and settings["cell"] in PARALLEL_CELLS:
                settings[name] = 0.0  # no recurrent weights to drop
    if settings.get("lr") is None:
        settings["lr"] = LR_BY_CELL.get(settings["cell"], LR_BY_CELL[UNBUDGETED.cell])
    model_names = {f.name for f in fields(ModelConfig)}
    model = ModelConfig(**{k: v for k, v in settings.items() if k in model_names})
    return model, TrainConfig(**{k: v for k, v in settings.items() if k not in model_names})


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the recurrent language model (embedding → RNN layers → linear decoder)."""

    cell: str = UNBUDGETED.cell
    num_layers: int = 2
    hidden_size: int = UNBUDGETED.hidden_size
    embed_size: int = 64  # 0 = one-hot input, as in the classic exercise
    dropout: float = UNBUDGETED.dropout  # between layers and before the decoder
    dropout_kind: str = "standard"  # DROPOUT_KINDS; "locked": one mask per sequence, cheaper on CPU
    weight_drop: float = UNBUDGETED.weight_drop  # DropConnect on the recurrent weights W_h while training (AWD-LSTM)
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
        if self.weight_drop and self.cell in PARALLEL_CELLS:
            raise ConfigError(f"--weight-drop drops recurrent weights W_h, and a {self.cell} has none: "
                              "drop --weight-drop (or use --dropout)")
        if self.tie_weights and self.embed_size != self.hidden_size:
            raise ConfigError(
                f"--tie-weights needs --embed equal to --hidden (got {self.embed_size} and {self.hidden_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


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
    lr: float = LR_BY_CELL[UNBUDGETED.cell]  # resolve() takes LR_BY_CELL[cell] when --lr is not given
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = UNBUDGETED.weight_decay  # a --time-budget run gets its preset row's
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
    deterministic: bool = False  # bit-reproducible runs (and resumes) on CPU, slower (no oneDNN RNN kernels)
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
            (self.time_budget is None or self.time_budget > 0,
             f"--time-budget must be positive, got {self.time_budget}"),
            (self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}"),
            (self.eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {self.eval_batch_size}"),
            (self.patience is None or self.patience >= 1, f"--patience must be at least 1, got {self.patience}"),
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r}: choose {', '.join(PRECISIONS)}"),
            (0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (0.0 <= self.test_fraction < 1.0, f"--test-fraction must be in [0, 1), got {self.test_fraction}"),
            (self.val_fraction + self.test_fraction < 1.0, "--val-fraction plus --test-fraction must leave training "
                                                           "text"),
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
    # subtracted from a token's logit once for each time it occurs among the last penalty_window tokens
    # (OpenAI's frequency penalty): a way out of loops, such as a run of spaces at a low temperature
    frequency_penalty: float = 0.0
    penalty_window: int = 64

    def __post_init__(self):
        if not math.isfinite(self.temperature):
            raise ConfigError(f"--temperature must be a finite number, 0 (greedy) or more, got {self.temperature}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be 0 (greedy) or more, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.frequency_penalty) and self.frequency_penalty >= 0):
            raise ConfigError(f"--frequency-penalty must be 0 (off) or more, got {self.frequency_penalty}")
        if self.penalty_window < 1:
            raise ConfigError(f"--penalty-window must be at least 1 token, got {self.penalty_window}")


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


POOLINGS = ("last", "mean", "max", "concat")  # concat: [last, max, mean], as ULMFiT pools


@dataclass(frozen=True)
class ClassifierConfig:
    """How a text classifier reads a text (beside its encoder's ModelConfig and its TrainConfig, whose
    batch_size counts texts and whose seq_len is the window read at once, the state carried between windows)."""

    pooling: str = "concat"  # POOLINGS: what of the outputs over the text the head sees
    bidirectional: bool = False  # a second encoder reads each text backwards; the two are joined
    grad_windows: int = 2  # gradients flow through a batch's last this many windows (ULMFiT's BPT3C)
    head_dropout: float = 0.1  # on the pooled features, before the linear head
    val_fraction: float = 0.1  # of every class, held out to validate (TrainConfig's val_fraction splits a corpus)
    discriminative: float = 1.0  # with --from: each encoder layer down gets lr divided by this (ULMFiT: 2.6)
    gradual_unfreeze: bool = False  # with --from: the head first, then one encoder layer more each stage

    def __post_init__(self):
        checks = [
            (self.pooling in POOLINGS, f"unknown --pool {self.pooling!r}: choose {', '.join(POOLINGS)}"),
            (self.grad_windows >= 1, f"--grad-windows must be at least 1, got {self.grad_windows}"),
            (0.0 <= self.head_dropout < 1.0, f"--head-dropout must be in [0, 1), got {self.head_dropout}"),
            (0.0 < self.val_fraction < 1.0, f"--val-fraction must be in (0, 1), got {self.val_fraction}: a "
                                            "classifier validates on held-out examples (e.g. 0.1)"),
            (self.discriminative >= 1.0, f"--discriminative must be 1 (off) or more, got {self.discriminative}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierConfig":
        return _from_dict(cls, data)


# The defaults of `charlm classify train` for what its user leaves out (docs/performance.md, "Classification").
# Its time budget is DEFAULT_TIME_BUDGET; started from a language model it keeps the model's architecture.
CLASSIFY_PRESET = {"cell": "gru", "hidden_size": 256, "dropout": 0.1, "weight_drop": 0.0, "weight_decay": 0.1,
                   "batch_size": 32, "seq_len": 128, "warmup_steps": 20, "eval_every": 100}


def resolve_classifier(given: dict[str, Any], parent: tuple["ModelConfig", "TrainConfig"] | None = None
                       ) -> tuple["ModelConfig", "TrainConfig"]:
    """The encoder's ModelConfig and the TrainConfig of a new classifier from the options its user gave
    (field names → values): CLASSIFY_PRESET fills what is left out; from a language model ``parent`` the
    architecture, dropout and weight drop come from it and the peak rate is FINE_TUNE's share of its own."""
    settings = CLASSIFY_PRESET | dict(given)
    if parent is not None:
        for name in ("cell", "hidden_size"):
            if name not in given:
                del settings[name]
        for name in ("dropout", "weight_drop"):
            if name not in given:
                settings[name] = getattr(parent[0], name)
    return resolve(settings, parent)


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
