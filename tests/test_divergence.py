"""Bad steps are skipped, the learning rate drops, repeated trouble rolls back, and hopeless runs stop clearly."""

import json

import pytest
import torch

from charlm.config import ModelConfig, TrainConfig
from charlm.model import RNNLM
from charlm.train import EvalReport, EventReport, Trainer, TrainingDiverged

from conftest import TINY_MODEL_ARGS, TINY_TEXT, char_tokenizer


def make_trainer(**horizon):
    torch.manual_seed(0)
    tok = char_tokenizer(TINY_TEXT)
    ids = tok.encode(TINY_TEXT)
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=16, embed_size=8, dropout=0.0), tok.vocab_size)
    config = TrainConfig(batch_size=4, seq_len=16, lr=0.01, warmup_steps=0, eval_every=50,
                         **(horizon or {"max_steps": 120}))
    return Trainer(model, ids[:2400], ids[2400:], config, torch.device("cpu"))


def inject_nan(trainer, bad_calls, then=None):
    """Make the model's forward return NaN logits on the given training calls (1 = the first step),
    calling ``then()`` on each of those calls."""
    forward = trainer.model.forward
    calls = {"n": 0}

    def poisoned(ids, state=None):
        logits, state = forward(ids, state)
        if not trainer.model.training:  # evaluation passes are not counted
            return logits, state
        calls["n"] += 1
        if calls["n"] in bad_calls:
            logits = logits * float("nan")
            if then is not None:
                then()
        return logits, state

    trainer.model.forward = poisoned


def test_injected_nan_is_skipped_then_rolled_back():
    trainer = make_trainer()
    inject_nan(trainer, bad_calls={60, 105, 106, 107})
    reports = list(trainer.run())
    events = [r for r in reports if isinstance(r, EventReport)]
    assert [e.kind for e in events] == ["bad_step", "bad_step", "bad_step", "rollback"]
    p = trainer.progress
    assert p.done and p.step == 120 and p.rollbacks == 1 and p.bad_steps == 4
    assert p.lr_scale == pytest.approx(0.5 ** 4)
    assert all(torch.isfinite(t).all() for t in trainer.model.state_dict().values())


def test_persistent_nan_gives_up_with_a_clear_message():
    trainer = make_trainer()
    inject_nan(trainer, bad_calls=set(range(10, 10_000)))
    with pytest.raises(TrainingDiverged, match="lower --lr"):
        list(trainer.run())


def test_absurd_learning_rate_stops_with_one_line_and_logs_events(invoke, tmp_path, tiny_corpus):
    out = tmp_path / "run"
    result = invoke("train", str(tiny_corpus), "--out", str(out), "--max-steps", "300",
                                      *TINY_MODEL_ARGS, "--optimizer", "sgd", "--lr", "1e8", "--clip", "0",
                                      "--warmup", "0")
    assert result.exit_code == 1
    assert "training diverged" in result.stderr and "Traceback" not in result.output
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events if e["type"] == "event"]
    assert "bad_step" in kinds and "rollback" in kinds


def test_a_bad_last_step_still_ends_the_run_at_its_horizon():
    trainer = make_trainer(epochs=1.0)
    windows = trainer.steps_per_epoch
    inject_nan(trainer, bad_calls={windows})  # the epoch's last window
    list(trainer.run())
    p = trainer.progress
    assert p.done and p.stop_reason == "horizon" and p.bad_steps == 1
    assert (p.epoch, p.window, p.step) == (1, 0, windows - 1)  # no window of a second epoch


def test_a_stop_requested_during_a_bad_step_ends_after_it():
    trainer = make_trainer()
    inject_nan(trainer, bad_calls={30}, then=lambda: trainer.request_stop("SIGINT"))  # Ctrl-C during step 30
    list(trainer.run())
    p = trainer.progress
    assert not p.done and p.stop_reason == "SIGINT" and (p.step, p.bad_steps) == (29, 1)


# ----- drifting away: training and validation loss both rising ------------------------------------------------

from charlm.evaluate import EvalResult  # noqa: E402
from charlm.train import Progress, drift_message  # noqa: E402


def test_drift_needs_both_losses_up_from_the_best_and_warns_once():
    p = Progress(best_val_loss=1.60, best_step=4000, train_loss_at_best=1.54)
    assert drift_message(p, 1.66, 1.67, 3e-3) is None  # training up 0.12, validation only 0.07
    assert drift_message(p, 1.50, 1.80, 3e-3) is None  # validation up, training down: overfitting, not drift
    message = drift_message(p, 1.75, 1.76, 3e-3)
    assert "drifting" in message and "1.540 to 1.750" in message and "lower --lr (now 0.003)" in message
    p.drift_warned = True
    assert drift_message(p, 1.95, 1.96, 3e-3) is None


def test_a_drifting_run_reports_it_after_the_evaluation():
    trainer = make_trainer(max_steps=200)
    steps = trainer._train_step
    made = {"n": 0}

    def worse_and_worse(x, y, lr):  # the training loss climbs by 0.01 a step
        made["n"] += 1
        result = steps(x, y, lr)
        return None if result is None else (result[0] * 0 + 1.0 + 0.01 * made["n"], result[1])

    val = iter([2.0, 2.05, 2.5, 3.0])
    trainer._train_step = worse_and_worse
    trainer.evaluate = lambda: EvalResult(next(val), 1.0, 1.0, 100, 100, 0.0)
    reports = list(trainer.run())
    drift = [r for r in reports if isinstance(r, EventReport) and r.kind == "drift"]
    assert len(drift) == 1 and drift[0].step == 150  # step 100 was within DRIFT on validation (2.05 vs 2.0)
    assert isinstance(reports[reports.index(drift[0]) - 1], EvalReport)
