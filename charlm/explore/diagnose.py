"""Two measurements for the course's lesson on long-term dependencies: gradient flow and a memory probe.

Gradient flow. Backpropagation through time multiplies the gradient by one
Jacobian d h_t / d h_{t-1} per step. For a vanilla RNN that is
diag(tanh'(·)) W_h, and when its norm stays below 1 the gradient of a late
loss with respect to early states shrinks geometrically: the vanishing
gradient. The LSTM's cell state is a sum, c_t = f ⊙ c_{t-1} + i ⊙ g, so its
gradient is multiplied by the forget gate f instead (about σ(1) ≈ 0.73 at
initialisation, with charlm's forget bias of 1) and lasts longer; the GRU's
update gate does the same for h. ``gradient_flow`` measures
‖d loss_T / d h_t‖ for every t of a window, with the loss at the last
position only. It uses the reference cells' explicit time loop
(charlm.cells.TimeRNN): a fused kernel computes h_{t+1} from an internal copy
of h_t, so no tensor outside it carries the gradient with respect to h_t.

Memory probe. A synthetic stream in which a symbol must be remembered
across a gap: ``A`` then N filler characters then the query ``?``, after which
the answer is ``A`` again. Each cell type is trained briefly on each gap and
scored on fresh sequences; the loss and the accuracy count the answer only.
The whole sequence is one training window, so backpropagation spans the
gap; in ``charlm train`` the same dependency is learnable only when it fits
within --seq-len, because truncated BPTT cuts the gradient at window edges.

Nothing here prints; the command (charlm.cli.diagnose) renders the results.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from charlm.config import CELLS, MemoryConfig, ModelConfig
from charlm.errors import ConfigError
from charlm.model import RNNLM

# ----- gradient flow ----------------------------------------------------------------------------------------


@dataclass
class GradientFlow:
    """‖d loss_T / d h_{T-k}‖ for k = 0 … T-1 (k is the distance back from the loss), for one model."""

    name: str  # a run folder, or "fresh"
    cell: str
    num_layers: int
    hidden_size: int
    norms: list[float]  # norms[k], averaged over the windows

    @property
    def ratio(self) -> float:
        """How much of the gradient one step back is left at the far end of the window: norms[T-1] / norms[1]."""
        return self.norms[-1] / self.norms[1]

    @property
    def per_step(self) -> float:
        """The factor the norm shrinks by per step back, on average (geometric mean) from distance 1 to T-1."""
        return self.ratio ** (1 / max(len(self.norms) - 2, 1))

    def to_dict(self) -> dict:
        return {"name": self.name, "cell": self.cell, "num_layers": self.num_layers, "hidden_size": self.hidden_size,
                "ratio": self.ratio, "per_step": self.per_step, "norms": self.norms}


def parse_cells(spec: str) -> list[str]:
    """'rnn,lstm,gru' → ['rnn', 'lstm', 'gru'], each a known cell."""
    cells = [c.strip().lower() for c in spec.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise ConfigError(f"--cells {spec!r}: name cells from {', '.join(CELLS)}, comma-separated, e.g. --cells "
                          "rnn,lstm")
    return list(dict.fromkeys(cells))


def fresh_model(cell: str, vocab_size: int, hidden_size: int, num_layers: int, seed: int) -> RNNLM:
    """A freshly initialised model (torch's default init, charlm's forget bias), the same for the same seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RNNLM(ModelConfig(cell=cell, num_layers=num_layers, hidden_size=hidden_size, dropout=0.0), vocab_size)


def window_starts(n_tokens: int, length: int, windows: int) -> list[int]:
    """``windows`` evenly spaced starts of length+1 tokens (inputs and the target after them) in n_tokens."""
    room = n_tokens - (length + 1)
    if room < 0:
        raise ConfigError(f"the text has {n_tokens:,} tokens, fewer than --length {length} + 1: "
                          "pass a longer --text or a smaller --length")
    return [round(i * room / max(windows - 1, 1)) for i in range(windows)]


def gradient_norms(model: RNNLM, ids: torch.Tensor, length: int, windows: int) -> list[float]:
    """ids (N,) int64 → [‖d loss_T / d h_{T-k}‖ for k = 0 … length-1], the top layer's h, averaged over windows.

    Each window starts from a zero state and is scored on its last target only,
    loss_T = -log p(x_{T+1} | x_1 … x_T). The model is copied to float64: a
    vanilla RNN's gradient falls below what float32 can hold (about 1e-38)
    within a couple of hundred steps.
    """
    model = copy.deepcopy(model).to(torch.float64).eval()
    batch = torch.stack([ids[s:s + length + 1] for s in window_starts(len(ids), length, windows)])  # (W, T+1)
    x = model.embed(batch[:, :-1]).to(torch.float64)  # (W, T, E)
    hs = [h for h, _ in model.time_rnn.unroll(x, None, model.layer_weights)]  # T tensors (W, H)
    loss = F.cross_entropy(model.decoder(hs[-1]), batch[:, -1], reduction="sum")  # each window's own loss_T
    grads = torch.autograd.grad(loss, hs)  # d loss_T / d h_t, each (W, H)
    norms = torch.stack([g.norm(dim=1) for g in reversed(grads)], dim=1)  # (W, T): column k is distance k
    return norms.mean(dim=0).tolist()


def check_window(length: int, windows: int) -> None:
    """Refuse windows too short to have a near (k=1) and a far end, before any text is read."""
    if length < 3 or windows < 1:
        raise ConfigError(f"--length must be at least 3 and --windows at least 1, got {length} and {windows}")


def gradient_flow(models: list[tuple[str, RNNLM, torch.Tensor]], length: int, windows: int) -> list[GradientFlow]:
    """(name, model, ids (N,) in the model's vocabulary) for each model → its GradientFlow."""
    check_window(length, windows)
    return [GradientFlow(name, model.config.cell, model.config.num_layers, model.config.hidden_size,
                         gradient_norms(model, ids, length, windows)) for name, model, ids in models]


# ----- memory probe -----------------------------------------------------------------------------------------

SYMBOLS = "ABCD"  # what must be remembered: chance is 1 in 4
FILLERS = "abcdefgh"  # random filler characters in the gap
QUERY = "?"
VOCAB = SYMBOLS + FILLERS + QUERY  # id i is VOCAB[i]
TEST_SIZE = 500  # fresh sequences scored after training
PERFECT_BATCHES = 10  # training stops early after this many batches in a row without a wrong answer


@dataclass
class MemoryResult:
    cell: str
    gap: int
    accuracy: float | None  # on fresh sequences; None when not tried (a shorter gap failed)
    steps: int  # optimizer steps taken (fewer than asked when it learned the task early)
    seconds: float

    def to_dict(self) -> dict:
        accuracy = None if self.accuracy is None else round(self.accuracy, 4)
        return {"cell": self.cell, "gap": self.gap, "accuracy": accuracy, "steps": self.steps,
                "seconds": round(self.seconds, 3)}


def parse_gaps(spec: str) -> list[int]:
    """'2,5,10' → [2, 5, 10]: positive whole numbers, sorted."""
    try:
        gaps = sorted({int(g) for g in spec.split(",") if g.strip()})
    except ValueError:
        gaps = []
    if not gaps or gaps[0] < 1:
        raise ConfigError(f"--gaps {spec!r}: give positive whole numbers of filler characters, e.g. --gaps 2,5,10,20")
    return gaps


def memory_batch(gap: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences 'symbol, gap fillers, ?' (B, gap + 2) as ids into VOCAB, and the answers (B,): the symbols."""
    symbols = torch.randint(0, len(SYMBOLS), (batch_size,), generator=generator)  # (B,)
    fillers = torch.randint(len(SYMBOLS), len(SYMBOLS) + len(FILLERS), (batch_size, gap), generator=generator)
    query = torch.full((batch_size, 1), VOCAB.index(QUERY))
    return torch.cat([symbols[:, None], fillers, query], dim=1), symbols  # (B, gap + 2), (B,)


def example(gap: int, seed: int = 0) -> str:
    """One sequence and its answer, as text: e.g. 'Cfbha? → C' for gap 4."""
    x, y = memory_batch(gap, 1, torch.Generator().manual_seed(seed))
    return "".join(VOCAB[i] for i in x[0].tolist()) + " → " + VOCAB[int(y[0])]


def _answers(model: RNNLM, x: torch.Tensor) -> torch.Tensor:
    """x (B, T) → logits (B, V) for the token after the query, the only position scored."""
    logits, _ = model(x)  # (B, T, V)
    return logits[:, -1]


def train_memory(cell: str, gap: int, config: MemoryConfig) -> MemoryResult:
    """Train a one-layer model of ``cell`` on the task with this gap; score it on fresh sequences."""
    start = time.perf_counter()
    model_config = ModelConfig(cell=cell, num_layers=1, hidden_size=config.hidden_size, embed_size=0, dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RNNLM(model_config, len(VOCAB))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_data = torch.Generator().manual_seed(config.seed)
    perfect = 0  # consecutive batches answered without a mistake
    step = 0
    while step < config.steps and perfect < PERFECT_BATCHES:
        x, y = memory_batch(gap, config.batch_size, train_data)
        logits = _answers(model, x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        perfect = perfect + 1 if bool((logits.argmax(dim=1) == y).all()) else 0
    model.eval()
    x, y = memory_batch(gap, TEST_SIZE, torch.Generator().manual_seed(config.seed + 1))  # held out
    with torch.inference_mode():
        accuracy = (_answers(model, x).argmax(dim=1) == y).float().mean().item()
    return MemoryResult(cell, gap, accuracy, step, time.perf_counter() - start)


def memory_probe(cells: list[str], gaps: list[int], config: MemoryConfig) -> Iterator[MemoryResult]:
    """Yield a MemoryResult for every cell and gap (sorted), cell by cell, shortest gap first.

    Once a cell misses the threshold, its longer gaps are not trained (a failed
    run costs all its steps) and come back with accuracy None.
    """
    for cell in cells:
        failed = False
        for gap in gaps:
            if failed:
                yield MemoryResult(cell, gap, None, 0, 0.0)
                continue
            result = train_memory(cell, gap, config)
            failed = result.accuracy < config.threshold
            yield result


def largest_gap(results: list[MemoryResult], threshold: float) -> int:
    """The largest gap up to which every tried gap reached ``threshold`` (0 when the shortest did not)."""
    bridged = 0
    for r in sorted(results, key=lambda r: r.gap):
        if r.accuracy is None or r.accuracy < threshold:
            break
        bridged = r.gap
    return bridged
