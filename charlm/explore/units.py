"""What the hidden units do over a text: every layer's state after every token, and which units track
simple features of the text (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent
Networks").

torch's fused nn.LSTM / nn.GRU / nn.RNN returns the top layer's h for every
step, but every layer's state only for the last step, and the LSTM's cell
state c never per step. ``trace`` therefore runs the model's weights through
the reference cells' explicit time loop (cells.TimeRNN.unroll), which hands
over the state of every layer after every step. tests/test_inspect.py checks
the result against the fused module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from charlm.errors import CharlmError
from charlm.model import RNNLM
from charlm.tokenizers import Tokenizer
from charlm.tokenizers.text import text_pieces

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
    pieces: list[str]  # (T,) the text each token completes (tokenizers.text.text_pieces); features are read from these
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


@torch.inference_mode()
def trace(model: RNNLM, tokenizer: Tokenizer, ids: np.ndarray) -> Trace:
    """ids (T,) → every layer's h (and LSTM c) after every token, from a zero state, dropout off."""
    device = next(model.parameters()).device
    x = model.embed(torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device))[None]  # (1, T, E)
    hs, cs = [], []
    for _, state in model.time_rnn.unroll(x, None, model.layer_weights):  # state: (L, 1, H), or (h, c)
        h, c = state if isinstance(state, tuple) else (state, None)
        hs.append(h[:, 0])  # (L, H)
        if c is not None:
            cs.append(c[:, 0])
    tokens = [tokenizer.token(int(i)) for i in ids]
    h = torch.stack(hs, dim=1).cpu()  # (L, T, H)
    return Trace(tokens, text_pieces(tokenizer, ids), h, torch.stack(cs, dim=1).cpu() if cs else None)


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
