"""Surprisal: how many bits the model needed for each token of a text.

    bits(t) = -log2 p(token_t | everything before t)

The text is read once with carried state, CHUNK tokens per forward pass, so a
long file costs one pass and little memory. The first token has nothing before
it to predict it from, so it gets NaN (no value) and is left out of the totals,
as ``charlm eval`` does; pass ``context`` (read first, not scored) to have it
scored too.

Per character: each token's bits go to the text it completes
(tokenizers.text.text_pieces), spread evenly over that text's characters. At char
level every token is one character, so this is exact. A byte-level character
gets the bits of all its bytes; a subword token's bits are shared by its
characters (a display convention: the total stays the same). With NFD
normalisation the decoder hands each character over one token late, so the
first jamo of a syllable is counted with the syllable before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from charlm.errors import CharlmError, TokenizerError
from charlm.model import RNNLM
from charlm.tokenizers import Tokenizer
from charlm.tokenizers.text import text_pieces

CHUNK = 4096  # tokens per forward pass


@dataclass(frozen=True)
class Span:
    """A stretch of the text and the bits its characters cost."""

    start: int  # character offsets into Scored.text, end exclusive
    end: int
    text: str
    bits: float
    scored: int  # characters in the span that have a value (all but a first, unpredicted one)
    line: int  # 1-based line and column of the start
    column: int


@dataclass(frozen=True)
class Scored:
    """Surprisal of every token (and character) of a text."""

    tokens: list[str]  # (N,) each token's display text (tokenizer.token)
    bits: np.ndarray  # (N,) float64 bits per token; NaN for a first token with no context
    text: str  # the text as decoded (with --unknown skip, without the skipped characters)
    char_bits: np.ndarray  # (len(text),) float64 bits per character; NaN where nothing was scored

    @property
    def total_bits(self) -> float:
        return float(np.nansum(self.bits))

    @property
    def scored_chars(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.char_bits)))

    @property
    def bpc(self) -> float:
        """Bits per scored character."""
        return self.total_bits / self.scored_chars if self.scored_chars else math.nan


@torch.inference_mode()
def token_bits(model: RNNLM, ids: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """ids (N,) → (N,) float64 bits of each token given the ones before it; element 0 is NaN.

    One pass with carried state, CHUNK tokens at a time; dropout off.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device).unsqueeze(0)  # (1, N)
    n = x.size(1)
    bits = torch.full((n,), math.nan, dtype=torch.float64)
    state = None
    for start in range(0, n - 1, CHUNK):
        end = min(start + CHUNK, n - 1)  # positions start..end-1 predict tokens start+1..end
        logits, state = model(x[:, start:end], state)  # (1, T, V)
        logp = torch.log_softmax(logits[0].double(), -1)  # (T, V)
        targets = x[0, start + 1:end + 1]  # (T,)
        bits[start + 1:end + 1] = (-logp.gather(1, targets.unsqueeze(1)).squeeze(1) / math.log(2)).cpu()
    model.train(was_training)
    return bits.numpy()


def score(model: RNNLM, tokenizer: Tokenizer, text: str, context: str = "", device: torch.device | str = "cpu",
          unknown: str = "error") -> Scored:
    """Surprisal of each token of ``text``, after reading ``context`` (not scored).

    ``unknown`` is the tokenizer's policy for characters outside the vocabulary;
    with 'skip' they are left out of Scored.text, with 'unk' they show as U+FFFD.
    Raises CharlmError when nothing would be scored.
    """
    if not text:
        raise CharlmError("the text to score is empty: pass a file with some text, or --text 'some text'")
    try:
        context_ids = tokenizer.encode(context, unknown=unknown) if context else np.zeros(0, dtype=np.int64)
    except TokenizerError as e:  # its "text has …" would point at the text being scored
        raise TokenizerError(f"--context {e}") from None
    text_ids = tokenizer.encode(text, unknown=unknown)
    if len(text_ids) == 0:
        raise CharlmError("no character of the text is in the model's vocabulary: pass text like its training data")
    if len(context_ids) + len(text_ids) < 2:
        raise CharlmError("one character alone cannot be scored (nothing predicts it): pass a longer text or --context")
    ids = np.concatenate([context_ids.astype(np.int64), text_ids.astype(np.int64)])
    bits = token_bits(model, ids, device)[len(context_ids):]  # (N,)
    pieces = text_pieces(tokenizer, text_ids)
    return Scored([tokenizer.token(int(i)) for i in text_ids], bits, "".join(pieces), spread_bits(pieces, bits))


def spread_bits(pieces: list[str], bits: np.ndarray) -> np.ndarray:
    """Bits per character: tokens that complete no text pass their bits on to the next piece of text,
    and a piece's bits are shared evenly by its characters. NaN only where every token involved is NaN."""
    out, pending = [], []
    for piece, b in zip(pieces, bits):
        pending.append(b)
        if piece:
            value = math.nan if all(math.isnan(x) for x in pending) else float(np.nansum(pending))
            out += [value / len(piece)] * len(piece)
            pending = []
    return np.array(out, dtype=np.float64)


def surprising_spans(scored: Scored, count: int = 5, width: int = 8) -> list[Span]:
    """The ``count`` non-overlapping windows of ``width`` characters that cost the most bits, costliest first."""
    text, scored_bits = scored.text, scored.char_bits
    char_bits = np.nan_to_num(scored_bits)
    width = max(1, min(width, len(text)))
    sums = np.convolve(char_bits, np.ones(width), mode="valid")  # (len(text) - width + 1,) bits of each window
    taken = np.zeros(len(text), dtype=bool)
    spans = []
    for start in np.argsort(-sums, kind="stable"):
        if len(spans) == count:
            break
        end = int(start) + width
        if taken[start:end].any() or sums[start] <= 0:
            continue
        taken[start:end] = True
        line = text.count("\n", 0, start) + 1
        column = start - (text.rfind("\n", 0, start) + 1) + 1
        scored = int(np.count_nonzero(~np.isnan(scored_bits[start:end])))
        spans.append(Span(int(start), end, text[start:end], float(sums[start]), scored, line, int(column)))
    return spans
