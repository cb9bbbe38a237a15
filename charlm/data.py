"""Corpus → tokenizer → id arrays: the data half of a run, shared by train, resume and eval.

Nothing here prints; warnings come back as strings for the CLI to show.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from charlm import corpus as corpus_mod
from charlm.errors import CorpusError
from charlm.tokenizer import CharTokenizer, describe_chars


@dataclass
class RunData:
    tokenizer: CharTokenizer
    train_ids: np.ndarray  # (N_train,)
    val_ids: np.ndarray | None  # (N_val,) or None when there is no validation text
    val_chars: int
    corpus_info: dict  # recorded in config.json, so eval can find the validation text again
    warnings: list[str] = field(default_factory=list)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare(source: str, val_fraction: float, test_fraction: float = 0.0, val_source: str | None = None,
            encoding_errors: str = "strict", tokenizer: CharTokenizer | None = None) -> RunData:
    """Load, split, fit the tokenizer on the training text only (unless one is given), encode.

    Validation characters unseen in training are mapped to <unk> with a warning,
    so they cost the model (as they should) instead of stopping the run.
    """
    loaded = corpus_mod.load_text(source, encoding_errors)
    warnings = []
    if val_source is not None:
        train_text, _, test_text = corpus_mod.split(loaded.text, 0.0, test_fraction)
        val_text = corpus_mod.load_text(val_source, encoding_errors).text
    else:
        train_text, val_text, test_text = corpus_mod.split(loaded.text, val_fraction, test_fraction)
    tokenizer = tokenizer or CharTokenizer.fit(train_text)
    train_ids = tokenizer.encode(train_text, unknown="error")
    val_ids = None
    if len(val_text) >= 2:
        unseen = tokenizer.unknown_chars(val_text)
        if unseen:
            warnings.append(f"validation text has {len(unseen)} character(s) not in the training text, scored as <unk>: "
                            f"{describe_chars(unseen)}")
        val_ids = tokenizer.encode(val_text, unknown="unk")
    elif val_fraction > 0 or val_source:
        warnings.append("validation split is empty (corpus too short): training without validation; "
                        "pass --val FILE or a longer corpus")
    info = {
        "source": loaded.source,
        "files": loaded.files,
        "characters": len(loaded.text),
        "train_characters": len(train_text),
        "train_sha256": sha256_text(train_text),
        "val_source": val_source,
        "val_characters": len(val_text) if val_ids is not None else 0,
        "val_sha256": sha256_text(val_text) if val_ids is not None else None,
        "test_characters": len(test_text),
        "test_sha256": sha256_text(test_text) if test_text else None,
        "encoding_errors": encoding_errors,
    }
    val_chars = tokenizer.count_chars(val_ids[1:]) if val_ids is not None else 0
    return RunData(tokenizer, train_ids, val_ids, val_chars, info, warnings)


def recorded_split(corpus_info: dict, train_config: dict, split_name: str) -> str:
    """Re-read a run's corpus and return its 'val', 'test' or 'train' text, checked against the recorded hash."""
    source = corpus_info.get("val_source") if split_name == "val" and corpus_info.get("val_source") else corpus_info.get("source")
    if not source:
        raise CorpusError("the checkpoint does not record its corpus: pass a text file to evaluate on")
    try:
        loaded = corpus_mod.load_text(source, corpus_info.get("encoding_errors", "strict"))
    except CorpusError as e:
        raise CorpusError(f"cannot re-read the run's corpus ({e}); pass a text file to evaluate on") from None
    if split_name == "val" and corpus_info.get("val_source"):
        text = loaded.text
    else:
        val_fraction = 0.0 if corpus_info.get("val_source") else train_config["val_fraction"]
        train, val, test = corpus_mod.split(loaded.text, val_fraction, train_config["test_fraction"])
        text = {"train": train, "val": val, "test": test}[split_name]
    recorded = corpus_info.get(f"{split_name}_sha256")
    if recorded is None or not text:
        raise CorpusError(f"the run has no {split_name} split: pass a text file to evaluate on")
    if sha256_text(text) != recorded:
        raise CorpusError(f"{source} has changed since training (its {split_name} split differs): "
                          "pass the text to evaluate on explicitly")
    return text
