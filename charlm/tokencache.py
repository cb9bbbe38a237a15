"""Token files: a corpus tokenized once into flat id files, opened as numpy memmaps and reused by later runs.

    <cache dir>/
      tokens-<key>/        key: SHA-256 of (format, corpus hash, split sizes, tokenizer fingerprint)
        train.bin          the ids of each part, back to back, in the tokenizer's dtype (smallest uint that fits)
        test.bin
        val.bin
        meta.json          per part: tokens, characters, SHA-256 of its text; unseen validation characters
      fit-<key>.json       a tokenizer fitted on a training split (key: corpus hash, split sizes, settings)

A token folder is written under a temporary name and renamed once complete,
so a crash never leaves a half-written cache behind, and two runs building the
same one at the same time do not clash. Change the corpus or the tokenizer and
the key changes, so a stale cache is never read; delete the folder to reclaim
the space.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from charlm.errors import CharlmError, CorpusError
from charlm.tokenizers import tokenizer_from_dict

FORMAT = 1
PARTS = ("train", "test", "val")  # in text order
META_FILE = "meta.json"


def default_dir() -> Path:
    """$CHARLM_CACHE_DIR, else $XDG_CACHE_HOME/charlm, else ~/.cache/charlm."""
    if os.environ.get("CHARLM_CACHE_DIR"):
        return Path(os.environ["CHARLM_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charlm"


def key(**fields: Any) -> str:
    """A short stable hash of JSON-able fields."""
    text = json.dumps({"format": FORMAT, **fields}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _make_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"cannot create cache folder {folder}: {e.strerror}; pass a writable --cache-dir "
                          "or --no-cache") from None


# ----- fitted tokenizers ------------------------------------------------------------------------------------


def load_fit(cache_dir: Path, fit_key: str):
    """The tokenizer saved under ``fit_key``, or None."""
    path = Path(cache_dir) / f"fit-{fit_key}.json"
    try:
        return tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, CharlmError):  # missing or unreadable: fit again
        return None


def save_fit(cache_dir: Path, fit_key: str, tokenizer) -> None:
    cache_dir = Path(cache_dir)
    _make_dir(cache_dir)
    fd, tmp = tempfile.mkstemp(prefix=".fit-", suffix=".tmp", dir=cache_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(tokenizer.to_dict(), f, ensure_ascii=False)
    os.replace(tmp, cache_dir / f"fit-{fit_key}.json")


# ----- token folders ----------------------------------------------------------------------------------------


class TokenWriter:
    """Appends ids to one file per part in ``folder``; ``close`` flushes them."""

    def __init__(self, folder: Path, dtype: np.dtype):
        self.folder, self.dtype = Path(folder), np.dtype(dtype)
        self.files = {part: open(self.folder / f"{part}.bin", "wb") for part in PARTS}
        self.tokens = dict.fromkeys(PARTS, 0)

    def write(self, part: str, ids: np.ndarray) -> None:
        self.files[part].write(np.ascontiguousarray(ids, dtype=self.dtype).data)
        self.tokens[part] += len(ids)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


@contextlib.contextmanager
def building(folder: Path | None) -> Iterator[Path]:
    """A temporary folder to write token files into; renamed to ``folder`` when the block succeeds
    (``folder`` None: a throwaway folder, removed afterwards)."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="charlm-tokens-") as tmp:
            yield Path(tmp)
        return
    _make_dir(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, folder)
        except OSError:
            if read_meta(folder) is not None:  # another run finished the same folder first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # a damaged folder: replace it
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_meta(folder: Path, meta: dict) -> None:
    (Path(folder) / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")


def read_meta(folder: Path | None) -> dict | None:
    """meta.json of a complete token folder whose files have the recorded sizes, else None."""
    if folder is None:
        return None
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
        itemsize = np.dtype(meta["dtype"]).itemsize
        for part in PARTS:
            if (Path(folder) / f"{part}.bin").stat().st_size != meta["parts"][part]["tokens"] * itemsize:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta


def open_parts(folder: Path, meta: dict, in_memory: bool) -> dict[str, np.ndarray]:
    """Each part's ids (N,): read-only memmaps, or arrays in memory when ``in_memory``."""
    parts = {}
    for part in PARTS:
        path, n = Path(folder) / f"{part}.bin", meta["parts"][part]["tokens"]
        if n == 0:
            parts[part] = np.zeros(0, dtype=meta["dtype"])
        elif in_memory:
            parts[part] = np.fromfile(path, dtype=meta["dtype"])
        else:
            parts[part] = np.memmap(path, dtype=meta["dtype"], mode="r", shape=(n,))
    return parts
