"""Subword level: a sentencepiece model (unigram or BPE) set up so that decode(encode(text)) == text exactly.

sentencepiece's defaults lose text: they rewrite it with NFKC, squeeze runs of
spaces, put a space in front, drop newlines (training reads one line at a time)
and map characters outside the vocabulary to <unk>. The settings that make it
lossless, passed to ``SentencePieceTrainer.train``:

    normalization_rule_name="identity"   no NFKC: the text's own characters (charlm normalises first, if asked)
    remove_extra_whitespaces=False       keep runs of spaces, leading and trailing spaces
    add_dummy_prefix=False               no space added in front of the text
    user_defined_symbols=["\\n", "\\t"]    newline and tab are pieces of their own, never dropped
    byte_fallback=True                   a character outside the vocabulary is spelled as its UTF-8 bytes
    allow_whitespace_only_pieces=True    runs of spaces ("▁▁▁▁", indentation) can be pieces
    hard_vocab_limit=False               a small corpus yields fewer pieces instead of failing
    max_sentence_length=MAX_SENTENCE_BYTES   longer training sentences are skipped *silently*, so lines are
                                         cut to MAX_SENTENCE_CHARS characters before training

One case no setting covers: sentencepiece writes a space as "▁" (U+2581) and
decodes every "▁" as a space, so a literal "▁" would come back as a space.
``encode`` therefore cuts the text at each literal "▁" and spells it with its
three byte pieces <0xE2><0x96><0x81>, which decode to "▁" itself.

The trained model's serialized proto travels base64-encoded inside the
tokenizer's JSON (``to_dict``), so a checkpoint keeps a single tokenizer file.
"""

from __future__ import annotations

import base64
import io
import os
import unicodedata
from typing import Any

import numpy as np
import sentencepiece as spm

from charlm.errors import TokenizerError
from charlm.tokenizers.base import Tokenizer
from charlm.tokenizers.text import (
    N_CODE_POINTS,
    UNK_DISPLAY,
    ComposingDecoder,
    Utf8Decoder,
    check_ids,
    check_normalize,
    code_points,
    count_composed,
    normalize_text,
)

MODELS = ("unigram", "bpe")  # sentencepiece algorithms
SPACE = "\u2581"  # "▁", sentencepiece's meta symbol for a space
USER_SYMBOLS = ["\n", "\t"]
SPECIAL_PIECES = 1 + len(USER_SYMBOLS) + 256  # <unk>, newline, tab, byte pieces
MAX_SENTENCE_CHARS = 4096
MAX_SENTENCE_BYTES = 4 * MAX_SENTENCE_CHARS  # a UTF-8 character is at most 4 bytes
TRAIN_BUDGET_BYTES = 32 << 20  # sentencepiece holds its training text in memory: sample at most this much
MIN_COVERAGE = 0.98  # sentencepiece refuses a lower character_coverage


def _train_options(vocab_size: int, model_type: str, coverage: float) -> dict[str, Any]:
    return dict(
        vocab_size=vocab_size, model_type=model_type, character_coverage=coverage,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        user_defined_symbols=USER_SYMBOLS, byte_fallback=True, allow_whitespace_only_pieces=True,
        hard_vocab_limit=False, max_sentence_length=MAX_SENTENCE_BYTES, input_sentence_size=0,
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, num_threads=min(2, os.cpu_count() or 1), minloglevel=2,
    )


class SubwordFitter:
    """Collects training sentences (lines, cut to MAX_SENTENCE_CHARS) chunk by chunk; ``finish`` trains the model.

    When the training text is larger than TRAIN_BUDGET_BYTES, every k-th line is
    kept so the sample spreads over the whole text.
    """

    def __init__(self, vocab_size: int, model_type: str, normalize: str, expected_bytes: int = 0):
        self.vocab_size, self.model_type, self.normalize = vocab_size, model_type, check_normalize(normalize)
        self.keep_every = max(1, -(-expected_bytes // TRAIN_BUDGET_BYTES))
        self.sentences: list[str] = []
        self.n_bytes = 0
        self._line = 0
        self._counts = np.zeros(N_CODE_POINTS, dtype=np.int64)  # character frequencies, to choose the coverage

    def add(self, text: str) -> None:
        if self.n_bytes >= TRAIN_BUDGET_BYTES:
            return
        kept = []
        for line in normalize_text(text, self.normalize).split("\n"):
            self._line += 1
            if line and self._line % self.keep_every == 0:
                kept += [line[i:i + MAX_SENTENCE_CHARS] for i in range(0, len(line), MAX_SENTENCE_CHARS)]
        joined = "".join(kept)
        self.sentences += kept
        self.n_bytes += len(joined.encode("utf-8", errors="surrogatepass"))
        self._counts += np.bincount(code_points(joined), minlength=N_CODE_POINTS)

    def coverage(self) -> float:
        """Share of characters that must have a piece of their own: all of them when they fit in the
        vocabulary; otherwise the most frequent ones, leaving room for pieces (the rest fall back to bytes)."""
        counts = np.sort(self._counts[self._counts > 0])[::-1]
        room = (self.vocab_size - SPECIAL_PIECES) // 2
        if len(counts) <= room:
            return 1.0
        return max(float(counts[:room].sum() / counts.sum()) * 0.999, MIN_COVERAGE)

    def smallest_vocab(self) -> int:
        """The vocabulary size that leaves room for the characters covering MIN_COVERAGE of the text."""
        counts = np.sort(self._counts[self._counts > 0])[::-1]
        needed = int(np.searchsorted(np.cumsum(counts), MIN_COVERAGE * counts.sum())) + 1
        return SPECIAL_PIECES + 2 * needed

    def finish(self) -> "SentencePieceTokenizer":
        if not self.sentences:
            raise TokenizerError("no training text for the subword model: pass a corpus with some text")
        model = io.BytesIO()
        options = _train_options(self.vocab_size, self.model_type, self.coverage())
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(self.sentences), model_writer=model, **options)
        except RuntimeError as e:
            if "required_chars" in str(e):
                raise TokenizerError(f"--vocab-size {self.vocab_size} is too small for the characters of this "
                                     f"corpus: pass --vocab-size {self.smallest_vocab()} or more, or use --level char"
                                     ) from None
            reason = str(e).strip().splitlines()[-1][:160]
            raise TokenizerError(f"sentencepiece could not train a {self.vocab_size}-piece {self.model_type} model "
                                 f"({reason}): try another --vocab-size or a longer corpus") from None
        settings = {"model_type": self.model_type, "requested_vocab_size": self.vocab_size,
                    "character_coverage": options["character_coverage"], "trained_on_bytes": self.n_bytes,
                    "trained_on_sentences": len(self.sentences), "sentencepiece_version": spm.__version__}
        return SentencePieceTokenizer(model.getvalue(), self.normalize, settings)


class SentencePieceTokenizer(Tokenizer):
    """Subword tokenizer over a lossless sentencepiece model (see the module docstring)."""

    kind = "subword"
    unk_id = 0  # never produced: byte fallback spells every unknown character

    def __init__(self, model_proto: bytes, normalize: str = "none", settings: dict | None = None):
        self.model_proto = model_proto
        self.normalize = check_normalize(normalize)
        self.settings = dict(settings or {})
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        n = self._sp.get_piece_size()
        self._bytes = [self._piece_bytes(i) for i in range(n)]  # what each id decodes to, as UTF-8
        self._starts = np.array([sum((b & 0xC0) != 0x80 for b in piece) for piece in self._bytes], dtype=np.int64)
        space_bytes = SPACE.encode("utf-8")
        self._literal_space = [self._sp.piece_to_id(f"<0x{b:02X}>") for b in space_bytes]
        texts = [piece.decode("utf-8", errors="replace") for piece in self._bytes]
        self.chars = "".join(sorted({t for t in texts if len(t) == 1 and t != UNK_DISPLAY}))  # one-character tokens

    def _piece_bytes(self, i: int) -> bytes:
        if self._sp.is_unknown(i):
            return UNK_DISPLAY.encode()
        piece = self._sp.id_to_piece(i)
        if self._sp.is_byte(i):
            return bytes([int(piece[3:5], 16)])  # "<0xE2>"
        return piece.replace(SPACE, " ").encode("utf-8")

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    def unknown_chars(self, text: str) -> set[str]:
        return set()  # byte fallback spells any character

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """(N,) ids; ``unknown`` has nothing to do, since byte fallback spells any character."""
        segments = normalize_text(text, self.normalize).split(SPACE)
        pieces = self._sp.encode(segments)  # one list of ids per segment
        ids = []
        for i, segment_ids in enumerate(pieces):
            if i:
                ids.extend(self._literal_space)  # the literal "▁" that split the text here
            ids.extend(segment_ids)
        return np.array(ids, dtype=self.dtype)

    def decode(self, ids) -> str:
        """Text for a sequence of ids; byte pieces that do not form UTF-8 decode to U+FFFD; NFD → NFC."""
        ids = check_ids(ids, self.vocab_size)
        text = b"".join(self._bytes[i] for i in ids.tolist()).decode("utf-8", errors="replace")
        return unicodedata.normalize("NFC", text) if self.normalize == "nfd" else text

    def token(self, token_id: int) -> str:
        """The text of one piece (spaces as spaces); a non-ASCII byte piece reads <0xE2>."""
        piece = self._bytes[token_id]
        if self._sp.is_byte(token_id) and piece[0] >= 128:
            return f"<0x{piece[0]:02X}>"
        return piece.decode("utf-8")

    def incremental_decoder(self):
        decoder = Utf8Decoder(self._bytes.__getitem__)
        return ComposingDecoder(decoder) if self.normalize == "nfd" else decoder

    def count_chars(self, ids: np.ndarray) -> int:
        """Characters the pieces stand for (a byte piece counts when it starts a UTF-8 sequence)."""
        if self.normalize == "nfd":
            return count_composed(self, ids)
        return int(self._starts[np.asarray(ids, dtype=np.int64)].sum())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "normalize": self.normalize, **self.settings,
                "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SentencePieceTokenizer":
        if data.get("kind") != cls.kind or not isinstance(data.get("model"), str):
            raise TokenizerError("tokenizer file is not a charlm subword tokenizer: the checkpoint is corrupted")
        try:
            proto = base64.b64decode(data["model"], validate=True)
            settings = {k: v for k, v in data.items()
                        if k not in ("kind", "vocab_size", "normalize", "model")}
            tok = cls(proto, data.get("normalize", "none"), settings)
        except (ValueError, RuntimeError, OSError):
            raise TokenizerError("the subword model in the tokenizer file cannot be read: "
                                 "the checkpoint is corrupted") from None
        if tok.vocab_size != data.get("vocab_size"):
            raise TokenizerError("the subword model's size differs from the tokenizer file's: "
                                 "the checkpoint was edited")
        return tok
