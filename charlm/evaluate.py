"""Run a model over an id sequence with carried state and report loss, perplexity and bpc.

``evaluate`` scores a fixed model (inference mode, many parallel streams);
``evaluate_dynamic`` lets the model keep learning from the text it has already
scored (dynamic evaluation), reading it as one stream.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Generator

import numpy as np
import torch
import torch.nn.functional as F

from charlm import metrics
from charlm.batching import eval_windows
from charlm.config import LR_BY_CELL
from charlm.data import drain
from charlm.errors import ConfigError
from charlm.model import RNNLM, detach_state
from charlm.runtime import autocast

# Dynamic evaluation: tokens scored between two updates, and the default Adam learning rate as a fraction of the
# cell's default peak training rate, both chosen by measurement (docs/performance.md, "Dynamic evaluation").
DYNAMIC_SEGMENT = 64
DYNAMIC_LR_FRACTION = 0.1


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


@dataclass(frozen=True)
class EvalProgress:
    """How far a pass has read: targets scored (of ``total``) and their mean loss so far."""

    tokens: int
    total: int
    loss: float


def default_dynamic_lr(cell: str) -> float:
    return float(f"{LR_BY_CELL[cell] * DYNAMIC_LR_FRACTION:.6g}")  # 3e-4, not 3.0000000000000003e-4


def _prepend_zero_row(state):
    """Add stream 0's zero state in front of the warmed-up states of streams 1..B-1 (dim 1 is the batch)."""
    if isinstance(state, tuple):
        return tuple(_prepend_zero_row(s) for s in state)
    return torch.cat([torch.zeros_like(state[:, :1]), state], dim=1)


def evaluate(*args, **kwargs) -> EvalResult:
    """``evaluate_steps`` without progress reports (and without reading the loss before the end)."""
    return drain(evaluate_steps(*args, report_every=0, **kwargs))


@torch.inference_mode()
def evaluate_steps(
    model: RNNLM,
    ids: np.ndarray,
    n_chars: int | None = None,
    batch_size: int = 128,
    seq_len: int = 256,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    report_every: int = 8,
) -> Generator[EvalProgress, None, EvalResult]:
    """Score every next-token prediction in ``ids`` (N,), carrying state along B parallel streams.

    Every stream but the first reads the 32 tokens before its start unscored, so no
    prediction is made from a cold state except at the true beginning of the text.

    ``n_chars`` is the number of characters the N - 1 targets stand for
    (defaults to N - 1, right at char level). No autograd, dropout off.
    Yields EvalProgress every ``report_every`` windows (0: only at the end; reading
    the loss so far waits for the device) and at the end; returns the EvalResult.
    """
    if len(ids) < 2:
        raise ValueError("need at least 2 tokens to evaluate")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    n_targets = len(ids) - 1
    total = torch.zeros((), dtype=torch.float64, device=device)
    warm, windows = eval_windows(ids, batch_size, seq_len)
    state = None
    if warm is not None:
        with autocast(device, amp_dtype):
            _, warm_state = model(warm.to(device))  # streams 1..B-1 read the text just before their start
        state = _prepend_zero_row(warm_state)
    scored = 0
    try:
        for i, (x, y) in enumerate(windows):
            scored += int((y != -100).sum())
            x, y = x.to(device), y.to(device)
            with autocast(device, amp_dtype):
                logits, state = model(x, state)  # (B, T, V)
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
            if report_every and (i + 1) % report_every == 0 and scored < n_targets:
                yield EvalProgress(scored, n_targets, float(total) / scored)
        nll = float(total)
        yield EvalProgress(n_targets, n_targets, nll / n_targets)
    finally:
        model.train(was_training)
    return _result(nll, n_targets, n_chars, start)


def _result(nll: float, n_targets: int, n_chars: int | None, start: float) -> EvalResult:
    """The figures of a pass that scored ``n_targets`` targets for a total of ``nll`` nats, begun at ``start``."""
    mean = nll / n_targets
    n_chars = n_chars if n_chars is not None else n_targets
    return EvalResult(loss=mean, perplexity=metrics.perplexity(mean), bpc=metrics.bits_per_char(nll, n_chars),
                      tokens=n_targets, characters=n_chars, seconds=time.perf_counter() - start)


def evaluate_dynamic(
    model: RNNLM,
    ids: np.ndarray,
    lr: float,
    n_chars: int | None = None,
    segment: int = DYNAMIC_SEGMENT,
    device: torch.device | str = "cpu",
    report_every: int = 16,
) -> Generator[EvalProgress, None, EvalResult]:
    """Dynamic evaluation (Mikolov 2010; Krause et al. 2018): score ``ids`` (N,) in order as one stream and,
    after each ``segment`` tokens, take one optimiser step on the loss just scored.

    Every token is predicted before the model learns from it, so the figure is a fair next-token loss for
    a reader that adapts to the text as it goes (names, spellings and turns of phrase the training text did
    not have). The update is Adam without momentum: a gradient step divided by the RMS of recent gradients,
    like Krause et al.'s RMS rule, but with the statistics gathered from the text being read and without
    their decay back to the trained weights. It runs on a copy of the model (``model`` is left as it was),
    dropout off, in float32: at one stream the products are small, and bf16 autocast only adds casts to them.

    Yields EvalProgress every ``report_every`` segments and at the end; returns the EvalResult.
    """
    if len(ids) < 2:
        raise ValueError("need at least 2 tokens to evaluate")
    device = torch.device(device)
    start = time.perf_counter()
    learner = copy.deepcopy(model).to(device).eval()
    for layer in learner.layers:
        layer.train()  # cuDNN's RNN backward runs only in training mode; a one-layer module has no dropout of its own
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=lr, betas=(0.0, 0.999))
    n_targets = len(ids) - 1
    total, state = 0.0, None
    for i, begin in enumerate(range(0, n_targets, segment)):
        end = min(begin + segment, n_targets)
        window = torch.from_numpy(np.asarray(ids[begin:end + 1], dtype=np.int64)).to(device)  # inputs and targets
        logits, state = learner(window[:-1].unsqueeze(0), state)  # (1, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), window[1:], reduction="sum")
        nll = loss.item()
        if not math.isfinite(nll):
            raise ConfigError(f"dynamic evaluation diverged after {begin:,} tokens (the loss is not finite): "
                              f"lower --dynamic-lr (it was {lr:g})")
        total += nll
        if end < n_targets:  # learn from this segment before the next is scored
            optimizer.zero_grad(set_to_none=True)
            (loss / (end - begin)).backward()
            optimizer.step()
            state = detach_state(state)
        if (i + 1) % report_every == 0 or end == n_targets:
            yield EvalProgress(end, n_targets, total / end)
    return _result(total, n_targets, n_chars, start)
