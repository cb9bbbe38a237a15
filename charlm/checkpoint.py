"""The on-disk format of a run folder. The only module that reads or writes checkpoint files.

    checkpoints/<run>/
      config.json          format version, charlm/torch versions, command, corpus, model/tokenizer/train settings
      tokenizer.json       the vocabulary (its SHA-256 is in config.json)
      model.safetensors    best weights; header metadata holds their SHA-256, step and validation loss
      last.safetensors     the latest weights, optimizer moments, torch RNG and carried hidden state;
                           header metadata holds the loop counters and python/numpy RNG (for --resume)
      metrics.jsonl        one JSON object per report, appended as training goes

No pickle anywhere: tensors go through safetensors and everything else is
JSON, so loading a checkpoint cannot run code. Every file is written to a
temporary name in the same folder, fsynced and renamed over the old one, so a
crash mid-save leaves the previous file whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import hashlib
import importlib.resources
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from charlm import __version__
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import CharlmError, CheckpointError
from charlm.model import RNNLM, State
from charlm.tokenizers import Tokenizer, tokenizer_from_dict

FORMAT_VERSION = 2  # 2: one recurrent module per layer (see _upgrade_names)
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILE = "model.safetensors"
LAST_FILE = "last.safetensors"
METRICS_FILE = "metrics.jsonl"
CLASSIFIER = "classifier"  # config.json's "kind" for a classifier run (a language model's has none)
LANGUAGE_MODEL = "language model"  # what read_config is asked for when a run must be one
PASS_A_RUN = "pass a run folder (charlm train or charlm classify train makes one)"
RUN_FILES = (CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE, LAST_FILE, METRICS_FILE)


# ----- atomic writes ----------------------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and rename.

    On any failure (disk full, permission, interrupt) the temporary file is
    removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; checkpoints are ordinary readable files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise _cannot_write(path, e, " (the previous file is intact)" if path.exists() else "") from None
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _cannot_write(path: Path, error: OSError, after: str = "") -> CheckpointError:
    """The one-line error for a file that could not be written, with the fix that fits the cause."""
    fix = "free disk space or pick another folder" if error.errno == errno.ENOSPC else "pick a folder you can write to"
    return CheckpointError(f"cannot write {path}: {error.strerror or error}; {fix}{after}")


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line to metrics.jsonl (a torn last line is skipped when reading)."""
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except OSError as e:
        raise _cannot_write(path, e) from None


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop records after ``step`` (work lost to a crash, about to be redone by --resume)."""
    records = [r for r in read_metrics(run_dir) if r.get("step", 0) <= step]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write(Path(run_dir) / METRICS_FILE, text.encode("utf-8"))


def read_metrics(run_dir: Path) -> list[dict]:
    """The run's metrics.jsonl as a list of records (dicts), oldest first; [] when there is none.

    Read line by line, so a line that is torn (a crash mid-write), not UTF-8 or
    not a JSON object is skipped and costs only itself.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


# ----- tensors ----------------------------------------------------------------------------------------------


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Content hash over names, dtypes, shapes and raw bytes, independent of file layout."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict without the tied decoder weight (safetensors stores no shared tensors)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_weights:
        tensors.pop("decoder.weight", None)  # a classifier's encoder has no decoder
    return tensors


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    atomic_write(path, safetensors_bytes(tensors, metadata=metadata))


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and header metadata, turning any parse failure into a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing ({what} never saved, or deleted): retrain or pick another run")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({str(e).splitlines()[0][:80]}): "
            "it is truncated, corrupted or not a charlm checkpoint; retrain or restore it"
        ) from None
    return tensors, metadata


_FORMAT_1_LAYER_NAME = re.compile(r"rnn\.(weight|bias)_(ih|hh)_l(\d+)")


def _upgrade_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Format 1 kept the layers in one stacked module (``rnn.weight_ih_l1``); format 2 has one module
    per layer (``layers.1.weight_ih_l0``). Same tensors in the same order, so optimizer state carries over."""
    def rename(name: str) -> str:
        m = _FORMAT_1_LAYER_NAME.fullmatch(name)
        return f"layers.{m[3]}.{m[1]}_{m[2]}_l0" if m else name

    return {rename(name): t for name, t in tensors.items()}


def _load_weights(model: RNNLM, tensors: dict[str, torch.Tensor], path: Path) -> None:
    tensors = _upgrade_names(tensors)
    expected = set(model_tensors(model))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise CheckpointError(f"{path} does not match config.json (missing {missing}, unexpected {extra}): the files "
                              "come from different runs")
    for name, t in tensors.items():
        want = model.state_dict()[name].shape
        if t.shape != want:
            raise CheckpointError(f"{path}: {name} has shape {tuple(t.shape)}, config.json implies {tuple(want)}; the "
                                  "files come from different runs")
    model.load_state_dict(tensors, strict=False)


# ----- run folder -------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What ``load`` returns: enough to evaluate, sample and resume."""

    model: RNNLM
    tokenizer: Tokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    info: dict  # the whole config.json
    weights: dict  # model.safetensors metadata: step, val_loss, …
    run_dir: Path
    weights_sha256: str = ""  # of the weights loaded, as their file's header records (and load checked)


# what sample and repl use without a run folder: the model that predicts general English and
# Korean text best (checkpoints/README.md)
PRETRAINED = "base"


def shipped_runs() -> dict[str, Path]:
    """The models shipped with charlm (checkpoints/ in the repository), by name."""
    root = Path(str(importlib.resources.files("charlm.checkpoints")))
    return {p.name: p for p in sorted(root.iterdir()) if (p / CONFIG_FILE).is_file()}


def pretrained_dir() -> Path:
    """The model commands use when given no run folder."""
    return Path(str(importlib.resources.files("charlm.checkpoints") / PRETRAINED))


def find_run(path: Path | str | None) -> Path:
    """The run folder ``path`` names: the path itself when it exists, else a shipped model of that name;
    None is the default shipped model. A name that is neither is a CheckpointError that suggests the
    closest run folder beside it, or the shipped models."""
    if path is None:
        return pretrained_dir()
    path = Path(path)
    if path.exists():
        return path
    shipped = shipped_runs()
    if path.name in shipped and len(path.parts) <= 2:  # 'base' or 'checkpoints/base' from another folder
        return shipped[path.name]
    parent = path.parent
    beside = [p.name for p in parent.iterdir() if is_run_dir(p)] if parent.is_dir() else []
    close = difflib.get_close_matches(path.name, beside, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {parent / close[0]}?"
    else:
        hint = f"the shipped models are {', '.join(shipped)} (pass the name alone)" if shipped else ""
    raise CheckpointError(f"checkpoint {path} does not exist: {PASS_A_RUN}" + (f"; {hint}" if hint else ""))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).exists()


def default_run_dir(corpus: str, level: str, cell: str, now: datetime) -> Path:
    """checkpoints/<corpus>-<cell>-<time>, with -<level> after <corpus> for byte and subword runs."""
    stem = re.sub(r"[^\w.-]+", "-", Path(corpus).stem).strip("-") or "corpus"
    level_part = "" if level == "char" else f"-{level}"
    return Path("checkpoints") / f"{stem}{level_part}-{cell}-{now:%Y%m%d-%H%M%S}"


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse to write into a folder holding another run (or other files) unless ``force``. Removes nothing:
    a run being replaced stays whole until the new one is ready to be written (``clear_old_run``)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CheckpointError(f"--out {out} is a file: pick a folder name")
    if is_run_dir(out):
        if force:
            return
        if not any((out / name).exists() for name in (LAST_FILE, MODEL_FILE)):
            raise CheckpointError(f"{out} holds a run that stopped before it saved anything: replace it with --force")
        raise CheckpointError(f"{out} already holds a run: continue it with --resume {out}, or replace it with --force")
    if any(out.iterdir()) and not force:
        raise CheckpointError(f"--out {out} is not empty: pick a new folder, or pass --force to write into it")


def clear_old_run(out: Path) -> None:
    """Remove the files of a run being replaced (--force); other files in the folder stay."""
    if out.is_dir() and is_run_dir(out):
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)


def create_run(run_dir: Path, tokenizer: Tokenizer, model_config: ModelConfig, train_config: TrainConfig,
               corpus: dict, command: str, parent: dict | None = None, write: bool = True) -> dict:
    """Write config.json and tokenizer.json for a new run; returns the config dict. ``parent`` is the lineage
    of the run it starts from (transfer.Parent.lineage), recorded as config.json's "parent"."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create output folder {run_dir}: {e.strerror}; pick a writable --out") from None
    if not os.access(run_dir, os.W_OK):
        raise CheckpointError(f"output folder {run_dir} is not writable: pick another --out")
    info = {
        "format_version": FORMAT_VERSION,
        "charlm_version": __version__,
        "torch_version": torch.__version__,
        "command": command,
        "corpus": corpus,
        "model": model_config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "file": TOKENIZER_FILE, "vocab_size": tokenizer.vocab_size,
                      "sha256": tokenizer.fingerprint()},
        "train": train_config.to_dict(),
    }
    if parent is not None:
        info["parent"] = parent
    if write:
        write_json(run_dir / TOKENIZER_FILE, tokenizer.to_dict())
        write_json(run_dir / CONFIG_FILE, info)
    return info


def save_weights(run_dir: Path, model: RNNLM, summary: dict, dtype: torch.dtype | None = None) -> None:
    """Write the best weights with their hash and a summary (step, val_loss …) in the header. ``dtype``
    stores the floating-point tensors in another precision (a shipped model's float16: half the bytes);
    loading casts them back to the model's float32."""
    tensors = model_tensors(model)
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {"format_version": str(FORMAT_VERSION), "weights_sha256": tensors_sha256(tensors),
                "summary": json.dumps(summary)}
    _write_safetensors(Path(run_dir) / MODEL_FILE, tensors, metadata)


def read_weights_summary(run_dir: Path) -> dict:
    """The summary in model.safetensors' header (step, val_loss …) without reading its tensors; {} if unreadable."""
    path = Path(run_dir) / MODEL_FILE
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return json.loads((f.metadata() or {}).get("summary", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}


RNGs = list[tuple[torch.Tensor, torch.Tensor | None]]  # per process (rank): torch's CPU and CUDA generator states


def save_training_state(run_dir: Path, model: RNNLM, optimizer: torch.optim.Optimizer, hidden: State | None,
                        progress: dict, rngs: RNGs | None = None) -> None:
    """Write everything ``--resume`` needs into last.safetensors in one atomic file.

    ``rngs`` holds each training process's generator states (default: this process's)."""
    tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
    if rngs is None:
        rngs = [(torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None)]
    for rank, (cpu_rng, cuda_rng) in enumerate(rngs):
        suffix = f".{rank}" if rank else ""  # rank 0's names are those of a single-process run
        tensors[f"rng.torch{suffix}"] = cpu_rng.cpu()
        if cuda_rng is not None:
            tensors[f"rng.cuda{suffix}"] = cuda_rng.cpu()
    if hidden is not None:
        for i, h in enumerate(hidden if isinstance(hidden, tuple) else (hidden,)):
            tensors[f"hidden.{i}"] = h.detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
    metadata = {
        "format_version": str(FORMAT_VERSION),
        "weights_sha256": tensors_sha256(tensors),
        "progress": json.dumps(progress),
        "param_groups": json.dumps(groups),
    }
    _write_safetensors(Path(run_dir) / LAST_FILE, tensors, metadata)


def read_config(run_dir: Path, kind: str | None = None) -> dict:
    """config.json of a run folder, checked for presence, JSON syntax and format version; with ``kind``
    (LANGUAGE_MODEL or CLASSIFIER), that the run is one: a one-line error naming the command for the other."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"checkpoint {run_dir} does not exist: {PASS_A_RUN}")
    if not run_dir.is_dir():
        raise CheckpointError(f"checkpoint {run_dir} is a file, not a run folder: pass the folder 'charlm train --out' "
                              "made")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no {CONFIG_FILE}: it is not a charlm run folder (or training never "
                              "started)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}): it was truncated or edited; "
                              "restore it or retrain") from None
    if not isinstance(info, dict) or not isinstance(info.get("format_version"), int):
        raise CheckpointError(f"{path} has no format_version: it is not a charlm checkpoint config")
    if info["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{run_dir} was written by charlm {info.get('charlm_version', '?')} (format {info['format_version']}); "
            f"this is charlm {__version__}: upgrade charlm to load it"
        )
    for key in ("model", "train", "tokenizer"):
        if not isinstance(info.get(key), dict):
            raise CheckpointError(f"{path} lacks its '{key}' section: it was edited; restore it or retrain")
    is_classifier = info.get("kind") == CLASSIFIER
    if kind == LANGUAGE_MODEL and is_classifier:
        raise CheckpointError(f"{run_dir} is a text classifier, not a language model: use charlm classify eval, "
                              f"predict or train --resume {run_dir}")
    if kind == CLASSIFIER and not is_classifier:
        raise CheckpointError(f"{run_dir} is a language model, not a text classifier: train one with charlm "
                              f"classify train DATA --from {run_dir}")
    return info


def load_tokenizer(run_dir: Path, info: dict) -> Tokenizer:
    path = Path(run_dir) / info["tokenizer"].get("file", TOKENIZER_FILE)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the run's tokenizer is needed; restore it or retrain")
    try:
        tokenizer = tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, CharlmError) as e:
        raise CheckpointError(f"{path} cannot be read ({e}): restore it or retrain") from None
    if tokenizer.fingerprint() != info["tokenizer"].get("sha256"):
        raise CheckpointError(f"{path} does not match the one this model was trained with (hash differs): restore it")
    return tokenizer


def load(run_dir: Path | str | None, device: torch.device | str = "cpu", weights: str = MODEL_FILE,
         impl: str | None = None) -> Checkpoint:
    """Load a run folder's model (best weights by default), tokenizer and configs, verifying every file.

    ``run_dir`` None loads the pretrained model shipped with charlm. ``impl`` ("fused" or "reference")
    runs the model with that implementation instead of the one it was trained with: the weights are the
    same either way (charlm.cells), which is how ``sample/eval/repl --impl`` cross over.
    """
    run_dir = find_run(run_dir)
    info = read_config(run_dir, LANGUAGE_MODEL)
    try:
        model_config = ModelConfig.from_dict(info["model"])
        train_config = TrainConfig.from_dict(info["train"])
    except (CharlmError, TypeError) as e:
        raise CheckpointError(f"{run_dir / CONFIG_FILE} has invalid settings ({e}): restore it or retrain") from None
    if impl is not None:
        model_config = dataclasses.replace(model_config, impl=impl)
    tokenizer = load_tokenizer(run_dir, info)
    model = RNNLM(model_config, tokenizer.vocab_size)
    summary, weights_sha256 = _fill(model, run_dir, weights)
    return Checkpoint(model.to(device), tokenizer, model_config, train_config, info, summary, run_dir, weights_sha256)


def _fill(model: torch.nn.Module, run_dir: Path, weights: str) -> tuple[dict, str]:
    """Load ``weights`` (MODEL_FILE or LAST_FILE) of ``run_dir`` into ``model``, its hash verified; returns the
    file's summary (the best weights') or progress (the last state's), and the weights' hash."""
    path = run_dir / weights
    tensors, metadata = _read_safetensors(path, "model weights")
    _verify_hash(path, metadata, tensors)
    if weights == LAST_FILE:
        tensors = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _load_weights(model, tensors, path)
    key = "summary" if weights == MODEL_FILE else "progress"
    return json.loads(metadata.get(key, "{}")), metadata["weights_sha256"]


def _verify_hash(path: Path, metadata: dict, tensors: dict) -> None:
    recorded = metadata.get("weights_sha256")
    if recorded is None:
        raise CheckpointError(f"{path} has no weights hash in its header: it was not written by charlm")
    if tensors_sha256(tensors) != recorded:
        raise CheckpointError(f"{path} fails its content check (SHA-256 differs): the file is corrupted; retrain or "
                              "restore it")


# ----- text classifiers -------------------------------------------------------------------------------------



def create_classifier_run(run_dir: Path, tokenizer: Tokenizer, model_config: ModelConfig, train_config: TrainConfig,
                          classifier: dict, labels: list[str], data: dict, command: str,
                          parent: dict | None = None) -> dict:
    """Write config.json and tokenizer.json for a new classifier run; returns the config dict. ``classifier``
    is its ClassifierConfig as a dict, ``labels`` the class names in the head's order, ``data`` where the
    examples came from and how many of each class training had."""
    info = create_run(run_dir, tokenizer, model_config, train_config, {}, command, parent, write=False)
    info = {"kind": CLASSIFIER, **{k: v for k, v in info.items() if k != "corpus"}, "classifier": classifier,
            "labels": labels, "data": data}
    write_json(Path(run_dir) / TOKENIZER_FILE, tokenizer.to_dict())
    write_json(Path(run_dir) / CONFIG_FILE, info)
    return info


@dataclass
class ClassifierCheckpoint:
    """What ``load_classifier`` returns."""

    model: torch.nn.Module  # classify.TextClassifier
    tokenizer: Tokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    classifier: dict  # its ClassifierConfig as a dict
    labels: list[str]
    info: dict
    weights: dict
    run_dir: Path


def load_classifier(run_dir: Path | str, device: torch.device | str = "cpu", weights: str = MODEL_FILE
                    ) -> ClassifierCheckpoint:
    """A classifier run's model (best weights by default), tokenizer and settings, every file verified."""
    from charlm.classify import TextClassifier
    from charlm.config import ClassifierConfig

    run_dir = find_run(run_dir)
    info = read_config(run_dir, CLASSIFIER)
    try:
        model_config, train_config = ModelConfig.from_dict(info["model"]), TrainConfig.from_dict(info["train"])
        clf = ClassifierConfig.from_dict(info["classifier"])
        labels = [str(label) for label in info["labels"]]
    except (CharlmError, TypeError, KeyError) as e:
        raise CheckpointError(f"{run_dir / CONFIG_FILE} has invalid settings ({e}): restore it or retrain") from None
    tokenizer = load_tokenizer(run_dir, info)
    model = TextClassifier(model_config, tokenizer.vocab_size, len(labels), clf)
    summary, _ = _fill(model, run_dir, weights)
    return ClassifierCheckpoint(model.to(device), tokenizer, model_config, train_config, info["classifier"], labels,
                                info, summary, run_dir)


@dataclass
class TrainingState:
    """What last.safetensors restores for --resume."""

    progress: dict
    optimizer_state: dict
    hidden: State | None  # of all B streams, (layers, B, H)
    rngs: dict[int, tuple[torch.Tensor, torch.Tensor | None]]  # rank → torch CPU and CUDA generator states


def load_training_state(run_dir: Path, model: RNNLM) -> TrainingState:
    """Load last.safetensors into ``model`` and return the optimizer state, hidden state, RNG and counters."""
    path = Path(run_dir) / LAST_FILE
    tensors, metadata = _read_safetensors(path, "training state")
    _verify_hash(path, metadata, tensors)
    _load_weights(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    try:
        groups = json.loads(metadata["param_groups"])
        progress = json.loads(metadata["progress"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} lacks its training counters: it is not a charlm training state") from None
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith("optim."):
            _, index, slot = name.split(".", 2)
            state.setdefault(int(index), {})[slot] = t
    hidden_parts = [tensors[f"hidden.{i}"] for i in range(2) if f"hidden.{i}" in tensors]
    hidden = None if not hidden_parts else hidden_parts[0] if len(hidden_parts) == 1 else tuple(hidden_parts)
    rngs = {}
    for name in tensors:
        if name.startswith("rng.torch"):
            suffix = name[len("rng.torch"):]
            rngs[int(suffix[1:] or 0)] = (tensors[name], tensors.get(f"rng.cuda{suffix}"))
    if 0 not in rngs:
        raise CheckpointError(f"{path} lacks its RNG state: it is not a charlm training state")
    return TrainingState(progress, {"state": state, "param_groups": groups}, hidden, rngs)
