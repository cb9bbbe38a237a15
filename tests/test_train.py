import math
import time

import numpy as np
import pytest
import torch

from charlm.config import ModelConfig, SampleConfig, TrainConfig
from charlm.model import RNNLM
from charlm.sampling import generate
from charlm.train import EvalReport, StepReport, Trainer, lr_at

from conftest import TINY_TEXT, char_tokenizer


def train_tiny(cell: str, steps: int = 80, **model_kwargs):
    torch.manual_seed(0)
    tok = char_tokenizer(TINY_TEXT)
    ids = tok.encode(TINY_TEXT)
    split = int(len(ids) * 0.9)
    config = ModelConfig(**{"cell": cell, "num_layers": 1, "hidden_size": 24, "embed_size": 8, "dropout": 0.0,
                            **model_kwargs})
    model = RNNLM(config, tok.vocab_size)
    trainer = Trainer(model, ids[:split], ids[split:],
                      TrainConfig(batch_size=4, seq_len=16, lr=0.02, warmup_steps=5, max_steps=steps, eval_every=40),
                      torch.device("cpu"))
    reports = list(trainer.run())
    return trainer, reports


@pytest.mark.parametrize("cell", ["rnn", "rnn-relu", "lstm", "gru"])
def test_each_cell_learns(cell):
    trainer, reports = train_tiny(cell)
    steps = [r for r in reports if isinstance(r, StepReport)]
    evals = [r for r in reports if isinstance(r, EvalReport)]
    assert steps[-1].loss < steps[0].loss * 0.6
    assert evals[-1].final and evals[-1].result.loss < math.log(trainer.model.vocab_size) * 0.6
    assert trainer.progress.step == 80 and trainer.progress.done


def test_hihello_is_learned_exactly():
    """The classic exercise: one-hot input, learn h→i→h→e→l→l→o; greedy from 'h' gives 'ihello'."""
    torch.manual_seed(0)
    tok = char_tokenizer("hihello")
    ids = tok.encode("hihello")
    model = RNNLM(ModelConfig(cell="rnn", num_layers=1, hidden_size=8, embed_size=0, dropout=0.0), tok.vocab_size)
    trainer = Trainer(model, ids, None, TrainConfig(batch_size=1, seq_len=6, lr=0.05, warmup_steps=0, max_steps=150),
                      torch.device("cpu"))
    list(trainer.run())
    out = generate(model, torch.from_numpy(tok.encode("h").astype(np.int64)), 6, SampleConfig(temperature=0))
    assert tok.decode([int(step[0]) for step in out]) == "ihello"


def test_hidden_state_is_carried_and_detached():
    trainer, _ = train_tiny("lstm", steps=3)
    h, c = trainer.hidden
    assert not h.requires_grad and h.abs().sum() > 0  # carried from the last window, cut from its graph


def test_lr_schedule_warms_up_then_decays_to_floor():
    config = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1, max_steps=100)
    assert lr_at(0.0, 0, config) == pytest.approx(0.1)
    assert lr_at(0.1, 10, config) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.1)))
    assert lr_at(1.0, 100, config) == pytest.approx(0.1)


def test_time_budget_stops_the_run():
    tok = char_tokenizer(TINY_TEXT)
    ids = tok.encode(TINY_TEXT)
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=16, embed_size=8), tok.vocab_size)
    trainer = Trainer(model, ids[:2000], ids[2000:], TrainConfig(batch_size=4, seq_len=16, time_budget=1.0),
                      torch.device("cpu"))
    reports = list(trainer.run())
    p = trainer.progress
    assert p.done and p.stop_reason == "horizon"
    # the clock stopped it (the only limit), once the time trained and a reserve for the final evaluation (an
    # estimate from the training speed, as no evaluation came before) reached the budget: most of it was used
    assert p.step > 0 and p.elapsed >= 0.5
    assert isinstance(reports[-1], EvalReport) and reports[-1].final


def test_a_slow_first_step_does_not_end_a_time_budget(monkeypatch):
    """With --compile the first step includes the compilation; the evaluation reserve must not be
    estimated from it (that once made a 60 s run stop after one step)."""
    tok = char_tokenizer(TINY_TEXT)
    ids = tok.encode(TINY_TEXT)
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=16, embed_size=8), tok.vocab_size)
    trainer = Trainer(model, ids[:2000], ids[2000:], TrainConfig(batch_size=4, seq_len=16, time_budget=2.0),
                      torch.device("cpu"))
    real_step, calls = trainer._train_step, []

    def first_step_slow(*args):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)  # as if compiling: half the budget
        return real_step(*args)

    monkeypatch.setattr(trainer, "_train_step", first_step_slow)
    list(trainer.run())
    assert trainer.progress.stop_reason == "horizon"
    assert trainer.progress.step > 20


def test_nonfinite_loss_skips_step_and_lowers_lr():
    trainer, _ = train_tiny("lstm", steps=2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with torch.no_grad():
        trainer.model.decoder.bias.fill_(float("nan"))
    x, y = trainer._batches(0).window(0)
    assert trainer._train_step(x, y, 0.01) is None
    event = trainer._on_bad_step()
    assert event.kind == "bad_step" and trainer.progress.lr_scale == 0.5
    assert torch.equal(trainer.model.layers[0].weight_hh_l0, before["layers.0.weight_hh_l0"])  # no update applied


# ----- threads on a busy machine ---------------------------------------------------------------------------



def test_the_step_rate_leaves_out_evaluations():
    """A report right after an evaluation must not divide the tokens of ten steps by the time of one."""
    torch.manual_seed(0)
    tok = char_tokenizer(TINY_TEXT)
    ids = tok.encode(TINY_TEXT)
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=16, embed_size=8, dropout=0.0), tok.vocab_size)
    trainer = Trainer(model, ids[:2400], ids[2400:],
                      TrainConfig(batch_size=4, seq_len=16, lr=0.01, warmup_steps=0, max_steps=60, eval_every=19),
                      torch.device("cpu"))
    rates = {r.step: r.tokens_per_s for r in trainer.run() if isinstance(r, StepReport)}
    steady = max(rates[10], rates[30], rates[50])  # reports with no evaluation since the one before
    assert rates[20] < 3 * steady and rates[40] < 3 * steady  # evaluations at steps 19 and 38


