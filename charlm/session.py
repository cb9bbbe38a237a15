"""The REPL's model side: the text so far, the carried hidden state, undo, and a live preview.

Nothing here prints; repl.py draws. Every new token costs one step of the
recurrence: the context is never re-encoded.

The session keeps two layers of state::

    context  "ROMEO:⏎What li"   committed text; base = (state, logits) after it
    buffer   "ght"              text being typed, not yet committed; a stack of
                                checkpoints (n, state, logits) after its first n tokens

    type 'h'     encode the buffer, keep the checkpoints of the common prefix, feed the rest (one token)
    backspace    pop back to the checkpoint of the shorter prefix (no model work)
    Enter        commit: context += buffer, base = top checkpoint (no model work)

A paste feeds all its tokens in one call and leaves a single checkpoint, so a
backspace after it re-feeds from the checkpoint before the paste. ``feed`` is
preview followed by commit, so lines, pipes and live typing share one path.

The buffer is encoded on its own, not together with the context: at char level
that is the same thing; a subword tokenizer may split the seam differently.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterator

import torch

from charlm.config import SampleConfig
from charlm.errors import CharlmError
from charlm.model import RNNLM, State
from charlm.sampling import Predictor, filter_logits, sample_ids
from charlm.tokenizers.text import continuation_text


@dataclass(frozen=True)
class Prediction:
    """The model's next-token distribution at one point, summarised for display."""

    token_ids: list[int]  # the k likeliest ids, likeliest first
    tokens: list[str]  # their text (tokenizer.token)
    probs: list[float]  # their probabilities (temperature 1, no filtering)
    entropy: float  # of the whole distribution, in bits


def summarize(probs: torch.Tensor, tokenizer, k: int) -> Prediction:
    """probs (V,) → the top ``k`` tokens with their probabilities and the entropy in bits."""
    probs = probs.float()
    entropy = float(-(probs * torch.log2(probs.clamp_min(1e-30))).sum())
    top = torch.topk(probs, min(k, probs.numel()))  # values, indices: (k,)
    ids = [int(i) for i in top.indices]
    return Prediction(ids, [tokenizer.token(i) for i in ids], [float(p) for p in top.values], entropy)


@dataclass
class _Point:
    """What the model has read up to one point: the state after it and the logits (1, V) for what comes next."""

    state: State | None = None
    logits: torch.Tensor | None = None


@dataclass
class _Undo:
    context: str
    base: _Point


@dataclass
class Session:
    """A REPL session over ``model`` and ``tokenizer``; see the module docstring for the state it keeps.

    ``unknown`` is the tokenizer's policy for characters outside the vocabulary
    ('error' raises TokenizerError, 'unk', 'skip').
    """

    model: RNNLM
    tokenizer: object
    device: torch.device | str = "cpu"
    sample_config: SampleConfig = field(default_factory=SampleConfig)
    seed: int = 0
    unknown: str = "error"
    context: str = ""

    def __post_init__(self):
        self.predictor = Predictor(self.model, self.device)
        self.generator = torch.Generator(device=self.predictor.device).manual_seed(self.seed)
        self.base = _Point()
        self._undo: list[_Undo] = []
        self._buffer_text = ""
        self._buffer_ids: list[int] = []
        self._checkpoints: list[tuple[int, _Point]] = []  # (number of buffer tokens read, point after them)
        self.tokens_fed = 0  # tokens run through the model so far (tests check the O(1) claim with it)

    # ----- reading text ---------------------------------------------------------------------------------

    def preview(self, text: str) -> torch.Tensor | None:
        """Next-token probabilities (V,) after context + ``text``, or None when nothing has been read.

        ``text`` replaces the previous buffer; only the tokens after the common
        prefix are fed. Raises TokenizerError for unknown characters (under
        unknown='error'), leaving the session as it was.
        """
        ids = [int(i) for i in self.tokenizer.encode(text, unknown=self.unknown)]
        same = 0
        while same < min(len(ids), len(self._buffer_ids)) and ids[same] == self._buffer_ids[same]:
            same += 1
        while self._checkpoints and self._checkpoints[-1][0] > same:
            self._checkpoints.pop()
        read, point = self._checkpoints[-1] if self._checkpoints else (0, self.base)
        if len(ids) > read:
            point = self._run(point, ids[read:])
            self._checkpoints.append((len(ids), point))
        self._buffer_text, self._buffer_ids = text, ids
        return self._probs(point)

    def commit(self) -> None:
        """Make the previewed buffer part of the context (undoable)."""
        if not self._buffer_text:
            return
        self._undo.append(_Undo(self.context, self.base))
        self.context += self._buffer_text
        if self._checkpoints:
            self.base = self._checkpoints[-1][1]
        self._clear_buffer()

    def feed(self, text: str) -> None:
        """Read ``text`` after the context and commit it (one undo step)."""
        self.preview(text)
        self.commit()

    def probs(self) -> torch.Tensor | None:
        """Next-token probabilities (V,) after context + buffer, or None when nothing has been read."""
        return self._probs(self._checkpoints[-1][1] if self._checkpoints else self.base)

    def prediction(self, k: int) -> Prediction | None:
        probs = self.probs()
        return None if probs is None else summarize(probs, self.tokenizer, k)

    # ----- writing text ---------------------------------------------------------------------------------

    def accept(self) -> str:
        """Append the most likely next token to the context (one undo step); returns the text it adds."""
        self._commit_for_writing()
        self._undo.append(_Undo(self.context, self.base))
        return "".join(self._write(itertools.islice(self._drawn_ids(SampleConfig(temperature=0)), 1), 1))

    def generate(self, n: int, stop=lambda: False) -> Iterator[str]:
        """Sample ``n`` tokens with ``sample_config``, yielding the text each adds to the context.

        The whole run is one undo step; ``stop()`` is asked before each token
        (the REPL's Ctrl-C). A few tokens more may come to finish a character
        (a UTF-8 sequence, or a Hangul syllable under NFD, tokenizer.EXTRA_TOKENS at
        most). A token may add no text (the first byte of a multi-byte character);
        under NFD the context's last syllable is taken back and comes with the
        first piece, joined with the jamo generated after it (고 + ᆼ → 공).
        """
        if n < 0:
            raise CharlmError(f"cannot generate {n} tokens: give a count of 0 or more")
        self._commit_for_writing()
        self._undo.append(_Undo(self.context, self.base))
        yield from self._write(self._drawn_ids(self.sample_config, stop), n)

    def set_seed(self, seed: int) -> None:
        self.seed = seed
        self.generator.manual_seed(seed)

    # ----- going back -----------------------------------------------------------------------------------

    def undo(self) -> bool:
        """Take back the last commit, accept or generation; False when there is nothing to undo."""
        self._clear_buffer()
        if not self._undo:
            return False
        last = self._undo.pop()
        self.context, self.base = last.context, last.base
        return True

    def reset(self) -> None:
        """Forget everything: empty context, zero state, no undo history."""
        self.context, self.base, self._undo = "", _Point(), []
        self._clear_buffer()

    # ----- internals ------------------------------------------------------------------------------------

    def _run(self, point: _Point, ids: list[int]) -> _Point:
        """Feed ``ids`` from ``point``; returns the new point. One model call whatever len(ids)."""
        self.predictor.state, self.predictor.logits = point.state, point.logits
        logits = self.predictor.feed(torch.tensor(ids, dtype=torch.long))  # (1, V)
        self.tokens_fed += len(ids)
        # Predictor.feed returns fresh tensors, so the point keeps its own state without a copy
        # (test_session_points_do_not_alias checks it).
        return _Point(self.predictor.state, logits)

    def _drawn_ids(self, config: SampleConfig, stop=lambda: False) -> Iterator[int]:
        """Ids drawn one at a time under ``config``, each read by the model before the next is drawn."""
        while not stop():
            token_id = self._next_token(config)
            self.base = self._run(self.base, [token_id])
            yield token_id

    def _write(self, ids: Iterator[int], n: int) -> Iterator[str]:
        """Decode ``n`` of ``ids`` (more, while a character is unfinished) onto the context; yields each piece."""
        pieces = continuation_text(self.tokenizer.incremental_decoder(), ids, n, after=self.context)
        self.context = next(pieces)  # less a last syllable the first token may still join
        for text in pieces:
            self.context += text
            yield text

    def _commit_for_writing(self) -> None:
        """Commit the buffer before the model writes after it; an error when there is nothing to continue."""
        if self._buffer_text:
            self.commit()
        if self.base.logits is None:
            raise CharlmError("there is nothing to continue yet: type some text first")

    def _next_token(self, config: SampleConfig) -> int:
        """The id to write after the committed context under ``config`` (greedy at temperature 0), never the
        tokenizer's unknown token."""
        probs = filter_logits(self.base.logits[0], config, self.tokenizer.unk_id, self._recent(config))  # (V,)
        if config.temperature == 0:
            return int(probs.argmax())
        return int(sample_ids(probs[None], self.generator))

    def _recent(self, config: SampleConfig) -> torch.Tensor | None:
        """(V,) counts of each token among the context's last ``penalty_window`` tokens, when there is a
        frequency penalty to apply."""
        if not config.frequency_penalty:
            return None
        tail = self.context[-4 * config.penalty_window:]  # more characters than the window holds tokens
        ids = self.tokenizer.encode(tail, unknown="skip")[-config.penalty_window:].astype("int64")
        return torch.bincount(torch.from_numpy(ids), minlength=self.tokenizer.vocab_size).float()

    @staticmethod
    def _probs(point: _Point) -> torch.Tensor | None:
        return None if point.logits is None else torch.softmax(point.logits[0].float(), -1)  # (V,)

    def _clear_buffer(self) -> None:
        self._buffer_text, self._buffer_ids, self._checkpoints = "", [], []
