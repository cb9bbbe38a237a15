"""RNNLM: embedding (or one-hot) → nn.RNN / nn.LSTM / nn.GRU → dropout → linear decoder.

The recurrent layers are torch's fused modules (cuDNN / oneDNN kernels). For a
vanilla RNN layer that is the course-notes recurrence

    h_t = tanh(x_t W_x + h_{t-1} W_h + b)

and for the LSTM the gated version with i, f, g, o gates and a cell state c_t.
With ``ModelConfig.impl == "reference"`` the same weights run through
charlm.cells instead: those equations written out, over an explicit time loop
(slower, and the same function). The fused module owns the weights either way,
so parameter names and checkpoints do not depend on the implementation.
The model maps ids (B, T) and a carried state to logits (B, T, V) and the new
state; it knows nothing of characters, losses or files.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from charlm.cells import REFERENCE_CELLS, TimeRNN, layers_step
from charlm.config import ModelConfig

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, c) for the LSTM; each (layers, B, H)

_RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "rnn-relu": nn.RNN}
# torch's single-step kernels: one call per layer and time step, same maths as the fused modules
_CELL_STEPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell, "rnn-relu": torch.rnn_relu_cell}


class RNNLM(nn.Module):
    """Recurrent language model over ``vocab_size`` tokens."""

    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        # embed_size 0 feeds one-hot vectors, as in the classic exercise (no embedding parameters).
        self.embedding = nn.Embedding(vocab_size, config.embed_size) if config.embed_size else None
        input_size = config.embed_size or vocab_size
        extra = {"nonlinearity": "relu"} if config.cell == "rnn-relu" else {}
        self.rnn = _RNN_CLASSES[config.cell](
            input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        self.time_rnn = TimeRNN(config.cell, dropout=self.rnn.dropout)  # the reference path; no weights of its own
        self.drop = nn.Dropout(config.dropout)
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
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    nn.init.constant_(param[hidden:2 * hidden], 1.0)
                elif name.startswith("bias_hh"):
                    nn.init.constant_(param[hidden:2 * hidden], 0.0)

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
        x = self.embed(ids)  # (B, T, E)
        if self.config.impl == "reference":
            out, state = self.time_rnn(x, state, self.rnn.all_weights)  # (B, T, H)
        else:
            out, state = self.rnn(x, state)  # (B, T, H)
        logits = self.decoder(self.drop(out))  # (B, T, V)
        return logits, state

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One time step for generation: ids (B,) int64, state → logits (B, V), new state.

        The same function as ``forward(ids[:, None], state)`` in eval mode (no dropout),
        computed one layer at a time with torch's single-step cell kernels (or the
        reference cells, with impl "reference"). For one token at a time the kernels
        are several times faster on CPU than the fused module, whose oneDNN path
        reorders its weights on every call.
        """
        x = self.embed(ids)  # (B, E)
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        cells = REFERENCE_CELLS if self.config.impl == "reference" else _CELL_STEPS
        h, state = layers_step(cells[self.config.cell], x, state, self.rnn.all_weights)  # (B, H)
        return self.decoder(h), state  # (B, V)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    """Cut the graph at a window boundary so backprop stops here (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def select_state(state: State, rows: torch.Tensor | slice) -> State:
    """The state of some streams (batch rows), e.g. to continue one sample."""
    if isinstance(state, tuple):
        return tuple(s[:, rows] for s in state)
    return state[:, rows]
