"""Text helpers shared by the tokenizers, and the streaming side of decoding.

No torch here. Code points travel as numpy arrays (``code_points`` /
``from_code_points``); ``normalize_text`` applies a Unicode normal form.

Streaming decoders turn generated ids into text as they arrive, holding back
what a later token may still change::

    TokenDecoder       every id is whole text (char level)
    Utf8Decoder        ids stand for bytes: an unfinished UTF-8 sequence waits (byte, subword)
    ComposingDecoder   wraps either for NFD text: the last character waits for a jamo or mark (ᄒ + ᅡ → 하)

Every streaming decoder has ``feed(id) -> str``, ``flush() -> str`` (what it
still holds, at the end), ``prime(text) -> str`` (start after text already
written) and ``complete`` (nothing held back that a later token could still
finish). ``continuation_text`` drives one over generated ids; ``text_pieces``
gives the text each id of a sequence completes. ``count_composed`` and
``skipped_chars`` count characters for bits per character.
"""

from __future__ import annotations

import codecs
import unicodedata
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from charlm.errors import TokenizerError

if TYPE_CHECKING:
    from charlm.tokenizers.base import Tokenizer

UNK_DISPLAY = "\ufffd"  # what an unknown id decodes to
N_CODE_POINTS = 0x110000
NORMALIZATIONS = ("none", "nfc", "nfkc", "nfd")


def code_points(text: str) -> np.ndarray:
    """(N,) uint32 code points of ``text``."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def from_code_points(codes: np.ndarray) -> str:
    """The text of (N,) code points."""
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


def check_normalize(form: str) -> str:
    """``form`` itself when it is one of NORMALIZATIONS; TokenizerError otherwise."""
    if form not in NORMALIZATIONS:
        raise TokenizerError(f"unknown normalization {form!r}: choose {', '.join(NORMALIZATIONS)}")
    return form


def check_ids(ids, vocab_size: int) -> np.ndarray:
    """``ids`` as (N,) int64, TokenizerError when one is outside the vocabulary."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise TokenizerError(f"token id out of range for a vocabulary of {vocab_size}")
    return ids


# ----- streaming decoders -----------------------------------------------------------------------------------


class TokenDecoder:
    """Streaming decode where every id is whole text of its own (the char level).

    Every streaming decoder has ``feed(id) -> str``, ``flush() -> str`` (what it still holds, at the
    end), ``prime(text) -> str`` (start after text already written; see ComposingDecoder) and
    ``complete`` (nothing held back that a later token could still finish).
    """

    complete = True

    def __init__(self, tokenizer: "Tokenizer"):
        self.tokenizer = tokenizer

    def prime(self, text: str) -> str:
        return text

    def feed(self, token_id: int) -> str:
        return self.tokenizer.token(token_id)

    def flush(self) -> str:
        return ""


# ----- byte level -------------------------------------------------------------------------------------------


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


def count_composed(tokenizer: Tokenizer, ids: np.ndarray, block: int = 1 << 20) -> int:
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


def skipped_chars(tokenizer: Tokenizer, text: str) -> int:
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
    codes, counts = np.unique(code_points(text), return_counts=True)
    dropped = 0
    for code, count in zip(codes.tolist(), counts.tolist()):
        form = normalize_text(chr(code), tokenizer.normalize)
        if form and set(form) <= unknown:
            dropped += count
    return dropped


def text_pieces(tokenizer: Tokenizer, ids) -> list[str]:
    """The text each token completes, in order, so that "".join(pieces) is the decoded text.

    At char level every token is its own character. A byte-level token that
    starts a multi-byte character completes nothing ("") and the byte that ends
    it carries the whole character; a decoder that composes NFD text into NFC
    hands a character over one token late. Text the decoder still holds at the
    end goes with the last token.
    """
    decoder = tokenizer.incremental_decoder()
    pieces = [decoder.feed(int(i)) for i in ids]
    if pieces:
        pieces[-1] += decoder.flush()
    return pieces
