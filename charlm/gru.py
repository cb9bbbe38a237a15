"""One GRU layer over a window, with its backward pass through time written out: for CPU training.

torch has no fused GRU kernel on CPU (its oneDNN path is the LSTM's only), so
nn.GRU there loops over time in C++ and autograd records each step's few dozen
operations, then replays them backwards: per time step it computes the weight
gradients with their own small products and adds them up. This layer is the
same function with the backward pass of the course notes (BPTT) done by hand:

    forward, t = 1 … T          gi_t = x_t W_ih^T + b_ih     (all t in one large product, first)
                                gh_t = h_{t-1} W_hh^T + b_hh
                                r, z = σ(gi_r + gh_r), σ(gi_z + gh_z)
                                n    = tanh(gi_n + r ⊙ gh_n)
                                h_t  = n + z ⊙ (h_{t-1} − n)

    backward, t = T … 1         dh   = dL/dh_t (from the output) + the carry from step t+1
                                da_n = dh ⊙ (1 − z) ⊙ (1 − n²)
                                da_r = da_n ⊙ gh_n ⊙ r(1 − r),   da_z = dh ⊙ (h_{t-1} − n) ⊙ z(1 − z)
                                dgh_t = [da_r, da_z, da_n ⊙ r],  dgi_t = [da_r, da_z, da_n]
                                carry = dh ⊙ z + dgh_t W_hh                                   → dh_{t-1}

    then, once per window       dW_hh = Σ_t dgh_t^T h_{t-1},  dW_ih = Σ_t dgi_t^T x_t,  dx_t = dgi_t W_ih

Each backward step needs one small product (the carry); the weight gradients
and the input gradient are three large products over the whole window, which
run several times faster per FLOP than 2 × T small ones. On the development
machine this makes the default 2×256 GRU's training step about 1.2× faster
than nn.GRU's under bf16 autocast (docs/performance.md, bench/throughput.py).

Gates sit in torch's order (r, z, n) and the weights are nn.GRU's own
(``all_weights[0]``), so checkpoints do not change. tests/test_gru.py checks
outputs and every gradient against nn.GRU.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def gru_layer(layer: nn.GRU, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a one-layer, batch-first nn.GRU's weights: x (B, T, I), state (1, B, H) or None → (B, T, H), (1, B, H).

    The same call and results as ``layer(x, state)``. Under CPU autocast the
    matrix products run in the autocast dtype (bf16) and the gates and the state
    in float32 (nn.GRU keeps its state in float32 too, and rounds its gates to bf16).
    """
    h0 = x.new_zeros(x.shape[0], layer.hidden_size) if state is None else state[0]  # (B, H)
    products = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else h0.dtype
    with torch.autocast("cpu", enabled=False):
        out, h = _GRUWindow.apply(x.to(h0.dtype), h0, products, *layer.all_weights[0])
    return out, h[None]


class _GRUWindow(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, products, w_ih, w_hh, b_ih, b_hh):
        """x (B, T, I), h0 (B, H) → h_1 … h_T (B, T, H), h_T (B, H); products: the dtype of the matrix products."""
        batch, steps, _ = x.shape
        hidden = w_hh.shape[1]
        xs = x.transpose(0, 1).to(products)  # (T, B, I): time-major, so each step reads one contiguous block
        w_ih, w_hh = w_ih.to(products), w_hh.to(products)
        gi = (xs.reshape(steps * batch, -1) @ w_ih.t()).view(steps, batch, 3 * hidden) + b_ih  # (T, B, 3H) float32
        gi[:, :, :2 * hidden] += b_hh[:2 * hidden]  # r and z add both biases; n keeps b_hh inside r ⊙ (·)
        rz = torch.empty_like(gi[:, :, :2 * hidden])  # r and z side by side (T, B, 2H)
        gh_n = torch.empty_like(gi[:, :, :hidden])  # h_{t-1} W_hn^T + b_hn (T, B, H)
        n = torch.empty_like(gh_n)
        hs = gi.new_empty(steps + 1, batch, hidden)  # h_0 … h_T
        hs[0] = h0
        # Per-step views made once: indexing in the loop would cost more than some of its kernels.
        gi_rz, gi_n = gi[:, :, :2 * hidden].unbind(), gi[:, :, 2 * hidden:].unbind()
        r, z = rz[:, :, :hidden].unbind(), rz[:, :, hidden:].unbind()
        h, rz_t, gh_n_t, n_t = hs.unbind(), rz.unbind(), gh_n.unbind(), n.unbind()
        w_hh_t, b_hn = w_hh.t(), b_hh[2 * hidden:]
        for t in range(steps):
            gh_rz, gh_nn = (h[t].to(products) @ w_hh_t).split(2 * hidden, dim=1)  # the one product inside the loop
            torch.add(gi_rz[t], gh_rz, out=rz_t[t]).sigmoid_()
            torch.add(gh_nn, b_hn, out=gh_n_t[t])
            torch.addcmul(gi_n[t], r[t], gh_n_t[t], out=n_t[t]).tanh_()
            torch.lerp(n_t[t], h[t], z[t], out=h[t + 1])  # n + z ⊙ (h_{t-1} − n)
        ctx.save_for_backward(xs, w_ih, w_hh, rz, gh_n, n, hs)
        return hs[1:].transpose(0, 1), hs[steps].clone()

    @staticmethod
    def backward(ctx, d_out, d_last):
        xs, w_ih, w_hh, rz, gh_n, n, hs = ctx.saved_tensors
        steps, batch, hidden = n.shape
        products = w_hh.dtype
        d_out = d_out.transpose(0, 1)  # (T, B, H)
        dgh = rz.new_empty(steps, batch, 3 * hidden)  # d loss / d gh_t
        da_n = torch.empty_like(n)  # d loss / d (gi_n + r ⊙ gh_n): the n part of d gi
        d_rz = torch.empty_like(rz[0])  # (B, 2H) scratch: d r and d z before their sigmoids
        carry = d_last  # d loss / d h_t from step t+1 (autograd passes zeros when h_T is unused)
        r, z = rz[:, :, :hidden].unbind(), rz[:, :, hidden:].unbind()
        h, rz_t, gh_n_t, n_t, d_out_t = hs.unbind(), rz.unbind(), gh_n.unbind(), n.unbind(), d_out.unbind()
        dgh_t, dgh_rz, dgh_n = dgh.unbind(), dgh[:, :, :2 * hidden].unbind(), dgh[:, :, 2 * hidden:].unbind()
        da_n_t, d_r, d_z = da_n.unbind(), d_rz[:, :hidden], d_rz[:, hidden:]
        for t in range(steps - 1, -1, -1):
            dh = d_out_t[t] + carry
            dn = torch.addcmul(dh, dh, z[t], value=-1)  # dh ⊙ (1 − z)
            torch.ops.aten.tanh_backward(dn, n_t[t], grad_input=da_n_t[t])
            torch.mul(da_n_t[t], gh_n_t[t], out=d_r)
            torch.mul(dh, h[t] - n_t[t], out=d_z)
            torch.ops.aten.sigmoid_backward(d_rz, rz_t[t], grad_input=dgh_rz[t])
            torch.mul(da_n_t[t], r[t], out=dgh_n[t])
            carry = torch.addcmul(dgh_t[t].to(products) @ w_hh, dh, z[t])  # d loss / d h_{t-1}
        dgh = dgh.view(steps * batch, 3 * hidden)
        dgi = torch.cat([dgh[:, :2 * hidden], da_n.view(steps * batch, hidden)], dim=1)  # (T·B, 3H)
        d_w_hh = dgh.to(products).t() @ hs[:steps].reshape(steps * batch, hidden).to(products)
        d_w_ih = dgi.to(products).t() @ xs.reshape(steps * batch, -1)
        dx = (dgi.to(products) @ w_ih).view(steps, batch, -1).transpose(0, 1)  # (B, T, I)
        state = d_last.dtype  # the weights' dtype, float32 under autocast
        return dx.to(state), carry, None, d_w_ih.to(state), d_w_hh.to(state), dgi.sum(0), dgh.sum(0)
