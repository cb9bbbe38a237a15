"""Labelled text in, for text classification: (text, label) examples from tables, folders or hub datasets.

    reviews.csv  data.jsonl  data.parquet   a table: its --text-column and --label-column
    aclImdb/train/                          a folder with one subfolder per label (pos/, neg/), a file per text
    hf:imdb  hf:nsmc                        a Hugging Face dataset (hf:NAME[:CONFIG]) and its --split

Labels are kept as strings (a dataset's class label is read by its name).
``stratified_split`` holds out the same share of every class, in a seeded
order, so a dataset sorted by label (the IMDB layout) still validates on all
of them. Nothing here prints: problems are one-line DataError messages that
name the fix.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from charlm import corpus, hub
from charlm.errors import CorpusError

SPLIT_NAMES = {"train", "test", "val", "valid", "validation", "dev"}  # a folder of these holds splits, not labels


class DataError(CorpusError):
    """Labelled data that cannot be used as it is."""


@dataclass(frozen=True)
class Examples:
    """Texts and their labels, in the order they were read."""

    texts: list[str]
    labels: list[str]
    source: str  # where they came from, as the user named it

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Examples per label, most frequent first."""
        return dict(Counter(self.labels).most_common())

    def subset(self, indices: list[int]) -> Examples:
        return Examples([self.texts[i] for i in indices], [self.labels[i] for i in indices], self.source)

    def fingerprint(self) -> str:
        """SHA-256 of every (label, text) in order: a resumed run checks that its examples did not change."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.labels):
            digest.update(label.encode() + b"\0" + text.encode("utf-8", errors="surrogatepass") + b"\0")
        return digest.hexdigest()


def read(source: str, text_column: str = "text", label_column: str = "label", split: str = "train",
         labels: tuple[str, ...] | None = None, skip_empty: bool = False, encoding_errors: str = "strict",
         glob: str = "*.txt") -> Examples:
    """The examples of ``source`` (module docstring). ``labels`` keeps only those labels (e.g. the IMDB
    folder's pos and neg beside its unlabelled unsup/); ``skip_empty`` drops empty texts, which are an
    error otherwise."""
    path = Path(source).expanduser()
    if hub.is_hub_name(source) or (path.is_file() and hub.is_table_file(path)):
        texts, found = _table(source, text_column, label_column, split, encoding_errors)
        _check_wanted(labels, set(found), source)
    elif path.is_dir():
        subfolders = {sub.name for sub in path.iterdir() if sub.is_dir()}
        splits = sorted(subfolders & SPLIT_NAMES)
        if splits and not labels:
            raise DataError(f"the subfolders of {source} look like splits ({', '.join(splits)}), not labels: pass "
                            f"the training split's folder, e.g. {Path(source) / splits[-1]}")
        _check_wanted(labels, subfolders, source)
        texts, found = _folders(path, glob, encoding_errors, labels)
    elif path.exists():
        raise DataError(f"{source} is a {path.suffix or 'plain'} file, not a table: pass a csv, json, jsonl or "
                        "parquet file with a text and a label column, or a folder with one subfolder per label")
    else:
        raise DataError(f"no file or folder named {source!r}: pass a csv/json/jsonl/parquet file, a folder with "
                        "one subfolder per label, or hf:NAME")
    if labels:
        keep = [i for i, label in enumerate(found) if label in labels]
        texts, found = [texts[i] for i in keep], [found[i] for i in keep]
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty and not skip_empty:
        raise DataError(f"{source} has {len(empty):,} empty text(s) (the first is example {empty[0] + 1:,}): "
                        "remove them, or pass --skip-empty")
    if empty:
        drop = set(empty)
        keep = [i for i in range(len(texts)) if i not in drop]
        texts, found = [texts[i] for i in keep], [found[i] for i in keep]
    if not texts:
        raise DataError(f"{source} has no examples: pass data with some text in it")
    return Examples(texts, found, source)


def _check_wanted(labels: tuple[str, ...] | None, available: set[str], source: str) -> None:
    missing = [label for label in labels or () if label not in available]
    if missing:
        raise DataError(f"{source} has no label {missing[0]!r} (its labels: {_some(available)}): fix --labels")


def _some(labels: set[str], limit: int = 10) -> str:
    shown = sorted(labels)[:limit]
    return ", ".join(shown) + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _table(source: str, text_column: str, label_column: str, split: str, encoding_errors: str
           ) -> tuple[list[str], list[str]]:
    dataset = hub.load(source, split, encoding_errors)
    for column, option in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in dataset.column_names:
            raise DataError(f"{source} has no column {column!r} (columns: {', '.join(dataset.column_names)}): "
                            f"pass {option} NAME")
    names = getattr(dataset.features[label_column], "names", None)  # a ClassLabel: ids that stand for names
    texts, labels = [], []
    for batch in dataset.select_columns([text_column, label_column]).iter(batch_size=hub.BATCH_ROWS):
        for text, label in zip(batch[text_column], batch[label_column]):
            if text is not None and not isinstance(text, str):
                raise DataError(f"column {text_column!r} of {source} holds {type(text).__name__}, not text: "
                                "pass --text-column with a text column")
            if label is None:
                raise DataError(f"example {len(texts) + 1:,} of {source} has no label: remove it or fill it in")
            texts.append(text or "")
            labels.append(names[label] if names is not None and isinstance(label, int) and label >= 0 else str(label))
    return texts, labels


def _folders(folder: Path, glob: str, encoding_errors: str, keep: tuple[str, ...] | None
             ) -> tuple[list[str], list[str]]:
    """A folder with one subfolder per label, each holding one file per text (read in sorted order). With
    ``keep``, only those subfolders are read (not IMDB's 50,000 unlabelled unsup/ files beside pos/ and neg/)."""
    texts, labels = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (not keep or p.name in keep)):
        for file in sorted(p for p in sub.rglob(glob) if p.is_file()):
            texts.append(corpus.read_file(file, encoding_errors))
            labels.append(sub.name)
    if not texts:
        raise DataError(f"folder {folder} has no subfolders with {glob!r} files: lay it out as one subfolder per "
                        "label (e.g. train/pos/*.txt, train/neg/*.txt), or pass --glob")
    return texts, labels


def stratified_split(examples: Examples, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices): ``fraction`` of every label held out, in a seeded random order.
    Every label keeps at least one example in training (a label with a single example is never held out)."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(examples.labels):
        by_label.setdefault(label, []).append(i)
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted(by_label):
        indices = by_label[label][:]
        rng.shuffle(indices)
        n_held = min(int(round(len(indices) * fraction)), len(indices) - 1)
        held += indices[:n_held]
        train += indices[n_held:]
    return sorted(train), sorted(held)


def check_labels(known: list[str], other: Examples, what: str) -> None:
    """Refuse ``other`` (a test set) when it has a label that training never saw (``known``)."""
    unseen = sorted(set(other.labels) - set(known))
    if unseen:
        raise DataError(f"{what} has label(s) the classifier was not trained on: {_some(set(unseen))} (it knows "
                        f"{_some(set(known))}): pass data with the same labels, or --labels to keep those")
