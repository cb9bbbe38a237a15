"""One GRU layer over a window, with its backward pass through time written out: for CPU training.

torch has no fused GRU kernel on CPU (its oneDNN path is the LSTM's only), so
nn.GRU there loops over time in C++ and autograd records each step's few dozen
operations, then replays them backwards: per time step it computes the weight
gradients with their own small products and adds them up. This layer is the
same function with the backward pass of the course notes (BPTT) done by hand:

    forward, t = 1 … T          gi_t = x_t W_ih^T + b_ih     (all t in one large product, first)
                                gh_t = h_{t-1} W_hh^T + b_hh
                                a_r, a_z', a_n = gi_r + gh_r, gi_z + gh_z, gi_n + r ⊙ gh_n
                                r, z', n = σ(a_r), σ(a_z'), tanh(a_n)
                                h_t  = n + z' ⊙ (h_{t-1} − n)

    backward, t = T … 1         dh   = dL/dh_t (from the output) + the carry from step t+1
                                da_n = dh ⊙ (1 − z') ⊙ (1 − n²)
                                da_r = da_n ⊙ gh_n ⊙ r(1 − r),   da_z' = dh ⊙ (h_{t-1} − n) ⊙ z'(1 − z')
                                dgh_t = [da_r, da_z', da_n ⊙ r],  dgi_t = [da_r, da_z', da_n]
                                carry = dh ⊙ z' + dgh_t W_hh                                  → dh_{t-1}

    then, once per window       dW_hh = Σ_t dgh_t^T h_{t-1},  dW_ih = Σ_t dgi_t^T x_t,  dx_t = dgi_t W_ih,
                                db_hh = Σ_t dgh_t,  db_ih = Σ_t dgi_t

Each backward step needs one small product (the carry); the weight gradients
and the input gradient are three large products over the whole window, which
run faster per FLOP than 2 × T small ones, so the layer trains faster than
nn.GRU's per-step autograd on CPU (bench/throughput.py compares the two).

W_ih^T and W_hh^T are the course's W_x and W_h (torch stores weights as out × in).
z' is torch's update gate, the share of the *old* state; the course's z, the
share of the new candidate, is 1 − z' (docs/cells.md, "GRU": the same gate).
The code writes z for z'. Gates sit in torch's order (r, z', n) and the weights are nn.GRU's own
(``all_weights[0]``), so checkpoints do not change. tests/test_gru.py checks
outputs and every gradient against nn.GRU.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable


def gru_layer(
    layer: nn.GRU, x: torch.Tensor, state: torch.Tensor | None, weights: list[torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a one-layer, batch-first nn.GRU's weights: x (B, T, I), state (1, B, H) or None → (B, T, H), (1, B, H).

    The function of ``layer(x, state)``, outputs in the weights' dtype. ``weights`` ([w_ih, w_hh, b_ih,
    b_hh]) stand in for the layer's own, e.g. with DropConnect on w_hh; gradients flow back through them. Under
    CPU autocast (float32 weights) the matrix products run in the autocast
    dtype and the gates and the state in float32 (nn.GRU keeps its state in
    float32 too, and rounds its gates to bf16). Differentiable once; the
    output is a view of what backward keeps, so do not modify it in place.
    """
    assert layer.batch_first and layer.num_layers == 1 and layer.bias and not layer.bidirectional
    h0 = x.new_zeros(x.shape[0], layer.hidden_size) if state is None else state[0]  # (B, H)
    products = h0.dtype
    if torch.is_autocast_enabled("cpu") and h0.dtype == torch.float32:  # autocast leaves float64 alone
        products = torch.get_autocast_dtype("cpu")
    with torch.autocast("cpu", enabled=False):
        out, h = _GRUWindow.apply(x.to(h0.dtype), h0, products, *(weights or layer.all_weights[0]))
    return out, h[None]


class _GRUWindow(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")  # backward then runs under the forward's autocast state (off)
    def forward(ctx, x, h0, products, w_ih, w_hh, b_ih, b_hh):
        """x (B, T, I), h0 (B, H) → h_1 … h_T (B, T, H), h_T (B, H); products: the dtype of the matrix products."""
        batch, steps, _ = x.shape
        hidden = w_hh.shape[1]
        xs = x.transpose(0, 1).to(products)  # (T, B, I): time-major, so each step reads one contiguous block
        w_ih, w_hh = w_ih.to(products), w_hh.to(products)
        gi = (xs.reshape(steps * batch, -1) @ w_ih.t()).view(steps, batch, 3 * hidden) + b_ih  # (T, B, 3H)
        gi[:, :, :2 * hidden] += b_hh[:2 * hidden]  # r and z add both biases; n keeps b_hh inside r ⊙ (·)
        rz = torch.empty_like(gi[:, :, :2 * hidden])  # r and z side by side (T, B, 2H)
        gh_n = torch.empty_like(gi[:, :, :hidden])  # h_{t-1} W_hn^T + b_hn (T, B, H)
        n = torch.empty_like(gh_n)
        hs = gi.new_empty(steps + 1, batch, hidden)  # h_0 … h_T
        hs[0] = h0
        # Per-step views made once: indexing in the loop would cost more than some of its kernels.
        # Index t (from 0) computes h[t + 1] from h[t]: the docstring's step t + 1.
        gi_rz, gi_n = gi[:, :, :2 * hidden].unbind(), gi[:, :, 2 * hidden:].unbind()
        r, z = rz[:, :, :hidden].unbind(), rz[:, :, hidden:].unbind()
        rz_t, gh_n_t, n_t = rz.unbind(), gh_n.unbind(), n.unbind()
        h = hs.unbind()
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
    @torch.amp.custom_bwd(device_type="cpu")
    @once_differentiable  # the loop writes into buffers, which autograd cannot differentiate again
    def backward(ctx, d_out, d_last):
        xs, w_ih, w_hh, rz, gh_n, n, hs = ctx.saved_tensors
        steps, batch, hidden = n.shape
        products = w_hh.dtype
        d_out = d_out.transpose(0, 1)  # (T, B, H): d loss / d h_t from the layer's output
        dgh = rz.new_empty(steps, batch, 3 * hidden)  # dgh_t = [da_r, da_z, da_n ⊙ r]
        da_n = torch.empty_like(n)  # the n part of dgi_t, whose r and z parts are dgh_t's
        d_rz = torch.empty_like(rz[0])  # (B, 2H) scratch: d loss / d r and d loss / d z
        carry = d_last  # d loss / d h_t from step t+1 (autograd passes zeros when h_T is unused)
        r, z = rz[:, :, :hidden].unbind(), rz[:, :, hidden:].unbind()
        rz_t, gh_n_t, n_t = rz.unbind(), gh_n.unbind(), n.unbind()
        h, d_out_t = hs.unbind(), d_out.unbind()
        dgh_t, dgh_rz, dgh_n = dgh.unbind(), dgh[:, :, :2 * hidden].unbind(), dgh[:, :, 2 * hidden:].unbind()
        da_n_t, d_r, d_z = da_n.unbind(), d_rz[:, :hidden], d_rz[:, hidden:]
        for t in range(steps - 1, -1, -1):
            dh = d_out_t[t] + carry
            dn = torch.addcmul(dh, dh, z[t], value=-1)  # d loss / d n = dh ⊙ (1 − z)
            # aten's tanh_backward / sigmoid_backward: the derivative formulas in the comments, fused, into buffers
            torch.ops.aten.tanh_backward(dn, n_t[t], grad_input=da_n_t[t])  # da_n = dn ⊙ (1 − n²)
            torch.mul(da_n_t[t], gh_n_t[t], out=d_r)
            torch.mul(dh, h[t] - n_t[t], out=d_z)
            torch.ops.aten.sigmoid_backward(d_rz, rz_t[t], grad_input=dgh_rz[t])  # [da_r, da_z] = d ⊙ σ(1 − σ)
            torch.mul(da_n_t[t], r[t], out=dgh_n[t])
            carry = torch.addcmul(dgh_t[t].to(products) @ w_hh, dh, z[t])  # d loss / d h_{t-1}
        dgh = dgh.view(steps * batch, 3 * hidden)
        dgi = torch.cat([dgh[:, :2 * hidden], da_n.view(steps * batch, hidden)], dim=1)  # (T·B, 3H)
        dgi_products = dgi.to(products)
        d_w_hh = dgh.to(products).t() @ hs[:steps].reshape(steps * batch, hidden).to(products)
        d_w_ih = dgi_products.t() @ xs.reshape(steps * batch, -1)
        d_b_hh = dgh.sum(0)
        d_b_ih = torch.cat([d_b_hh[:2 * hidden], da_n.view(steps * batch, hidden).sum(0)])  # r, z: the same sums
        state_dtype = d_last.dtype  # float32 under autocast
        dx = None
        if ctx.needs_input_grad[0]:  # not for one-hot inputs
            dx = (dgi_products @ w_ih).view(steps, batch, -1).transpose(0, 1).to(state_dtype)  # (B, T, I)
        return dx, carry, None, d_w_ih.to(state_dtype), d_w_hh.to(state_dtype), d_b_ih, d_b_hh
