"""Run a model over an id sequence with carried state and report loss, perplexity and bpc."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charlm import metrics
from charlm.batching import eval_windows
from charlm.model import RNNLM
from charlm.runtime import autocast


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean NLL, nats per token
    perplexity: float
    bpc: float  # total NLL in bits / characters
    tokens: int  # targets scored
    characters: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}


def _prepend_zero_row(state):
    """Add stream 0's zero state in front of the warmed-up states of streams 1..B-1 (dim 1 is the batch)."""
    if isinstance(state, tuple):
        return tuple(_prepend_zero_row(s) for s in state)
    return torch.cat([torch.zeros_like(state[:, :1]), state], dim=1)


@torch.inference_mode()
def evaluate(
    model: RNNLM,
    ids: np.ndarray,
    n_chars: int | None = None,
    batch_size: int = 128,
    seq_len: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
) -> EvalResult:
    """Score every next-token prediction in ``ids`` (N,), carrying state along B parallel streams.

    Every stream but the first reads the 32 tokens before its start unscored, so no
    prediction is made from a cold state except at the true beginning of the text.

    ``n_chars`` is the number of characters the N - 1 targets stand for
    (defaults to N - 1, right at char level). No autograd, dropout off.
    """
    if len(ids) < 2:
        raise ValueError("need at least 2 tokens to evaluate")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    total = torch.zeros((), dtype=torch.float64, device=device)
    warm, windows = eval_windows(ids, batch_size, seq_len)
    state = None
    if warm is not None:
        with autocast(device, amp_dtype):
            _, warm_state = model(warm.to(device))  # streams 1..B-1 read the text just before their start
        state = _prepend_zero_row(warm_state)
    for x, y in windows:
        x, y = x.to(device), y.to(device)
        with autocast(device, amp_dtype):
            logits, state = model(x, state)  # (B, T, V)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
    model.train(was_training)
    n_targets = len(ids) - 1
    nll = float(total)
    mean = nll / n_targets
    return EvalResult(
        loss=mean,
        perplexity=metrics.perplexity(mean),
        bpc=metrics.bits_per_char(nll, n_chars if n_chars is not None else n_targets),
        tokens=n_targets,
        characters=n_chars if n_chars is not None else n_targets,
        seconds=time.perf_counter() - start,
    )
