"""The linear recurrence h_t = a_t ⊙ h_{t-1} + b_t over a window, with its backward pass written out.

minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?") compute their gates from x_t alone,
so a whole window's a_t and b_t come from one large matrix product; what is left of the recurrence is
this element-wise scan::

    forward,  t = 1 … T     h_t = a_t ⊙ h_{t-1} + b_t                     one fused multiply-add per step
    backward, t = T … 1     g_t = dL/dh_t (from the output) + a_{t+1} ⊙ g_{t+1}
                            dL/db_t = g_t,   dL/da_t = g_t ⊙ h_{t-1},   dL/dh_0 = a_1 ⊙ g_1

Each step is one small element-wise kernel, forward and backward, and nothing is exponentiated: exact
in float32 whatever the gates (a log-space scan through logcumsumexp computes the same with an
exp and a log per element, several times slower on CPU; a cumulative product within chunks divides by
products that underflow when a gate nears 0). tests/test_scan.py checks values and gradients against
autograd through a plain loop.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """a, b (B, T, H), h0 (B, H) or None (zeros) → h (B, T, H) with h_t = a_t ⊙ h_{t-1} + b_t.

    Differentiable in a, b and h0 (once). Runs in float32 whatever the inputs' dtype (under autocast the
    products that make a and b may be bf16; the carried state should not be)."""
    if h0 is None:
        h0 = a.new_zeros(a.shape[0], a.shape[2], dtype=torch.float32)
    return _Scan.apply(a.float(), b.float(), h0.float())


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0):
        batch, steps, hidden = a.shape
        at, bt = a.transpose(0, 1), b.transpose(0, 1)  # (T, B, H) views: one step is a contiguous-enough slice
        hs = a.new_empty(steps + 1, batch, hidden)  # h_0 … h_T
        hs[0] = h0
        for t in range(steps):
            torch.addcmul(bt[t], at[t], hs[t], out=hs[t + 1])
        ctx.save_for_backward(a, hs)
        return hs[1:].transpose(0, 1)  # (B, T, H)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, hs = ctx.saved_tensors
        steps = a.shape[1]
        at = a.transpose(0, 1)
        grad = grad.transpose(0, 1)  # (T, B, H)
        g = torch.empty_like(hs[1:])  # g_t = dL/dh_t in total, t = 1 … T
        g[steps - 1] = grad[steps - 1]
        for t in range(steps - 2, -1, -1):
            torch.addcmul(grad[t], at[t + 1], g[t + 1], out=g[t])
        d_a = (g * hs[:-1]).transpose(0, 1)  # dL/da_t = g_t ⊙ h_{t-1}
        d_h0 = at[0] * g[0]
        return d_a, g.transpose(0, 1), d_h0
