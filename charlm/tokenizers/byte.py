"""Byte level: the UTF-8 bytes of the text as ids 0-255, a fixed vocabulary with no unknown character."""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np

from charlm.errors import TokenizerError
from charlm.tokenizers.base import Tokenizer
from charlm.tokenizers.text import (
    ComposingDecoder,
    Utf8Decoder,
    check_ids,
    check_normalize,
    count_composed,
    normalize_text,
)


class ByteTokenizer(Tokenizer):
    """The UTF-8 bytes of the text as ids 0-255: a fixed vocabulary of 256 with no unknown character."""

    kind = "byte"
    unk_id = None
    vocab_size = 256
    dtype = np.dtype(np.uint8)
    chars = "".join(map(chr, range(128)))  # the characters one id stands for on its own

    def __init__(self, normalize: str = "none"):
        self.normalize = check_normalize(normalize)

    @classmethod
    def fit(cls, text: str = "", normalize: str = "none") -> "ByteTokenizer":
        """Nothing to learn: every text is made of the same 256 byte values."""
        return cls(normalize)

    def unknown_chars(self, text: str) -> set[str]:
        return set()

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """(N,) uint8: the UTF-8 bytes of the (normalised) text; ``unknown`` has nothing to do."""
        data = normalize_text(text, self.normalize).encode("utf-8", errors="surrogatepass")
        return np.frombuffer(data, dtype=np.uint8)  # read-only, no copy

    def decode(self, ids) -> str:
        """Text for a sequence of bytes; a byte sequence that is not UTF-8 decodes to U+FFFD."""
        data = check_ids(ids, 256).astype(np.uint8).tobytes()
        text = data.decode("utf-8", errors="replace")
        return unicodedata.normalize("NFC", text) if self.normalize == "nfd" else text

    def token(self, token_id: int) -> str:
        """An ASCII byte is its character; any other byte reads <0xE2>, as sentencepiece writes it."""
        return chr(token_id) if token_id < 128 else f"<0x{token_id:02X}>"

    def incremental_decoder(self):
        decoder = Utf8Decoder(lambda token_id: bytes([token_id]))
        return ComposingDecoder(decoder) if self.normalize == "nfd" else decoder

    def count_chars(self, ids: np.ndarray) -> int:
        """Characters the bytes stand for: the bytes that start a UTF-8 sequence (not 0b10xxxxxx)."""
        if self.normalize == "nfd":
            return count_composed(self, ids)
        ids = np.asarray(ids)
        return int(len(ids) - np.count_nonzero((ids & 0xC0) == 0x80))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": 256, "normalize": self.normalize}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ByteTokenizer":
        if data.get("kind") != cls.kind or data.get("vocab_size") != 256:
            raise TokenizerError("tokenizer file is not a charlm byte tokenizer: the checkpoint is corrupted")
        return cls(data.get("normalize", "none"))


class ByteFitter:
    """The byte vocabulary is fixed (all 256 values), so fitting only carries the normalisation setting."""

    def __init__(self, normalize: str):
        self.normalize = normalize

    def add(self, text: str) -> None:
        """Nothing to learn from the text at byte level."""

    def finish(self) -> ByteTokenizer:
        return ByteTokenizer(self.normalize)
