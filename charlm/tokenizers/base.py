"""The interface every tokenizer keeps, as a base class: checkpoints, data, sampling, the REPL and the explore
commands rely on exactly these members."""

from __future__ import annotations

import abc
import hashlib
import json
from typing import Any

import numpy as np

from charlm.tokenizers.text import smallest_uint


class Tokenizer(abc.ABC):
    """str ↔ (N,) numpy ids in the smallest unsigned dtype; no torch.

    ``decode(encode(text))`` is ``text`` itself under normalize 'none', and its
    normal form otherwise (NFC for nfc and nfd, NFKC for nfkc); ``encode`` may
    return a read-only array.
    """

    kind: str  # "char", "byte" or "subword": what to_dict records, and what tokenizer_from_dict dispatches on
    unk_id: int | None  # the id unknown characters get, None where none can be unknown
    normalize: str  # the Unicode normal form applied before encoding (text.NORMALIZATIONS)
    chars: str  # the characters that one id stands for on its own

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids."""

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned dtype that holds every id."""
        return smallest_uint(self.vocab_size)

    @abc.abstractmethod
    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """(N,) ids of ``text``; ``unknown`` ('error', 'unk' or 'skip') says what to do with unknown characters."""

    @abc.abstractmethod
    def decode(self, ids) -> str:
        """The text of a sequence of ids (NFD output recomposed to NFC)."""

    @abc.abstractmethod
    def token(self, token_id: int) -> str:
        """The text of one token, for displays."""

    @abc.abstractmethod
    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` (after normalisation) that no id stands for."""

    @abc.abstractmethod
    def incremental_decoder(self):
        """A streaming decoder (text.TokenDecoder, Utf8Decoder or ComposingDecoder) for generated ids."""

    @abc.abstractmethod
    def count_chars(self, ids: np.ndarray) -> int:
        """Characters the ids stand for, the denominator of bits per character at every level."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description that ``from_dict`` rebuilds the same tokenizer from."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tokenizer":
        """The tokenizer ``to_dict`` described; TokenizerError when ``data`` is not one."""

    def fingerprint(self) -> str:
        """SHA-256 of ``to_dict()``, recorded in the checkpoint to catch a mismatched tokenizer file."""
        return hashlib.sha256(json.dumps(self.to_dict(), ensure_ascii=False).encode()).hexdigest()
