import pytest
import torch

from charlm.config import ModelConfig
from charlm.errors import ConfigError
from charlm.model import RNNLM, detach_state

CELLS = ["rnn", "rnn-relu", "lstm", "gru"]


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
    rnn = model.rnn
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
    rnn = model.rnn
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
