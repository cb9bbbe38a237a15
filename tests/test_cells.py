"""The reference cells (charlm.cells) against torch's fused modules: same weights, same function, same gradients."""

import dataclasses

import pytest
import torch

from charlm import cells
from charlm.config import ModelConfig
from charlm.errors import ConfigError
from charlm.model import RNNLM

from conftest import TINY_MODEL_ARGS, run_and_backprop

CELLS = ["rnn", "rnn-relu", "lstm", "gru"]
B, T, I, H = 3, 5, 4, 6  # noqa: E741 (the course's names) batch, time, input and hidden sizes: tiny, and all different so a transpose shows


def _fused(cell: str, layers: int, dtype: torch.dtype) -> torch.nn.RNNBase:
    torch.manual_seed(0)
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    extra = {"nonlinearity": "relu"} if cell == "rnn-relu" else {}
    return kind(I, H, num_layers=layers, batch_first=True, **extra).to(dtype)


def _carried_state(cell: str, layers: int, dtype: torch.dtype):
    """A non-zero initial state, as truncated BPTT carries from the window before, that needs a gradient."""
    torch.manual_seed(1)
    parts = [(0.5 * torch.randn(layers, B, H, dtype=dtype)).requires_grad_() for _ in range(2 if cell == "lstm" else 1)]
    return tuple(parts) if cell == "lstm" else parts[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layers", [2, 3])
@pytest.mark.parametrize("cell", CELLS)
def test_reference_equals_fused_outputs_states_and_gradients(cell, layers, dtype):
    rnn = _fused(cell, layers, dtype)
    torch.manual_seed(2)
    x = torch.randn(B, T, I, dtype=dtype, requires_grad=True)
    state = _carried_state(cell, layers, dtype)
    time_rnn = cells.TimeRNN(cell)
    fused = run_and_backprop(rnn, rnn, x, state)
    reference = run_and_backprop(lambda x, s: time_rnn(x, s, rnn.all_weights), rnn, x, state)
    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert len(fused) == len(reference)
    for a, b in zip(fused, reference):
        torch.testing.assert_close(b, a, **tolerance)


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_each_reference_cell(cell):
    torch.manual_seed(0)
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)  # (B, I)
    hs = [torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2 if cell == "lstm" else 1)]
    w = [torch.randn(gates * 4, n, dtype=torch.float64, requires_grad=True) for n in (3, 4)]
    b = [torch.randn(gates * 4, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    step = cells.REFERENCE_CELLS[cell]

    def run(x, *rest):
        states, params = rest[:len(hs)], rest[len(hs):]
        return step(x, tuple(states) if cell == "lstm" else states[0], *params)

    assert torch.autograd.gradcheck(run, (x, *hs, *w, *b))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradcheck_time_rnn_over_layers_and_steps(cell):
    rnn = _fused(cell, 2, torch.float64)
    weights = [p.detach().clone().requires_grad_() for p in rnn.parameters()]  # w_ih, w_hh, b_ih, b_hh per layer
    x = torch.randn(2, 3, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, H, dtype=torch.float64, requires_grad=True)
    time_rnn = cells.TimeRNN(cell)

    def run(x, h0, *flat):
        state = (h0, torch.zeros_like(h0)) if cell == "lstm" else h0
        out, _ = time_rnn(x, state, [list(flat[i:i + 4]) for i in range(0, len(flat), 4)])
        return out

    assert torch.autograd.gradcheck(run, (x, h0, *weights))


@pytest.mark.parametrize("kind", ["locked", "standard"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_forward_agrees_across_implementations_dropout_included(cell, kind):
    """Dropout sits between layers in the model, outside either implementation: same seed, same masks, same outputs."""
    config = ModelConfig(cell=cell, num_layers=3, hidden_size=H, embed_size=I, dropout=0.5, dropout_kind=kind)
    fused = RNNLM(config, vocab_size=7).train()
    reference = RNNLM(dataclasses.replace(config, impl="reference"), vocab_size=7).train()
    reference.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 7, (B, T))
    torch.manual_seed(5)
    a, _ = fused(ids)
    torch.manual_seed(5)
    b, _ = reference(ids)
    torch.testing.assert_close(b, a)
    assert not torch.allclose(a, fused.eval()(ids)[0])  # dropout did act


@pytest.mark.parametrize("cell", [*CELLS, "mingru", "minlstm"])
def test_model_forward_and_step_agree_across_implementations(cell):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, num_layers=2, hidden_size=H, embed_size=I, dropout=0.0)
    fused = RNNLM(config, vocab_size=7).eval()
    reference = RNNLM(dataclasses.replace(config, impl="reference"), vocab_size=7).eval()
    reference.load_state_dict(fused.state_dict())
    assert list(reference.state_dict()) == list(fused.state_dict())  # one set of parameter names
    ids = torch.randint(0, 7, (B, T))
    (a, state_a), (b, state_b) = fused(ids), reference(ids)
    torch.testing.assert_close(b, a)
    step_logits, _ = reference.step(ids[:, 0], state_b)
    torch.testing.assert_close(step_logits, fused(ids[:, :1], state_a)[0][:, 0])


def test_impl_setting_is_validated_and_old_configs_default_to_fused():
    with pytest.raises(ConfigError, match="--impl fused or --impl reference"):
        ModelConfig(impl="cudnn")
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "impl"}  # a config.json from before --impl
    assert ModelConfig.from_dict(old).impl == "fused"


def _sample(invoke, run_dir, *options):
    result = invoke("sample", str(run_dir), "-p", "the ", "-n", "40", "-t", "0", *options)
    assert result.exit_code == 0, result.output
    return result.stdout


def _eval_loss(invoke, run_dir, *options):
    import json

    result = invoke("eval", str(run_dir), "--json", *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["loss"]


def test_checkpoint_trained_with_one_implementation_runs_with_the_other(invoke, tiny_corpus, tmp_path):
    # float32, so that the comparison is of the maths: under bf16 autocast (chosen by --precision auto on a
    # CPU with fast bf16) the two implementations round differently.
    runs = {}
    for impl, cell in (("reference", "gru"), ("fused", "lstm")):
        runs[impl] = out = tmp_path / impl
        result = invoke("train", tiny_corpus, "--out", out, "--max-steps", "6", "--cell", cell, "--impl", impl,
                        "--precision", "fp32", *TINY_MODEL_ARGS)
        assert result.exit_code == 0, result.output
        assert f'"impl": "{impl}"' in (out / "config.json").read_text()
    for run_dir, other in ((runs["reference"], "fused"), (runs["fused"], "reference")):
        assert _sample(invoke, run_dir, "--impl", other) == _sample(invoke, run_dir)
        assert _eval_loss(invoke, run_dir, "--impl", other) == pytest.approx(_eval_loss(invoke, run_dir), rel=1e-5)
