"""What the hidden units do over a text: every layer's state after every token, and which units track
simple features of the text (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent
Networks").

torch's fused nn.LSTM / nn.GRU / nn.RNN returns the top layer's h for every
step, but every layer's state only for the last step, and the LSTM's cell
state c never per step. ``trace`` therefore runs the recurrence itself, layer
by layer and step by step, with the textbook equations on the module's own
weights (torch's gate order; the input projection of a whole layer is one
matrix product, only the recurrent part loops)::

    LSTM  i, f, g, o = split(x W_ih + b_ih + h W_hh + b_hh)
          c' = σ(f) c + σ(i) tanh(g)          h' = σ(o) tanh(c')
    GRU   r = σ(x_r + h_r)   z = σ(x_z + h_z)   n = tanh(x_n + r h_n)   h' = (1 - z) n + z h
          (x_* = x W_i* + b_i*, h_* = h W_h* + b_h*)
    RNN   h' = tanh(x W_ih + b_ih + h W_hh + b_hh)     (relu for rnn-relu)

tests/test_inspect.py checks the result against the fused module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from charlm.display import text_pieces
from charlm.errors import CharlmError
from charlm.model import RNNLM

# Each feature describes the state *after* reading a character.
FEATURES = {
    "in_quotes": 'inside double quotes (an odd number of " read so far)',
    "in_parens": "inside parentheses (more ( than ) read so far)",
    "line_position": "characters read since the last newline",
    "after_newline": "the character just read is a newline",
    "word_position": "characters read since the last space or newline",
    "is_upper": "the character just read is an upper-case letter",
}


@dataclass(frozen=True)
class Trace:
    """The state of every layer after every token."""

    tokens: list[str]  # (T,) each token's display text (tokenizer.token)
    pieces: list[str]  # (T,) the text each token completes (display.text_pieces); features are read from these
    h: torch.Tensor  # (L, T, H) hidden state after each token
    c: torch.Tensor | None  # (L, T, H) LSTM cell state after each token; None for GRU / RNN

    def states(self, kind: str) -> torch.Tensor:
        """'h' or 'c' → (L, T, H)."""
        if kind == "c" and self.c is None:
            raise CharlmError("this model has no cell state c (only an LSTM has one): use --state h")
        return self.h if kind == "h" else self.c


@dataclass(frozen=True)
class UnitScore:
    layer: int
    unit: int
    feature: str
    r: float  # Pearson correlation of the unit's activation with the feature over the text


# ----- the recurrence, step by step -------------------------------------------------------------------------


def _step(cell: str, xw: torch.Tensor, hw: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """One step of one layer: xw = x W_ih + b_ih (G*H,), hw = h W_hh + b_hh (G*H,) → new h (H,), c (H,) or None."""
    if cell == "lstm":
        i, f, g, o = (xw + hw).chunk(4)  # (H,) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        x_r, x_z, x_n = xw.chunk(3)
        h_r, h_z, h_n = hw.chunk(3)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h, None
    pre = xw + hw
    return (torch.relu(pre) if cell == "rnn-relu" else torch.tanh(pre)), None


@torch.inference_mode()
def trace(model: RNNLM, tokenizer, ids: np.ndarray) -> Trace:
    """ids (T,) → every layer's h (and LSTM c) after every token, from a zero state, dropout off."""
    cell = model.config.cell
    device = next(model.parameters()).device
    x_ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)  # (T,)
    x = model.embed(x_ids)  # (T, E)
    hidden = model.config.hidden_size
    hs, cs = [], []
    for w_ih, w_hh, b_ih, b_hh in model.layer_weights:  # (G*H, in), (G*H, H), (G*H,), (G*H,)
        xw = x @ w_ih.T + b_ih  # (T, G*H): the input part of every step at once
        h = torch.zeros(hidden, device=device)
        c = torch.zeros(hidden, device=device) if cell == "lstm" else None
        layer_h, layer_c = [], []
        for t in range(x.size(0)):
            h, c = _step(cell, xw[t], h @ w_hh.T + b_hh, h, c)
            layer_h.append(h)
            layer_c.append(c)
        hs.append(torch.stack(layer_h))  # (T, H)
        if c is not None:
            cs.append(torch.stack(layer_c))
        x = hs[-1]  # the next layer reads this one's h (dropout is off in eval)
    tokens = [tokenizer.token(int(i)) for i in ids]
    return Trace(tokens, text_pieces(tokenizer, ids), torch.stack(hs).cpu(), torch.stack(cs).cpu() if cs else None)


# ----- features and ranking ---------------------------------------------------------------------------------


def char_features(text: str) -> dict[str, np.ndarray]:
    """Each feature of FEATURES, per character of ``text``: name → (len(text),) float64."""
    chars = np.array(list(text)) if text else np.zeros(0, dtype="<U1")
    newline, space = chars == "\n", (chars == " ") | (chars == "\n")
    index = np.arange(len(text))
    last_newline = np.maximum.accumulate(np.where(newline, index, -1)) if len(text) else index
    last_space = np.maximum.accumulate(np.where(space, index, -1)) if len(text) else index
    return {
        "in_quotes": (np.cumsum(chars == '"') % 2).astype(float),
        "in_parens": (np.cumsum((chars == "(").astype(int) - (chars == ")")) > 0).astype(float),
        "line_position": (index - last_newline).astype(float) * ~newline,
        "after_newline": newline.astype(float),
        "word_position": (index - last_space).astype(float) * ~space,
        "is_upper": np.array([ch.isupper() for ch in text], dtype=float),
    }


def token_features(pieces: list[str]) -> dict[str, np.ndarray]:
    """Features per token from the text pieces the tokens complete: each token takes the value at the last
    character read so far (0 before any). name → (T,)."""
    ends = np.cumsum([len(p) for p in pieces]) - 1  # (T,) index of the last character read
    return {name: np.where(ends >= 0, values[np.maximum(ends, 0)] if len(values) else 0.0, 0.0)
            for name, values in char_features("".join(pieces)).items()}


def correlations(states: torch.Tensor, feature: np.ndarray) -> np.ndarray:
    """states (L, T, H), feature (T,) → (L, H) Pearson r of each unit with the feature (0 for a constant unit)."""
    a = states.double().numpy()
    a = a - a.mean(axis=1, keepdims=True)  # (L, T, H)
    f = feature - feature.mean()  # (T,)
    norms = np.sqrt((a ** 2).sum(axis=1)) * np.sqrt((f ** 2).sum())  # (L, H)
    cov = np.einsum("lth,t->lh", a, f)
    return np.divide(cov, norms, out=np.zeros_like(cov), where=norms > 1e-12)


def rank_units(trace: Trace, kind: str, feature: str, top: int) -> list[UnitScore]:
    """The ``top`` units whose ``kind`` ('h' or 'c') activation tracks ``feature`` best (largest |r|)."""
    if feature not in FEATURES:
        raise CharlmError(f"unknown feature {feature!r}: choose one of {', '.join(FEATURES)}")
    values = token_features(trace.pieces)[feature]
    if len(values) < 2 or values.std() == 0:
        raise CharlmError(f"feature {feature} does not vary over this text ('{FEATURES[feature]}' never changes): "
                          "pass a text where it does, or pick another --feature")
    r = correlations(trace.states(kind), values)  # (L, H)
    order = np.argsort(-np.abs(r), axis=None, kind="stable")[:top]
    return [UnitScore(int(i // r.shape[1]), int(i % r.shape[1]), feature, float(r.flat[i])) for i in order]


def varying_features(trace: Trace) -> list[str]:
    """The features that are not constant over the traced text (only those can be ranked)."""
    return [name for name, values in token_features(trace.pieces).items() if len(values) > 1 and values.std() > 0]


def best_feature(trace: Trace, kind: str, layer: int, unit: int) -> UnitScore | None:
    """The feature this unit tracks best (largest |r|), or None when no feature varies."""
    scores = []
    for name in varying_features(trace):
        r = correlations(trace.states(kind)[layer:layer + 1, :, unit:unit + 1], token_features(trace.pieces)[name])
        scores.append(UnitScore(layer, unit, name, float(r[0, 0])))
    return max(scores, key=lambda s: abs(s.r), default=None)


_UNIT = re.compile(r"^\s*(?:(\d+)\s*:)?\s*(\d+)\s*$")


def parse_units(spec: str, num_layers: int, hidden_size: int) -> list[tuple[int, int]]:
    """'42,1:7' → [(last layer, 42), (1, 7)]: UNIT or LAYER:UNIT, comma-separated, 0-based."""
    units = []
    for part in spec.split(","):
        match = _UNIT.match(part)
        if not match:
            raise CharlmError(f"cannot read unit {part.strip()!r}: write UNIT or LAYER:UNIT, e.g. --units 42,1:7")
        layer = int(match.group(1)) if match.group(1) is not None else num_layers - 1
        unit = int(match.group(2))
        if layer >= num_layers:
            layers = "only layer 0" if num_layers == 1 else f"layers 0–{num_layers - 1}"
            raise CharlmError(f"layer {layer} does not exist: the model has {layers}")
        if unit >= hidden_size:
            raise CharlmError(f"unit {unit} does not exist: each layer has units 0–{hidden_size - 1}")
        units.append((layer, unit))
    return units
