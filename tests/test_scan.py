"""charlm.scan.linear_scan, the parallel cells' recurrence, against autograd through a plain loop."""

import pytest
import torch

from charlm.scan import linear_scan


def loop(a, b, h0):
    h, out = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_match_a_loop(dtype):
    torch.manual_seed(0)
    a = torch.rand(3, 9, 5, dtype=dtype, requires_grad=True)
    b = torch.randn(3, 9, 5, dtype=dtype, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=dtype, requires_grad=True)
    weights = torch.randn(3, 9, 5, dtype=dtype)
    ours = linear_scan(a, b, h0)
    (ours * weights).sum().backward()
    grads = [t.grad.clone() for t in (a, b, h0)]
    for t in (a, b, h0):
        t.grad = None
    reference = loop(a.float(), b.float(), h0.float())
    (reference * weights.float()).sum().backward()
    torch.testing.assert_close(ours, reference)
    for ours_grad, t in zip(grads, (a, b, h0)):
        torch.testing.assert_close(ours_grad, t.grad.to(ours_grad.dtype), rtol=1e-5, atol=1e-6)


def test_gates_at_the_edges_stay_exact():
    """a of 0 (forget everything) and 1 (keep everything), where a cumulative product would under- or overflow."""
    a = torch.tensor([[[0.0], [1.0], [1e-30], [1.0]]])
    b = torch.tensor([[[2.0], [3.0], [4.0], [5.0]]])
    assert linear_scan(a, b, torch.tensor([[7.0]])).flatten().tolist() == [2.0, 5.0, 4.0, 9.0]


def test_a_zero_state_by_default_and_float32_under_bf16():
    a, b = torch.full((1, 3, 2), 0.5, dtype=torch.bfloat16), torch.ones(1, 3, 2, dtype=torch.bfloat16)
    h = linear_scan(a, b)
    assert h.dtype == torch.float32 and h[0, :, 0].tolist() == [1.0, 1.5, 1.75]
