"""charlm.gru.gru_layer against nn.GRU: same outputs, final state and gradients; the model trains through it."""

from functools import partial
from unittest import mock

import pytest
import torch

from charlm import gru
from charlm import model as model_module
from charlm.config import ModelConfig
from charlm.model import RNNLM

from conftest import run_and_backprop


@pytest.mark.parametrize("carried", [True, False])
@pytest.mark.parametrize(("batch", "steps", "inputs", "hidden"), [(3, 7, 5, 4), (1, 1, 2, 3), (4, 20, 8, 16)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_outputs_state_and_every_gradient_equal_nn_gru(dtype, batch, steps, inputs, hidden, carried):
    torch.manual_seed(0)
    layer = torch.nn.GRU(inputs, hidden, batch_first=True).to(dtype)
    x = torch.randn(batch, steps, inputs, dtype=dtype, requires_grad=True)
    state = torch.randn(1, batch, hidden, dtype=dtype, requires_grad=True) if carried else None
    ours = run_and_backprop(partial(gru.gru_layer, layer), layer, x, state)
    theirs = run_and_backprop(layer, layer, x, state)
    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **tolerance)


def test_under_bf16_autocast_it_rounds_like_nn_gru():
    """Products in bf16, state in float32 (as nn.GRU returns it): agreement to bf16's precision, not better."""
    torch.manual_seed(0)
    layer = torch.nn.GRU(16, 32, batch_first=True)
    x = torch.randn(4, 30, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = run_and_backprop(partial(gru.gru_layer, layer), layer, x, None)
        theirs = run_and_backprop(layer, layer, x, None)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype == torch.float32
        assert (a - b).abs().max() <= 0.03 * b.abs().max()
    exact = run_and_backprop(partial(gru.gru_layer, layer), layer, x, None)  # float32
    assert not torch.equal(ours[0], exact[0])  # bf16 did run


def test_model_trains_gru_layers_through_it_and_evaluates_with_nn_gru():
    torch.manual_seed(0)
    lm = RNNLM(ModelConfig(cell="gru", num_layers=2, hidden_size=6, embed_size=4, dropout=0.0), vocab_size=7).train()
    ids = torch.randint(0, 7, (2, 9))
    with mock.patch.object(model_module, "gru_layer", wraps=gru.gru_layer) as spy:
        trained, _ = lm(ids)
        assert spy.call_count == 2  # one call per layer
        with torch.no_grad():
            evaluated, _ = lm(ids)  # nn.GRU: faster than a Python time loop when nothing is recorded
        assert spy.call_count == 2
    torch.testing.assert_close(trained, evaluated)
    trained.sum().backward()
    assert all(p.grad is not None for p in lm.parameters())


def test_float64_stays_exact_under_autocast_and_a_second_derivative_is_refused():
    torch.manual_seed(0)
    layer = torch.nn.GRU(3, 4, batch_first=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast leaves float64 alone, and so must the layer
        ours = run_and_backprop(partial(gru.gru_layer, layer), layer, x, None)
        theirs = run_and_backprop(layer, layer, x, None)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    out, _ = gru.gru_layer(layer, x, None)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()
