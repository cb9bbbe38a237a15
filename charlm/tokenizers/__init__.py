"""str ↔ token ids at three levels, and how a run chooses and rebuilds its tokenizer. No torch here.

    level    class                   vocabulary                                   unknown characters
    char     CharTokenizer           code points of the training text + <unk>     <unk> (id 0), or an error
    byte     ByteTokenizer           the 256 values of a UTF-8 byte               none
    subword  SentencePieceTokenizer  sentencepiece pieces + 256 byte pieces       none (byte fallback)

Every tokenizer is a ``Tokenizer`` (base.py) and can first normalise its input
to a Unicode form (none, nfc, nfkc or nfd; nfd splits Hangul syllables into
jamo). ``TokenizerSpec`` says which one a new run fits on its training text;
``tokenizer_from_dict`` rebuilds a saved one of any kind.

    char.py     CharTokenizer, CharFitter
    byte.py     ByteTokenizer, ByteFitter
    subword.py  SentencePieceTokenizer, SubwordFitter (lossless sentencepiece settings)
    text.py     normal forms, code points, streaming decoders, character counts for bits per character
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from charlm.errors import TokenizerError
from charlm.tokenizers.base import Tokenizer
from charlm.tokenizers.byte import ByteFitter, ByteTokenizer
from charlm.tokenizers.char import CharFitter, CharTokenizer
from charlm.tokenizers.subword import MODELS as SUBWORD_MODELS
from charlm.tokenizers.subword import SentencePieceTokenizer, SubwordFitter
from charlm.tokenizers.text import NORMALIZATIONS, check_normalize

__all__ = ["LEVELS", "NORMALIZATIONS", "SUBWORD_MODELS", "ByteTokenizer", "CharTokenizer", "SentencePieceTokenizer",
           "Tokenizer", "TokenizerSpec", "tokenizer_from_dict"]

LEVELS = ("char", "byte", "subword")
_KINDS: dict[str, type[Tokenizer]] = {cls.kind: cls for cls in (CharTokenizer, ByteTokenizer, SentencePieceTokenizer)}


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
        check_normalize(self.normalize)
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
        """An object with ``add(text_chunk)`` and ``finish() -> Tokenizer``, fed the training text only.

        ``expected_bytes`` (the size of the training text) lets the subword fitter
        sample evenly through a corpus larger than its training budget.
        """
        if self.level == "char":
            return CharFitter(self.normalize)
        if self.level == "byte":
            return ByteFitter(self.normalize)
        return SubwordFitter(self.vocab_size, self.model_type, self.normalize, expected_bytes)

    def fit(self, text: str) -> Tokenizer:
        """The tokenizer fitted on ``text``, a training text held in memory."""
        fitter = self.fitter(len(text.encode("utf-8", errors="surrogatepass")))
        fitter.add(text)
        return fitter.finish()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer saved with ``to_dict`` (dispatches on its 'kind')."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}: the checkpoint is corrupted or from a newer charlm")
    return _KINDS[kind].from_dict(data)
