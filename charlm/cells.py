"""Reference cells: the RNN, LSTM and GRU written from the course equations, run over an explicit time loop;
and the parallel-in-time cells minGRU and minLSTM.

torch's nn.RNN / nn.LSTM / nn.GRU hide the recurrence inside one fused kernel.
The functions here spell it out, one time step at a time, in the course's
row-vector convention (a batch of row vectors x_t, multiplied on the right):

    RNN   h_t = tanh(x_t W_x + h_{t-1} W_h + b)              (or ReLU instead of tanh)
    LSTM  f, i, o = σ(·),  g = tanh(·)                        (each "·" is x_t W_x + h_{t-1} W_h + b
          c_t = f ⊙ c_{t-1} + i ⊙ g                             with that gate's slice of W_x, W_h, b)
          h_t = o ⊙ tanh(c_t)
    GRU   z, r = σ(·)
          h̃_t = tanh(x_t W_x + r ⊙ (h_{t-1} W_h + b_h) + b_x)  (torch's variant: see gru_cell)
          h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃_t

The parallel cells' gates read x_t alone (no h_{t-1} W_h), which makes each
layer's recurrence linear in h: h_t = a_t ⊙ h_{t-1} + b_t (``min_gates``).
``MinRNN`` is such a layer over a whole window (one product, then charlm.scan);
``min_gru_cell`` and ``min_lstm_cell`` are its one-step form, for generation.

The cells own no weights (MinRNN, a layer, holds its own). They take torch's own
parameters, so a model runs the same weights either way (``ModelConfig.impl``)
and a checkpoint does not record which ran. torch stores a layer as [w_ih, w_hh,
b_ih, b_hh] with W as (gates × H, inputs): the course's W_x is w_ih.T, W_h is
w_hh.T and b is b_ih + b_hh. The gates sit side by side in torch's order: i, f,
g, o for the LSTM and r, z, n for the GRU. Each cell has the signature of
torch's one-step kernels (torch.rnn_tanh_cell, torch.lstm_cell, torch.gru_cell),
so either can drive ``layers_step``; tests/test_cells.py checks that both give
the same outputs, states and gradients.

docs/cells.md has the equations next to torch's and the GRU's one real difference.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

Weights = list[torch.Tensor]  # one layer's [w_ih, w_hh, b_ih, b_hh], as in nn.RNNBase.all_weights


def _affine(x: torch.Tensor, h: torch.Tensor, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """x_t W_x + h_{t-1} W_h + b for every gate at once: x (B, I), h (B, H) → (B, gates × H)."""
    return x @ w_ih.T + h @ w_hh.T + (b_ih + b_hh)


def rnn_tanh_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """h_t = tanh(x_t W_x + h_{t-1} W_h + b): x (B, I), h (B, H) → h (B, H)."""
    return torch.tanh(_affine(x, h, w_ih, w_hh, b_ih, b_hh))


def rnn_relu_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """h_t = max(0, x_t W_x + h_{t-1} W_h + b): the ReLU variant (Le et al. 2015 start W_h at the identity)."""
    return torch.relu(_affine(x, h, w_ih, w_hh, b_ih, b_hh))


def lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh):
    """LSTM step: x (B, I), state (h, c) each (B, H) → (h, c), each (B, H).

    The forget gate f decides how much of c_{t-1} survives; because c_t is a
    sum and not a squashed product, its gradient can pass many steps back
    (multiplied by f at each step, about σ(1) ≈ 0.73 with charlm's forget bias).
    """
    h, c = state
    a_i, a_f, a_g, a_o = _affine(x, h, w_ih, w_hh, b_ih, b_hh).chunk(4, dim=1)  # (B, H) each, torch's order
    i, f, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.sigmoid(a_o)  # input, forget, output gates
    g = torch.tanh(a_g)  # candidate values
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """GRU step: x (B, I), h (B, H) → h (B, H), torch's (and cuDNN's) variant in the course's notation.

    Two differences from the course notes (Cho et al. 2014):
    - naming only: torch's update gate weights the *old* state,
      h_t = (1 − z') ⊙ n + z' ⊙ h_{t-1}; the course's z is 1 − z' = σ(−a_z');
    - a different function: torch applies the reset gate after the product with
      W_h, r ⊙ (h_{t-1} W_h + b_h), where the course has (r ⊙ h_{t-1}) W_h.
      Both learn equally well; this one matches the fused kernel, so it is the
      one computed here.
    """
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=1)  # (B, H) each, torch's order r, z, n
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=1)  # (B, H) each
    r = torch.sigmoid(x_r + h_r)  # reset gate
    z = torch.sigmoid(-(x_z + h_z))  # the course's update gate: the share of the new candidate
    h_tilde = torch.tanh(x_n + r * h_n)  # candidate state
    return (1 - z) * h + z * h_tilde


MIN_GATES = {"mingru": 2, "minlstm": 3}  # gate blocks of H in a parallel cell's w_ih: (z, h̃) and (f, i, h̃)


def min_gates(cell: str, gates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The coefficients of h_t = a_t ⊙ h_{t-1} + b_t from a parallel cell's gate pre-activations (…, G·H),
    which depend on x_t alone (Feng et al. 2024, "Were RNNs All We Needed?")::

        minGRU   z = σ(·), h̃ = (·)                     a = 1 − z,   b = z ⊙ h̃
        minLSTM  f = σ(·), i = σ(·), h̃ = (·)           a = f / (f + i),   b = i / (f + i) ⊙ h̃
    """
    if cell == "mingru":
        g_z, h_tilde = gates.chunk(2, dim=-1)
        z = torch.sigmoid(g_z)
        return 1 - z, z * h_tilde
    g_f, g_i, h_tilde = gates.chunk(3, dim=-1)
    f, i = torch.sigmoid(g_f), torch.sigmoid(g_i)
    total = f + i
    return f / total, i / total * h_tilde


def min_input(x: torch.Tensor) -> torch.Tensor:
    """What a parallel cell's gates read: GELU of the layer's input. With no recurrent product, this is the
    nonlinearity between stacked layers (each layer's h is a linear function of the previous h)."""
    return torch.nn.functional.gelu(x)


def min_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """minGRU step: x (B, I), h (B, H) → h (B, H); w_hh and b_hh are None (no recurrent weights)."""
    a, b = min_gates("mingru", min_input(x) @ w_ih.T + b_ih)
    return a * h + b


def min_lstm_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """minLSTM step: x (B, I), h (B, H) → h (B, H); w_hh and b_hh are None (no recurrent weights)."""
    a, b = min_gates("minlstm", min_input(x) @ w_ih.T + b_ih)
    return a * h + b


REFERENCE_CELLS: dict[str, Callable] = {"rnn": rnn_tanh_cell, "rnn-relu": rnn_relu_cell, "lstm": lstm_cell,
                                        "gru": gru_cell, "mingru": min_gru_cell, "minlstm": min_lstm_cell}


class MinRNN(nn.Module):
    """One minGRU or minLSTM layer over a window, batch-first: x (B, T, I), state (1, B, H) or None → outputs
    (B, T, H), final state (1, B, H). All gates of the window in one matrix product, then the element-wise
    scan of charlm.scan. Its weights are named as a one-layer nn.RNN's input weights (``weight_ih_l0``,
    ``bias_ih_l0``); it has no recurrent ones."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, batch_first: bool = True):
        super().__init__()
        assert batch_first
        self.cell, self.hidden_size = cell, hidden_size
        gates = MIN_GATES[cell]
        bound = hidden_size ** -0.5  # torch's RNN initialisation
        self.weight_ih_l0 = nn.Parameter(torch.empty(gates * hidden_size, input_size).uniform_(-bound, bound))
        self.bias_ih_l0 = nn.Parameter(torch.empty(gates * hidden_size).uniform_(-bound, bound))

    @property
    def all_weights(self) -> list[Weights]:
        """[[w_ih, w_hh, b_ih, b_hh]] as nn.RNNBase has them, with None for the recurrent weights it lacks."""
        return [[self.weight_ih_l0, None, self.bias_ih_l0, None]]

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None, weights: Weights | None = None):
        from charlm.scan import linear_scan

        w_ih, _, b_ih, _ = weights or self.all_weights[0]
        a, b = min_gates(self.cell, min_input(x) @ w_ih.T + b_ih)  # (B, T, H) each, the window at once
        h = linear_scan(a, b, None if state is None else state[0])  # (B, T, H)
        return h, h[:, -1][None]


def layers_step(cell: Callable, x: torch.Tensor, state, weights: list[Weights]):
    """One time step up through stacked layers: x (B, I) → top layer's h (B, H), new state.

    ``state`` is h (layers, B, H), or (h, c) for the LSTM; ``cell`` is a reference
    cell or one of torch's one-step kernels. No dropout: charlm.model applies it
    between layers, around one layer's whole sequence at a time.
    """
    lstm = isinstance(state, tuple)
    new = []
    for layer, layer_weights in enumerate(weights):
        s = cell(x, (state[0][layer], state[1][layer]) if lstm else state[layer], *layer_weights)  # (B, H) or (h, c)
        new.append(s)
        x = s[0] if lstm else s  # (B, H): this layer's output is the next layer's input
    if lstm:
        return x, (torch.stack([h for h, _ in new]), torch.stack([c for _, c in new]))  # (layers, B, H) each
    return x, torch.stack(new)  # (layers, B, H)


class TimeRNN(nn.Module):
    """Stacked layers of one reference cell over an explicit time loop, batch-first.

    It has no parameters: ``forward`` takes the weights of the fused module it
    stands in for (their ``all_weights``; ``RNNLM.layer_weights``), so both paths share one set.
    """

    def __init__(self, cell: str):
        super().__init__()
        self.cell_name = cell
        self.cell = REFERENCE_CELLS[cell]

    def zero_state(self, x: torch.Tensor, weights: list[Weights]):
        """Zeros shaped (layers, B, H) (twice for the LSTM), on x's device and dtype."""
        w_ih, w_hh = weights[0][0], weights[0][1]
        hidden = w_hh.shape[1] if w_hh is not None else w_ih.shape[0] // MIN_GATES[self.cell_name]
        h = x.new_zeros(len(weights), x.shape[0], hidden)
        return (h, torch.zeros_like(h)) if self.cell_name == "lstm" else h

    def unroll(self, x: torch.Tensor, state, weights: list[Weights]):
        """Yield (h_t of the top layer (B, H), state after step t) for t = 1 … T of x (B, T, I).

        Each h_t is the very tensor the next step computes from, so a caller can
        keep it and ask for d loss / d h_t (charlm.explore.diagnose does).
        """
        if state is None:
            state = self.zero_state(x, weights)
        for t in range(x.shape[1]):
            h, state = layers_step(self.cell, x[:, t], state, weights)
            yield h, state

    def forward(self, x: torch.Tensor, state, weights: list[Weights]):
        """x (B, T, I), state or None (zeros) → top layer's outputs (B, T, H), final state; like nn.RNN's forward."""
        outputs, final = [], state
        for h, final in self.unroll(x, state, weights):  # noqa: B007 (the last step's state is the final state)
            outputs.append(h)
        return torch.stack(outputs, dim=1), final  # (B, T, H)
