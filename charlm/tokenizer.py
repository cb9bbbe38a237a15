"""str ↔ token ids at three levels. No torch here: ids are numpy arrays in the smallest unsigned dtype.

    level    class                          vocabulary                                   unknown characters
    char     CharTokenizer                  code points of the training text + <unk>     <unk> (id 0), or an error
    byte     ByteTokenizer                  the 256 values of a UTF-8 byte               none
    subword  subword.SentencePieceTokenizer sentencepiece pieces + 256 byte pieces       none (byte fallback)

CharTokenizer's vocabulary is the set of code points in the training text,
sorted, with id 0 reserved for unknown characters::

    text "hihello"  →  vocab ['<unk>', 'e', 'h', 'i', 'l', 'o']
                    →  ids   [2, 3, 2, 1, 4, 4, 5]

Every tokenizer can first normalise its input to a Unicode form (``normalize``:
none, nfc, nfkc or nfd). NFD splits a Hangul syllable into its jamo (한 → ᄒ ᅡ ᆫ),
so a Korean character vocabulary shrinks from thousands to under a hundred;
``decode`` recomposes NFD output to NFC, so what a user reads is ordinary text.
So ``decode(encode(text))`` is ``text`` itself for 'none', and the normal form
(NFC for nfc and nfd, NFKC for nfkc) otherwise.

The interface every tokenizer keeps (checkpoint.py, sampling and the REPL rely on it):
``kind``, ``fit``, ``encode(text, unknown) -> (N,) ids``, ``decode(ids)``, ``token(id)``,
``vocab_size``, ``dtype``, ``chars``, ``unknown_chars(text)``, ``count_chars(ids)`` (characters
the ids stand for, for bits per character at every level), ``incremental_decoder()``,
``to_dict()`` / ``from_dict()`` (JSON) and ``fingerprint()``. ``TokenizerSpec`` fits one
from a stream of text chunks; ``tokenizer_from_dict`` rebuilds any kind.

``encode`` may return a read-only array (it wraps the translated bytes without a
copy, which matters at hundreds of MB/s); copy it before writing into it.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from charlm.errors import TokenizerError

UNK_ID = 0
UNK_DISPLAY = "\ufffd"  # what an unknown id decodes to
MAX_CHAR_VOCAB = 65_536  # more distinct characters than this is almost surely not text
N_CODE_POINTS = 0x110000
LEVELS = ("char", "byte", "subword")
NORMALIZATIONS = ("none", "nfc", "nfkc", "nfd")
SUBWORD_MODELS = ("unigram", "bpe")


# ----- helpers ----------------------------------------------------------------------------------------------


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


def normalize_text(text: str, form: str) -> str:
    """``text`` in Unicode normal form ``form`` ('none' leaves it alone)."""
    if form == "none":
        return text
    form = form.upper()
    return text if unicodedata.is_normalized(form, text) else unicodedata.normalize(form, text)


def _check_normalize(form: str) -> str:
    if form not in NORMALIZATIONS:
        raise TokenizerError(f"unknown normalization {form!r}: choose {', '.join(NORMALIZATIONS)}")
    return form


def _check_ids(ids, vocab_size: int) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise TokenizerError(f"token id out of range for a vocabulary of {vocab_size}")
    return ids


class _Fingerprinted:
    """``fingerprint()``: SHA-256 of ``to_dict()``, recorded in the checkpoint to catch a mismatched tokenizer file."""

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), ensure_ascii=False).encode()).hexdigest()


# ----- char level -------------------------------------------------------------------------------------------


class CharTokenizer(_Fingerprinted):
    """Character-level tokenizer over Unicode code points; round trip is exact for known characters.

    Encoding is vectorised: text whose code points are all below 256 goes through
    ``bytes.translate`` (about 1.4 GB/s), any other text through UTF-32 and a
    code point → id lookup table, so there is no per-character Python loop.
    """

    kind = "char"
    unk_id = UNK_ID

    def __init__(self, chars: str, normalize: str = "none"):
        codes = np.unique(_code_points(chars))
        self._codes = codes  # (V-1,) sorted code points; id = index + 1
        self.chars = _from_code_points(codes)
        self.normalize = _check_normalize(normalize)
        self._table = None  # (0x110000,) code point → id, 0 for unknown; built on first use
        self._latin = None  # 256-byte translate table for code points < 256, when every id fits a byte

    @classmethod
    def fit(cls, text: str, normalize: str = "none") -> "CharTokenizer":
        """Build the vocabulary from training text (after normalising it)."""
        return cls.fit_chunks([text], normalize)

    @classmethod
    def fit_chunks(cls, chunks: Iterable[str], normalize: str = "none") -> "CharTokenizer":
        """Build the vocabulary from training text given in pieces (a corpus larger than memory)."""
        fitter = CharFitter(normalize)
        for chunk in chunks:
            fitter.add(chunk)
        return fitter.finish()

    @property
    def vocab_size(self) -> int:
        return len(self._codes) + 1

    @property
    def dtype(self) -> np.dtype:
        return smallest_uint(self.vocab_size)

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
            return table[_code_points(text)]
        if self._latin is not None:
            return np.frombuffer(latin.translate(self._latin), dtype=np.uint8)  # read-only, no copy
        return table[np.frombuffer(latin, dtype=np.uint8)]

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` (after normalisation) that are not in the vocabulary."""
        codes = np.unique(_code_points(normalize_text(text, self.normalize)))
        known = np.isin(codes, self._codes, assume_unique=True)
        return set(_from_code_points(codes[~known]))

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
        ids = _check_ids(ids, self.vocab_size)
        table = np.concatenate([np.array([ord(UNK_DISPLAY)], dtype=np.uint32), self._codes.astype(np.uint32)])
        text = _from_code_points(table[ids])
        return unicodedata.normalize("NFC", text) if self.normalize == "nfd" else text

    def token(self, token_id: int) -> str:
        """The text of one token (for displays such as the REPL)."""
        return UNK_DISPLAY if token_id == UNK_ID else self.chars[token_id - 1]

    def incremental_decoder(self):
        """A decoder for streaming output: feed one id at a time, get the text it completes."""
        decoder = CharDecoder(self)
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
        self.normalize = _check_normalize(normalize)
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
            codes = _code_points(text)
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
        return CharTokenizer(_from_code_points(codes), self.normalize)


class CharDecoder:
    """Streaming decode at char level: every id is one whole character.

    Every streaming decoder has ``feed(id) -> str``, ``flush() -> str`` (what it still holds, at the
    end), ``prime(text) -> str`` (start after text already written; see ComposingDecoder) and
    ``complete`` (nothing held back that a later token could still finish).
    """

    complete = True

    def __init__(self, tokenizer: CharTokenizer):
        self.tokenizer = tokenizer

    def prime(self, text: str) -> str:
        return text

    def feed(self, token_id: int) -> str:
        return self.tokenizer.token(token_id)

    def flush(self) -> str:
        return ""


# ----- byte level -------------------------------------------------------------------------------------------


class ByteTokenizer(_Fingerprinted):
    """The UTF-8 bytes of the text as ids 0-255: a fixed vocabulary of 256 with no unknown character."""

    kind = "byte"
    unk_id = None
    vocab_size = 256
    dtype = np.dtype(np.uint8)
    chars = "".join(map(chr, range(128)))  # the characters one id stands for on its own

    def __init__(self, normalize: str = "none"):
        self.normalize = _check_normalize(normalize)

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
        data = _check_ids(ids, 256).astype(np.uint8).tobytes()
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


# ----- streaming decoders -----------------------------------------------------------------------------------


class Utf8Decoder:
    """Streaming decode of ids that stand for bytes: incomplete UTF-8 is held back until it completes.

    ``piece_bytes(id)`` gives the bytes of one token; ``flush`` returns what is
    still held (as U+FFFD when incomplete) at the end of a stream.
    """

    def __init__(self, piece_bytes):
        self.piece_bytes = piece_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def complete(self) -> bool:
        return not self._utf8.getstate()[0]  # no bytes of an unfinished character held

    def prime(self, text: str) -> str:
        return text

    def feed(self, token_id: int) -> str:
        return self._utf8.decode(self.piece_bytes(token_id))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


class ComposingDecoder:
    """Wraps a streaming decoder of NFD text and emits NFC: the last character, which a following
    jamo or combining mark could still change (ᄒ + ᅡ → 하), is held back until the next one arrives."""

    def __init__(self, inner):
        self.inner = inner
        self._pending = ""

    @property
    def complete(self) -> bool:
        """False while the held character is a leading consonant alone (ᄒ), which only a vowel finishes."""
        return self.inner.complete and not (self._pending and _is_leading_jamo(self._pending[-1]))

    def prime(self, text: str) -> str:
        """Start after ``text`` (a prompt): returns it in NFC, less a last syllable that a first jamo
        could still join (고 + ᆼ → 공; ᄀ + ᅡ → 가), which is held and comes back with the next piece."""
        text = unicodedata.normalize("NFC", self._pending + text)
        if text and _joinable(text[-1]):
            self._pending, text = text[-1], text[:-1]
        else:
            self._pending = ""
        return text

    def feed(self, token_id: int) -> str:
        return self._hold_last(unicodedata.normalize("NFC", self._pending + self.inner.feed(token_id)))

    def _hold_last(self, text: str) -> str:
        cut = len(text)
        while cut > 0 and unicodedata.combining(text[cut - 1]):
            cut -= 1
        cut = max(cut - 1, 0)  # keep the last starter and any marks after it
        self._pending = text[cut:]
        return text[:cut]

    def flush(self) -> str:
        text = unicodedata.normalize("NFC", self._pending + self.inner.flush())
        self._pending = ""
        return text


def _joinable(char: str) -> bool:
    """A leading consonant alone (ᄀ), or a syllable with no final consonant (고): a next jamo can join it."""
    return _is_leading_jamo(char) or ("\uac00" <= char <= "\ud7a3" and (ord(char) - 0xAC00) % 28 == 0)


def _is_leading_jamo(char: str) -> bool:
    """A conjoining initial consonant (U+1100–U+115F, U+A960–U+A97F): a syllable begun, not yet readable."""
    return "\u1100" <= char <= "\u115f" or "\ua960" <= char <= "\ua97f"


EXTRA_TOKENS = 8  # at most this many tokens past a requested length, to finish a character or syllable


def continuation_text(decoder, ids: Iterable[int], length: int, after: str = "") -> Iterator[str]:
    """The text of generated ``ids`` written after ``after``, piece by piece, through a streaming ``decoder``.

    Yields ``after`` first (under an NFD decoder in NFC and less its last syllable, which comes back with
    the next piece, joined with the first jamo when it belongs there: 고 + ᆼ → 공), then the text of each
    id. Stops after ``length`` ids as soon as no character is left half-written (a UTF-8 sequence cut
    short, a syllable that is only its leading consonant), within EXTRA_TOKENS more ids.
    """
    yield decoder.prime(after)
    ids, fed = iter(ids), 0
    while fed < length or (0 < fed < length + EXTRA_TOKENS and not decoder.complete):
        token_id = next(ids, None)  # drawn only when needed: for a model, each id is a step of generation
        if token_id is None:
            break
        yield decoder.feed(int(token_id))
        fed += 1
    yield decoder.flush()


def count_composed(tokenizer, ids: np.ndarray, block: int = 1 << 20) -> int:
    """Characters of ``tokenizer.decode(ids)`` (NFC) without decoding everything at once.

    The ids are decoded in blocks cut just after a newline id, where NFC cannot
    join characters across the cut; a block with no newline grows until one comes.
    """
    ids = np.asarray(ids)
    newline = tokenizer.encode("\n", unknown="skip")
    if len(newline) != 1:
        return len(tokenizer.decode(ids))
    breaks = np.flatnonzero(ids == newline[0]) + 1  # candidate cuts, after each newline
    total, start = 0, 0
    while start < len(ids):
        i = np.searchsorted(breaks, start + block)
        end = int(breaks[i]) if i < len(breaks) else len(ids)
        total += len(tokenizer.decode(ids[start:end]))
        start = end
    return total


def skipped_chars(tokenizer, text: str) -> int:
    """Characters of ``text`` that ``encode(text, unknown="skip")`` drops entirely.

    Under NFD a character is dropped when every code point of its decomposition is
    unknown; one that keeps a token (an 'é' whose combining accent is unknown keeps
    its 'e') is still predicted, so it still counts towards bits per character.
    Decomposition works one character at a time, so characters as read are counted.
    Under the other forms, where composition joins neighbours, each unknown
    character of the normal form is one dropped token.
    """
    unknown = tokenizer.unknown_chars(text)
    if not unknown:
        return 0
    if tokenizer.normalize != "nfd":
        return int((tokenizer.encode(text, unknown="unk") == tokenizer.unk_id).sum())
    codes, counts = np.unique(_code_points(text), return_counts=True)
    dropped = 0
    for code, count in zip(codes.tolist(), counts.tolist()):
        form = normalize_text(chr(code), tokenizer.normalize)
        if form and set(form) <= unknown:
            dropped += count
    return dropped


# ----- choosing and rebuilding a tokenizer ------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSpec:
    """How to build a tokenizer for a run: level, normalisation and, for subwords, vocabulary size and model."""

    level: str = "char"
    normalize: str = "none"
    vocab_size: int = 4000  # subword level only
    model_type: str = "unigram"  # subword level only: unigram or bpe

    def __post_init__(self):
        if self.level not in LEVELS:
            raise TokenizerError(f"unknown --level {self.level!r}: choose {', '.join(LEVELS)}")
        _check_normalize(self.normalize)
        if self.model_type not in SUBWORD_MODELS:
            raise TokenizerError(f"unknown --sp-model {self.model_type!r}: choose {' or '.join(SUBWORD_MODELS)}")
        if self.level == "subword" and self.vocab_size < 300:
            raise TokenizerError(f"--vocab-size {self.vocab_size} is too small for subwords (256 byte pieces are "
                                 "always in the vocabulary): pass 300 or more, or use --level byte")

    @property
    def needs_fit(self) -> bool:
        """False for the byte level, whose vocabulary is fixed."""
        return self.level != "byte"

    def fitter(self, expected_bytes: int = 0):
        """An object with ``add(text_chunk)`` and ``finish() -> tokenizer``, fed the training text only.

        ``expected_bytes`` (the size of the training text) lets the subword fitter
        sample evenly through a corpus larger than its training budget.
        """
        if self.level == "char":
            return CharFitter(self.normalize)
        if self.level == "byte":
            return _ByteFitter(self.normalize)
        from charlm.subword import SubwordFitter

        return SubwordFitter(self.vocab_size, self.model_type, self.normalize, expected_bytes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ByteFitter:
    """The byte vocabulary is fixed (all 256 values), so fitting only carries the normalisation setting."""

    def __init__(self, normalize: str):
        self.normalize = normalize

    def add(self, text: str) -> None:
        """Nothing to learn from the text at byte level."""

    def finish(self) -> ByteTokenizer:
        return ByteTokenizer(self.normalize)


def tokenizer_from_dict(data: dict[str, Any]):
    """Rebuild a tokenizer saved with ``to_dict`` (dispatches on its 'kind')."""
    from charlm.subword import SentencePieceTokenizer

    kinds = {cls.kind: cls for cls in (CharTokenizer, ByteTokenizer, SentencePieceTokenizer)}
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in kinds:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}: the checkpoint is corrupted or from a newer charlm")
    return kinds[kind].from_dict(data)
