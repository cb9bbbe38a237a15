"""Character level: the code points of the training text, sorted, with id 0 for unknown characters::

    text "hihello"  →  vocab ['<unk>', 'e', 'h', 'i', 'l', 'o']
                    →  ids   [2, 3, 2, 1, 4, 4, 5]

With ``normalize`` 'nfd' a Hangul syllable becomes its jamo (한 → ᄒ ᅡ ᆫ), so a
Korean vocabulary shrinks from thousands of characters to under a hundred;
``decode`` recomposes to NFC.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np

from charlm.errors import TokenizerError
from charlm.tokenizers.base import Tokenizer
from charlm.tokenizers.text import (
    N_CODE_POINTS,
    UNK_DISPLAY,
    ComposingDecoder,
    TokenDecoder,
    check_ids,
    check_normalize,
    code_points,
    count_composed,
    describe_chars,
    from_code_points,
    normalize_text,
)

UNK_ID = 0
MAX_CHAR_VOCAB = 65_536  # more distinct characters than this is almost surely not text


class CharTokenizer(Tokenizer):
    """Character-level tokenizer over Unicode code points; round trip is exact for known characters.

    Encoding is vectorised: text whose code points are all below 256 goes through
    ``bytes.translate`` (one C call), any other text through UTF-32 and a
    code point → id lookup table, so there is no per-character Python loop.
    """

    kind = "char"
    unk_id = UNK_ID

    def __init__(self, chars: str, normalize: str = "none"):
        codes = np.unique(code_points(chars))
        self._codes = codes  # (V-1,) sorted code points; id = index + 1
        self.chars = from_code_points(codes)
        self.normalize = check_normalize(normalize)
        self._table = None  # (0x110000,) code point → id, 0 for unknown; built on first use
        self._latin = None  # 256-byte translate table for code points < 256, when every id fits a byte

    def extended(self, chars: str) -> "CharTokenizer":
        """This vocabulary with ``chars`` added (ids of the characters it had may change: ``id_map`` says how)."""
        return CharTokenizer(self.chars + chars, self.normalize)

    def grown_by(self, fitted: "CharTokenizer") -> tuple["CharTokenizer", str]:
        """This vocabulary with the characters of ``fitted`` (a new text's) that it lacks, and those
        characters: how a run started from this one's model takes in a new text."""
        added = "".join(sorted(set(fitted.chars) - set(self.chars)))
        return self.extended(added), added

    def id_map(self, other: "CharTokenizer") -> np.ndarray:
        """(V,) int64: the id in ``other``'s vocabulary of each of this one's ids (<unk> → <unk>); -1 where
        ``other`` lacks the character."""
        codes = other._codes
        at = np.searchsorted(codes, self._codes)
        found = (at < len(codes)) & (codes[np.minimum(at, len(codes) - 1)] == self._codes)
        return np.concatenate([[UNK_ID], np.where(found, at + 1, -1)]).astype(np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self._codes) + 1

    def _lookup(self) -> np.ndarray:
        if self._table is None:
            self._table = np.zeros(N_CODE_POINTS, dtype=self.dtype)
            self._table[self._codes] = np.arange(1, self.vocab_size, dtype=self.dtype)
            if self.vocab_size <= 256:
                self._latin = self._table[:256].astype(np.uint8).tobytes()
        return self._table

    def _ids(self, text: str) -> np.ndarray:
        """(N,) ids of already-normalised text, 0 where a character is unknown."""
        table = self._lookup()
        try:
            latin = text.encode("latin-1")  # one byte per character: fast path for most Western text
        except UnicodeEncodeError:
            return table[code_points(text)]
        if self._latin is not None:
            return np.frombuffer(latin.translate(self._latin), dtype=np.uint8)  # read-only, no copy
        return table[np.frombuffer(latin, dtype=np.uint8)]

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` (after normalisation) that are not in the vocabulary."""
        codes = np.unique(code_points(normalize_text(text, self.normalize)))
        known = np.isin(codes, self._codes, assume_unique=True)
        return set(from_code_points(codes[~known]))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """(N,) ids in the smallest unsigned dtype.

        ``unknown`` says what to do with characters outside the vocabulary:
        'error' raises TokenizerError listing them, 'unk' maps them to id 0,
        'skip' drops them.
        """
        ids = self._ids(normalize_text(text, self.normalize))
        missing = ids == UNK_ID
        if not missing.any():
            return ids
        if unknown == "error":
            chars = self.unknown_chars(text)
            raise TokenizerError(
                f"text has {len(chars)} character(s) the model never saw: {describe_chars(chars)}; "
                "remove them, or pass --unknown unk (map to <unk>) or --unknown skip"
            )
        if unknown == "unk":
            return ids
        if unknown == "skip":
            return ids[~missing]
        raise TokenizerError(f"unknown --unknown policy {unknown!r}: choose error, unk or skip")

    def decode(self, ids) -> str:
        """Text for a sequence of ids; id 0 decodes to U+FFFD; NFD output is recomposed to NFC."""
        ids = check_ids(ids, self.vocab_size)
        table = np.concatenate([np.array([ord(UNK_DISPLAY)], dtype=np.uint32), self._codes.astype(np.uint32)])
        text = from_code_points(table[ids])
        return unicodedata.normalize("NFC", text) if self.normalize == "nfd" else text

    def token(self, token_id: int) -> str:
        """The text of one token (for displays such as the REPL)."""
        return UNK_DISPLAY if token_id == UNK_ID else self.chars[token_id - 1]

    def incremental_decoder(self):
        """A decoder for streaming output: feed one id at a time, get the text it completes."""
        decoder = TokenDecoder(self)
        return ComposingDecoder(decoder) if self.normalize == "nfd" else decoder

    def count_chars(self, ids: np.ndarray) -> int:
        """Number of characters the ids stand for: one per id, or the recomposed length under NFD."""
        if self.normalize == "nfd":
            return count_composed(self, ids)
        return int(len(ids))

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": self.kind, "chars": self.chars}
        if self.normalize != "none":  # absent for 'none', so older checkpoints keep their fingerprint
            data["normalize"] = self.normalize
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CharTokenizer":
        if data.get("kind") != cls.kind or not isinstance(data.get("chars"), str):
            raise TokenizerError("tokenizer file is not a charlm char tokenizer: the checkpoint is corrupted")
        tok = cls(data["chars"], data.get("normalize", "none"))
        if tok.chars != data["chars"]:
            raise TokenizerError("tokenizer vocabulary is not sorted and unique: the checkpoint was edited")
        return tok


class CharFitter:
    """Collects the distinct code points of training text chunk by chunk; ``finish`` makes the tokenizer.

    Each code point's first position is kept, so one pass over a whole corpus can
    fit the vocabulary of its first ``before`` characters (its training part)
    before knowing where that part ends. Memory: one flag per possible code point
    (1.1 MB) and one position per character seen, whatever the corpus size.
    """

    def __init__(self, normalize: str = "none"):
        self.normalize = check_normalize(normalize)
        self._seen = np.zeros(N_CODE_POINTS, dtype=bool)
        self._seen_latin = bytearray()  # the code points < 256 seen so far, for the fast path below
        self._first: dict[int, int] = {}  # code point → position of its first occurrence
        self._any = False

    def add(self, text: str, start: int = 0) -> None:
        """Add a chunk of (not yet normalised) training text that starts at character ``start``."""
        text = normalize_text(text, self.normalize)
        self._any = self._any or bool(text)
        try:
            latin = text.encode("latin-1")
        except UnicodeEncodeError:
            codes = code_points(text)
            fresh = np.flatnonzero(~self._seen[codes])  # positions of characters not seen before
            new, at = np.unique(codes[fresh], return_index=True)
            self._remember(new.tolist(), (start + fresh[at]).tolist())
            return
        # delete the bytes already seen; what is left (usually nothing) holds the new ones
        rest = latin.translate(None, bytes(self._seen_latin))
        while rest:
            new = bytes(set(rest[:4096]))
            self._remember(list(new), [start + latin.find(bytes([b])) for b in new])
            rest = rest.translate(None, new)

    def _remember(self, codes: list[int], positions: list[int]) -> None:
        for code, position in zip(codes, positions):
            self._first[code] = position
            self._seen[code] = True
            if code < 256:
                self._seen_latin.append(code)

    def finish(self, before: int | None = None) -> CharTokenizer:
        """The tokenizer of the characters seen (only those first seen before character ``before``, if given)."""
        if not self._any:
            raise TokenizerError("cannot build a vocabulary from empty text: pass a corpus with some text")
        codes = np.array(sorted(c for c, p in self._first.items() if before is None or p < before), dtype=np.uint32)
        if len(codes) > MAX_CHAR_VOCAB:
            raise TokenizerError(
                f"corpus has {len(codes):,} distinct characters (limit {MAX_CHAR_VOCAB:,}); "
                "this is not ordinary text: check the file, or use --level byte"
            )
        return CharTokenizer(from_code_points(codes), self.normalize)
