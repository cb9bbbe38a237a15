"""Next-token distributions and generation with a carried hidden state.

Shared by ``charlm sample`` and the REPL. The prompt is read once in a single
forward pass; each new token then costs one step of the recurrence (O(1) per
token, no re-encoding of the context).

A prompt goes through the model's fused forward (fast for long sequences);
single tokens go through ``RNNLM.step``, torch's one-step cell kernels, which
avoid the fused oneDNN LSTM's weight reorder on every call.
"""

from __future__ import annotations

from typing import Iterator

import torch

from charlm.config import SampleConfig
from charlm.model import RNNLM, State


def filter_logits(logits: torch.Tensor, config: SampleConfig, banned_id: int | None = None,
                  recent: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the frequency penalty, temperature, top-k and top-p (nucleus) to logits (..., V); returns
    probabilities (..., V).

    ``recent`` (..., V) counts each token among the last tokens (RecentTokens): with a frequency penalty, each
    occurrence lowers the token's logit by it. Temperature 0 puts all mass on the argmax (greedy).
    ``banned_id`` (the tokenizer's unknown token) gets probability 0: it stands for no character, so
    generating it would write U+FFFD into the text.
    """
    logits = logits.float()
    if config.frequency_penalty and recent is not None:
        logits = logits - config.frequency_penalty * recent
    if banned_id is not None:
        logits = logits.clone()
        logits[..., banned_id] = float("-inf")
    if config.temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    logits = logits / config.temperature
    if config.top_k and config.top_k < logits.size(-1):
        top = torch.topk(logits, config.top_k, dim=-1).indices  # (..., k): exactly k tokens, even among ties
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, top, True)
        logits = logits.masked_fill(~keep, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if config.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        # drop a token when the mass before it already reaches top_p (the top token always stays)
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample_ids(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of probs (S, V), drawn with those probabilities → (S,) int64.

    Inverse-CDF sampling: the first token whose cumulative probability reaches a
    uniform number u in (0, total]. It samples from the same distribution as
    ``torch.multinomial``, without its set-up cost, which dominates for one row.
    Taking u in (0, total] rather than [0, 1) keeps both
    ends safe: u > 0 never picks a leading token of probability 0, and u ≤ the
    row's own total (rounding included) never picks past the last token.
    """
    cdf = probs.cumsum(-1)  # (S, V)
    uniform = 1.0 - torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)  # (S, 1) in (0, 1]
    return torch.searchsorted(cdf, uniform * cdf[:, -1:]).squeeze(-1)


class RecentTokens:
    """How often each token occurred among the last ``window`` tokens of each of S sequences: ``counts`` (S, V),
    for the frequency penalty."""

    def __init__(self, num_samples: int, vocab_size: int, window: int, prompt_ids: torch.Tensor,
                 device: torch.device | str = "cpu"):
        self.window = window
        self.counts = torch.zeros(num_samples, vocab_size, device=device)
        self.history: list[torch.Tensor] = []  # the last ``window`` tokens, each (S,)
        for token in prompt_ids[-window:].tolist():
            self.add(torch.full((num_samples,), token, device=device))

    def add(self, ids: torch.Tensor) -> None:
        """Count the next token of every sequence (S,), forgetting the one that leaves the window."""
        rows = torch.arange(len(ids), device=ids.device)
        self.counts[rows, ids] += 1
        self.history.append(ids)
        if len(self.history) > self.window:
            self.counts[rows, self.history.pop(0)] -= 1


class Predictor:
    """Incremental next-token prediction: feed ids, read the distribution, carry the state.

    Used by the sampler and the REPL. ``feed`` costs one recurrence step per id.
    """

    def __init__(self, model: RNNLM, device: torch.device | str = "cpu", batch_size: int = 1):
        self.model = model.eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.state: State | None = None
        self.logits: torch.Tensor | None = None  # (B, V) logits for the next token

    @torch.inference_mode()
    def feed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) or (T,) → logits (B, V) for the token after them; the state moves forward by T."""
        if ids.dim() == 1:
            ids = ids.unsqueeze(0).expand(self.batch_size, -1)
        ids = ids.to(self.device)
        if ids.shape[1] == 1:
            self.logits, self.state = self.model.step(ids[:, 0], self.state)  # (B, V)
        else:
            out, self.state = self.model(ids, self.state)  # (B, T, V)
            self.logits = out[:, -1]
        return self.logits

    def reset(self) -> None:
        self.state, self.logits = None, None


@torch.inference_mode()
def generate(
    model: RNNLM,
    prompt_ids: torch.Tensor,
    length: int,
    config: SampleConfig,
    num_samples: int = 1,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    banned_id: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``length`` steps of new token ids, each (num_samples,), continuing ``prompt_ids`` (T,).

    The samples run as one batch, so several cost little more than one. ``banned_id`` (the tokenizer's
    unknown token) is never generated.
    """
    if length <= 0:
        return
    predictor = Predictor(model, device, batch_size=num_samples)
    logits = predictor.feed(prompt_ids)  # (S, V)
    recent = None
    if config.frequency_penalty:
        recent = RecentTokens(num_samples, logits.shape[-1], config.penalty_window, prompt_ids, predictor.device)
    for _ in range(length):
        probs = filter_logits(logits, config, banned_id, recent.counts if recent is not None else None)  # (S, V)
        if config.temperature == 0:
            next_ids = probs.argmax(-1)  # (S,)
        else:
            next_ids = sample_ids(probs, generator)  # (S,)
        if recent is not None:
            recent.add(next_ids)
        yield next_ids
        logits = predictor.feed(next_ids.unsqueeze(-1))
