"""RNNLM: embedding (or one-hot) → stacked recurrent layers → linear decoder, dropout between.

Each RNN, LSTM or GRU layer is one of torch's fused single-layer modules
(cuDNN / oneDNN kernels), except that a GRU layer training on CPU, where torch
has no fused GRU kernel, runs through charlm.gru (the same function with its
backward written out). A minGRU or minLSTM layer (the parallel-in-time cells,
whose gates read x_t alone) is charlm.cells.MinRNN: one matrix product for the
whole window's gates, then charlm.scan's element-wise recurrence; generation
steps it one token at a time through the same weights.
For a vanilla RNN layer that is the course-notes recurrence

    h_t = tanh(x_t W_x + h_{t-1} W_h + b)

and for the LSTM the gated version with i, f, g, o gates and a cell state c_t.
With ``ModelConfig.impl == "reference"`` the same weights run through
charlm.cells instead: those equations written out, over an explicit time loop
(slower, and the same function). The fused modules own the weights either way,
so parameter names and checkpoints do not depend on the implementation.

Dropout acts on each layer's output (on its way to the next layer, and on the
top layer's on its way to the decoder). "locked" dropout (Gal & Ghahramani
2016; Merity et al. 2018) draws one mask per sequence and keeps it for every
time step of the window; "standard" draws a fresh mask per time step, as torch's
stacked modules do. Weight drop (DropConnect
on the recurrent weights W_h, Wan et al. 2013; Merity et al. 2018's AWD-LSTM)
zeroes a share of W_h's entries, one mask per training step shared by every
stream and time step, so the recurrence itself cannot rely on any one
connection. It is what lets a wider model train for long on a small corpus
without overfitting.

The model maps ids (B, T) and a carried state to logits (B, T, V) and the new
state; it knows nothing of characters, losses or files.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from charlm.cells import REFERENCE_CELLS, MinRNN, TimeRNN, Weights, layers_step
from charlm.config import ModelConfig
from charlm.gru import gru_layer

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for the LSTM; each (layers, B, H)

_RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "rnn-relu": nn.RNN,
                "mingru": functools.partial(MinRNN, "mingru"), "minlstm": functools.partial(MinRNN, "minlstm")}
# torch's single-step kernels: one call per layer and time step, same maths as the fused modules
_CELL_STEPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell,
               "rnn-relu": torch.rnn_relu_cell, "mingru": REFERENCE_CELLS["mingru"],
               "minlstm": REFERENCE_CELLS["minlstm"]}


class StandardDropout(nn.Dropout):
    """nn.Dropout whose mask comes from ``torch.rand`` on CPU: x (…) → (…), same distribution.

    torch's CPU dropout draws its mask with ``bernoulli_``, several times slower
    than drawing as many uniforms, and a step applies dropout twice per layer
    stack, so the cheaper draw matters. On other devices this is nn.Dropout itself.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        keep = 1.0 - self.p
        return x.mul(torch.rand(x.shape, device=x.device) < keep).mul_(1.0 / keep)


class LockedDropout(nn.Dropout):
    """Dropout with one mask per sequence, shared by all its time steps: x (B, T, H) → (B, T, H).

    A unit dropped from a sequence stays dropped for the whole window, so the
    next layer cannot average the noise away over time; and drawing B × H
    random numbers instead of B × T × H makes it much cheaper on CPU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(keep).div_(keep)  # (B, 1, H)
        return x * mask


class RNNLM(nn.Module):
    """Recurrent language model over ``vocab_size`` tokens."""

    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        # embed_size 0 feeds one-hot vectors, as in the classic exercise (no embedding parameters).
        self.embedding = nn.Embedding(vocab_size, config.embed_size) if config.embed_size else None
        input_size = config.embed_size or vocab_size
        rnn_class = _RNN_CLASSES[config.cell]
        extra = {"nonlinearity": "relu"} if config.cell == "rnn-relu" else {}
        self.layers = nn.ModuleList(
            rnn_class(input_size if i == 0 else config.hidden_size, config.hidden_size, batch_first=True, **extra)
            for i in range(config.num_layers)
        )
        self.time_rnn = TimeRNN(config.cell)  # the reference path; no weights of its own
        dropout = LockedDropout if config.dropout_kind == "locked" else StandardDropout
        self.drop = dropout(config.dropout)
        self.weight_drop = StandardDropout(config.weight_drop)  # applied to W_h, not to activations
        self.decoder = nn.Linear(config.hidden_size, vocab_size)
        if config.tie_weights:
            # Press & Wolf (2017), "Using the Output Embedding to Improve Language Models".
            self.decoder.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        if self.config.cell == "lstm":
            # Forget-gate bias of 1 lets the cell remember by default early in training
            # (Gers et al. 2000; Jozefowicz et al. 2015). torch orders gates i, f, g, o and
            # adds bias_ih + bias_hh, so set one to 1 and the other to 0 over the f slice.
            hidden = self.config.hidden_size
            for _, _, b_ih, b_hh in self.layer_weights:
                nn.init.constant_(b_ih[hidden:2 * hidden], 1.0)
                nn.init.constant_(b_hh[hidden:2 * hidden], 0.0)

    @property
    def layer_weights(self) -> list[Weights]:
        """Each layer's [w_ih, w_hh, b_ih, b_hh], bottom layer first: the weights charlm.cells takes."""
        return [layer.all_weights[0] for layer in self.layers]

    def _forward_weights(self, layer: nn.RNNBase, drop_connect: bool) -> Weights:
        """The layer's [w_ih, w_hh, b_ih, b_hh] for one forward pass; with drop_connect, w_hh under a fresh mask."""
        w_ih, w_hh, b_ih, b_hh = layer.all_weights[0]
        return [w_ih, self.weight_drop(w_hh) if drop_connect else w_hh, b_ih, b_hh]

    def init_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """Zero state for ``batch_size`` streams."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros(shape, device=device)) if self.config.cell == "lstm" else h

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (…) int64 → input vectors (…, E), or one-hot (…, V) when embed_size is 0."""
        if self.embedding is not None:
            return self.embedding(ids)
        return F.one_hot(ids, self.vocab_size).float()

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (B, T) int64, state or None (zeros) → logits (B, T, V), new state."""
        x, state = self.encode(ids, state)  # (B, T, H)
        return self.decoder(x), state  # logits (B, T, V)

    def encode(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """ids (B, T) int64, state or None (zeros) → the top layer's outputs after dropout (B, T, H), new state:
        the model without its decoder (a text classifier reads these)."""
        x = self.embed(ids)  # (B, T, E)
        new = []
        drop_connect = self.training and self.config.weight_drop > 0
        for i, layer in enumerate(self.layers):
            s = None if state is None else layer_state(state, i)
            weights = self._forward_weights(layer, drop_connect)
            if self.config.impl == "reference":
                x, s = self.time_rnn(x, s, [weights])  # (B, T, H)
            elif self.config.cell == "gru" and x.device.type == "cpu" and torch.is_grad_enabled():
                x, s = gru_layer(layer, x, s, weights)  # (B, T, H); nn.GRU's function, faster to train on CPU
            elif isinstance(layer, MinRNN):
                x, s = layer(x, s, weights)  # (B, T, H): one product for the window's gates, then the scan
            elif drop_connect:  # the fused kernel on the dropped W_hh, gradients flowing back through the mask
                x, s = torch.func.functional_call(layer, {"weight_hh_l0": weights[1]}, (x, s))
            else:
                x, s = layer(x, s)  # (B, T, H)
            x = self.drop(x)
            new.append(s)
        return x, stack_layer_states(new)

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One time step for generation: ids (B,) int64, state → logits (B, V), new state.

        The same function as ``forward(ids[:, None], state)`` in eval mode (no dropout),
        computed one layer at a time with torch's single-step cell kernels (or the
        reference cells, with impl "reference"). For one token at a time the kernels
        are faster on CPU than the fused module, whose oneDNN path
        reorders its weights on every call.
        """
        x = self.embed(ids)  # (B, E)
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        cells = REFERENCE_CELLS if self.config.impl == "reference" else _CELL_STEPS
        h, state = layers_step(cells[self.config.cell], x, state, self.layer_weights)  # (B, H)
        return self.decoder(h), state  # (B, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def layer_state(state: State, layer: int) -> State:
    """One layer's slice of a stacked state, keeping the layer axis: (1, B, H), twice for the LSTM."""
    if isinstance(state, tuple):
        return tuple(s[layer:layer + 1] for s in state)
    return state[layer:layer + 1]


def stack_layer_states(states: list[State]) -> State:
    """Per-layer states, each (1, B, H), bottom first → the stacked state (layers, B, H)."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*states))
    return torch.cat(states)


def detach_state(state: State) -> State:
    """Cut the graph at a window boundary so backprop stops here (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
