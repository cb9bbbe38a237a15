"""str ↔ token ids. No torch here: ids are numpy arrays.

CharTokenizer's vocabulary is the set of Unicode code points in the training
text, sorted, with id 0 reserved for unknown characters::

    text "hihello"  →  vocab ['<unk>', 'e', 'h', 'i', 'l', 'o']
                    →  ids   [2, 3, 2, 1, 4, 4, 5]

Encoding and decoding are vectorised through UTF-32 (one uint32 per code
point) and ``np.searchsorted``, so there is no per-character Python loop.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from charlm.errors import TokenizerError

UNK_ID = 0
UNK_DISPLAY = "\ufffd"  # what an unknown id decodes to
MAX_CHAR_VOCAB = 65_536  # more distinct characters than this is almost surely not text


def _code_points(text: str) -> np.ndarray:
    """(N,) uint32 code points of ``text``."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def _from_code_points(codes: np.ndarray) -> str:
    return codes.astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")


def smallest_uint(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds ids below ``vocab_size``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise TokenizerError(f"vocabulary of {vocab_size} tokens is too large")


def describe_chars(chars) -> str:
    """Readable list of characters for error messages: 'é' (U+00E9), '\\t' …"""
    shown = [f"{c!r} (U+{ord(c):04X})" for c in sorted(chars)[:10]]
    more = len(chars) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


class CharTokenizer:
    """Character-level tokenizer over Unicode code points; round trip is exact for known characters."""

    kind = "char"

    def __init__(self, chars: str):
        codes = np.unique(_code_points(chars))
        self._codes = codes  # (V-1,) sorted code points; id = index + 1
        self.chars = _from_code_points(codes)

    @classmethod
    def fit(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from training text."""
        if not text:
            raise TokenizerError("cannot build a vocabulary from empty text: pass a corpus with some text")
        codes = np.unique(_code_points(text))
        if len(codes) > MAX_CHAR_VOCAB:
            raise TokenizerError(
                f"corpus has {len(codes):,} distinct characters (limit {MAX_CHAR_VOCAB:,}); "
                "this is not ordinary text: check the file, or use --level byte"
            )
        return cls(_from_code_points(codes))

    @property
    def vocab_size(self) -> int:
        return len(self._codes) + 1

    @property
    def dtype(self) -> np.dtype:
        return smallest_uint(self.vocab_size)

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` that are not in the vocabulary."""
        codes = np.unique(_code_points(text))
        known = np.isin(codes, self._codes, assume_unique=True)
        return set(_from_code_points(codes[~known]))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """(N,) ids in the smallest unsigned dtype.

        ``unknown`` says what to do with characters outside the vocabulary:
        'error' raises TokenizerError listing them, 'unk' maps them to id 0,
        'skip' drops them.
        """
        codes = _code_points(text)
        pos = np.searchsorted(self._codes, codes)
        pos_clipped = np.minimum(pos, len(self._codes) - 1)
        known = self._codes[pos_clipped] == codes if len(self._codes) else np.zeros(len(codes), bool)
        ids = (pos_clipped + 1).astype(self.dtype)
        if known.all():
            return ids
        if unknown == "error":
            missing = set(_from_code_points(np.unique(codes[~known])))
            raise TokenizerError(
                f"text has {len(missing)} character(s) the model never saw: {describe_chars(missing)}; "
                "remove them, or pass --unknown unk (map to <unk>) or --unknown skip"
            )
        if unknown == "unk":
            ids[~known] = UNK_ID
            return ids
        if unknown == "skip":
            return ids[known]
        raise TokenizerError(f"unknown --unknown policy {unknown!r}: choose error, unk or skip")

    def decode(self, ids) -> str:
        """Text for a sequence of ids; id 0 decodes to U+FFFD."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise TokenizerError(f"token id out of range for a vocabulary of {self.vocab_size}")
        table = np.concatenate([np.array([ord(UNK_DISPLAY)], dtype=np.uint32), self._codes.astype(np.uint32)])
        return _from_code_points(table[ids])

    def token(self, token_id: int) -> str:
        """The text of one token (for displays such as the REPL)."""
        return UNK_DISPLAY if token_id == UNK_ID else self.chars[token_id - 1]

    def incremental_decoder(self) -> "CharDecoder":
        """A decoder for streaming output: feed one id at a time, get the text it completes."""
        return CharDecoder(self)

    def count_chars(self, ids: np.ndarray) -> int:
        """Number of characters the ids stand for (one per id at char level)."""
        return int(len(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CharTokenizer":
        if data.get("kind") != cls.kind or not isinstance(data.get("chars"), str):
            raise TokenizerError("tokenizer file is not a charlm char tokenizer: the checkpoint is corrupted")
        tok = cls(data["chars"])
        if tok.chars != data["chars"]:
            raise TokenizerError("tokenizer vocabulary is not sorted and unique: the checkpoint was edited")
        return tok

    def fingerprint(self) -> str:
        """SHA-256 of the vocabulary, recorded in the checkpoint to catch a mismatched tokenizer file."""
        return hashlib.sha256(json.dumps(self.to_dict(), ensure_ascii=False).encode()).hexdigest()


class CharDecoder:
    """Streaming decode at char level: every id is one whole character."""

    def __init__(self, tokenizer: CharTokenizer):
        self.tokenizer = tokenizer

    def feed(self, token_id: int) -> str:
        return self.tokenizer.token(token_id)


def tokenizer_from_dict(data: dict[str, Any]) -> CharTokenizer:
    """Rebuild a tokenizer saved with ``to_dict`` (dispatches on its 'kind')."""
    kinds = {CharTokenizer.kind: CharTokenizer}
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in kinds:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}: the checkpoint is corrupted or from a newer charlm")
    return kinds[kind].from_dict(data)
