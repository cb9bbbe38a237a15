import dataclasses

import pytest
import torch

from charlm.config import ModelConfig
from charlm.errors import ConfigError
from charlm.model import RNNLM, LockedDropout, StandardDropout, detach_state

CELLS = ["rnn", "rnn-relu", "lstm", "gru", "mingru", "minlstm"]
RECURRENT_WEIGHT_CELLS = ["rnn", "rnn-relu", "lstm", "gru"]  # the cells weight drop applies to


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_and_state(cell):
    model = RNNLM(ModelConfig(cell=cell, num_layers=2, hidden_size=6, embed_size=5, dropout=0.0), vocab_size=7)
    logits, state = model(torch.randint(0, 7, (3, 4)))
    assert logits.shape == (3, 4, 7)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 3, 6)


@pytest.mark.parametrize("cell", CELLS)
def test_two_halves_with_carried_state_equal_one_pass(cell):
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell=cell, num_layers=2, hidden_size=5, embed_size=4, dropout=0.0), vocab_size=6).eval()
    ids = torch.randint(0, 6, (2, 10))
    full, _ = model(ids)
    first, state = model(ids[:, :4])
    second, _ = model(ids[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), full)


def test_vanilla_rnn_matches_course_notes_recurrence():
    """h_t = tanh(x_t W_x + h_{t-1} W_h + b), with one-hot x_t, computed by hand."""
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell="rnn", num_layers=1, hidden_size=4, embed_size=0, dropout=0.0), vocab_size=5)
    rnn = model.layers[0]
    ids = torch.tensor([[1, 3, 0, 2]])
    h = torch.zeros(4)
    expected = []
    for t in range(4):
        x = torch.nn.functional.one_hot(ids[0, t], 5).float()
        h = torch.tanh(x @ rnn.weight_ih_l0.T + h @ rnn.weight_hh_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0)
        expected.append(model.decoder(h))
    logits, _ = model(ids)
    torch.testing.assert_close(logits[0], torch.stack(expected))


def test_lstm_gates_by_hand_and_forget_bias_one():
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell="lstm", num_layers=1, hidden_size=3, embed_size=2, dropout=0.0), vocab_size=4)
    rnn = model.layers[0]
    bias = rnn.bias_ih_l0 + rnn.bias_hh_l0
    assert torch.all(bias[3:6] == 1.0)  # forget gate slice
    ids = torch.tensor([[1, 2, 3]])
    h, c = torch.zeros(3), torch.zeros(3)
    for t in range(3):
        x = model.embedding(ids[0, t])
        gates = x @ rnn.weight_ih_l0.T + h @ rnn.weight_hh_l0.T + bias
        i, f, g, o = gates.chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    _, (h_n, c_n) = model(ids)
    torch.testing.assert_close(h_n[0, 0], h)
    torch.testing.assert_close(c_n[0, 0], c)


def test_detach_state_cuts_the_graph():
    model = RNNLM(ModelConfig(cell="lstm", num_layers=1, hidden_size=3, embed_size=2, dropout=0.0), vocab_size=4)
    _, state = model(torch.tensor([[1, 2]]))
    assert state[0].requires_grad
    detached = detach_state(state)
    assert not detached[0].requires_grad and not detached[1].requires_grad
    torch.testing.assert_close(detached[0], state[0])


def test_tied_weights_share_one_matrix():
    model = RNNLM(ModelConfig(hidden_size=8, embed_size=8, tie_weights=True), vocab_size=5)
    assert model.decoder.weight is model.embedding.weight
    with pytest.raises(ConfigError, match="--tie-weights"):
        ModelConfig(hidden_size=8, embed_size=4, tie_weights=True)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embed", [0, 4])
def test_single_step_matches_fused_forward(cell, embed):
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell=cell, num_layers=2, hidden_size=5, embed_size=embed, dropout=0.3), 6).eval()
    ids = torch.randint(0, 6, (3, 7))
    with torch.no_grad():
        full, full_state = model(ids)
        state, steps = None, []
        for t in range(7):
            logits, state = model.step(ids[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full)
    for a, b in zip(state if cell == "lstm" else (state,), full_state if cell == "lstm" else (full_state,)):
        torch.testing.assert_close(a, b)


def test_locked_dropout_keeps_one_mask_per_sequence_for_the_whole_window():
    drop = LockedDropout(0.3).train()
    x = torch.ones(64, 20, 50)
    y = drop(x)  # (B, T, H)
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same mask at every time step
    assert not torch.equal(y[0], y[1])  # a different mask per sequence
    assert y.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]  # dropped, or kept and scaled up
    assert abs((y == 0).float().mean().item() - 0.3) < 0.02  # 3,200 draws
    assert torch.equal(drop.eval()(x), x)  # off in eval


@pytest.mark.parametrize("kind", ["locked", "standard"])
def test_dropout_kind_acts_across_time_as_named(kind):
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=8, embed_size=4, dropout=0.5, dropout_kind=kind), 5).train()
    out = model.drop(torch.ones(2, 30, 8))
    steps_alike = torch.equal(out, out[:, :1].expand_as(out))
    assert steps_alike == (kind == "locked")


def test_configs_saved_before_dropout_kind_keep_standard_dropout():
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "dropout_kind"}
    assert ModelConfig.from_dict(old).dropout_kind == "standard"  # as torch's stacked modules did
    with pytest.raises(ConfigError, match="locked or standard"):
        ModelConfig(dropout_kind="spatial")


def test_standard_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    torch.manual_seed(0)
    drop = StandardDropout(0.3).train()
    x = torch.ones(64, 20, 50, requires_grad=True)
    y = drop(x)  # (B, T, H)
    assert y.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01  # 64,000 draws
    for a, b in ((y[0], y[1]), (y[:, 0], y[:, 1]), (y[..., 0], y[..., 1])):
        assert not torch.equal(a, b)  # a fresh draw for every sequence, time step and unit
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, y.detach())  # the gradient passes through the same mask and scale
    assert torch.equal(drop.eval()(x), x)  # off in eval


def _w_hh_masks(model: RNNLM, seed: int) -> list[torch.Tensor]:
    """The masks a training forward pass under ``seed`` draws for each layer's W_hh, scale included."""
    torch.manual_seed(seed)
    return [model.weight_drop(torch.ones_like(layer.weight_hh_l0)) for layer in model.layers]


@pytest.mark.parametrize("cell, impl", [(c, "fused") for c in RECURRENT_WEIGHT_CELLS]
                         + [("gru", "reference"), ("lstm", "reference")])
def test_weight_drop_runs_the_model_on_one_masked_recurrent_matrix_per_layer(cell, impl):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, num_layers=2, hidden_size=6, embed_size=4, dropout=0.0, weight_drop=0.5, impl=impl)
    model = RNNLM(config, vocab_size=7).train()
    ids = torch.randint(0, 7, (3, 5))
    masks = _w_hh_masks(model, seed=1)
    assert all(set(m.unique().tolist()) == {0.0, 2.0} for m in masks)  # dropped, or kept and scaled by 1 / (1 - p)
    torch.manual_seed(1)
    dropped, _ = model(ids)
    dropped.sum().backward()

    by_hand = RNNLM(dataclasses.replace(config, weight_drop=0.0), vocab_size=7)
    by_hand.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, mask in zip(by_hand.layers, masks):
            layer.weight_hh_l0.mul_(mask)
    torch.testing.assert_close(dropped, by_hand(ids)[0])
    for layer, mask in zip(model.layers, masks):
        grad = layer.weight_hh_l0.grad
        assert grad is not None and grad.abs().sum() > 0
        assert torch.all(grad[mask == 0] == 0)  # a dropped connection learns nothing this step

    plain = RNNLM(dataclasses.replace(config, weight_drop=0.0), vocab_size=7).eval()
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.eval()(ids)[0], plain(ids)[0])  # outside training, the weights as they are


def test_weight_drop_is_checked_and_older_configs_have_none():
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "weight_drop"}
    assert ModelConfig.from_dict(old).weight_drop == 0.0
    with pytest.raises(ConfigError, match=r"--weight-drop must be in \[0, 1\), got 1.0"):
        ModelConfig(weight_drop=1.0)
    with pytest.raises(ConfigError, match="a mingru has none: drop --weight-drop"):
        ModelConfig(cell="mingru", weight_drop=0.1)
