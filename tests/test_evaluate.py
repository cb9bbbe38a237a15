import numpy as np
import pytest
import torch

from charlm.config import ModelConfig
from charlm.errors import ConfigError
from charlm.evaluate import default_dynamic_lr, evaluate, evaluate_dynamic, evaluate_steps
from charlm.model import RNNLM


def run_to_end(steps):
    return reports_and_result(steps)[1]


def reports_and_result(steps):
    """Every progress report a pass yields, and the result it returns."""
    reports = []
    while True:
        try:
            reports.append(next(steps))
        except StopIteration as stop:
            return reports, stop.value


def tiny_model(cell: str = "lstm") -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(ModelConfig(cell=cell, num_layers=1, hidden_size=24, embed_size=8, dropout=0.0), 12)


def repeating_ids(n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(0)
    phrase = rng.integers(0, 12, 20)  # a phrase the untrained model cannot know
    return np.tile(phrase, n // 20).astype(np.int64)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dynamic_evaluation_learns_a_text_that_repeats_itself(cell):
    model = tiny_model(cell)
    ids = repeating_ids()
    static = evaluate(model, ids, batch_size=1)
    dynamic = run_to_end(evaluate_dynamic(model, ids, lr=3e-2, segment=16))
    assert dynamic.tokens == static.tokens == len(ids) - 1
    assert dynamic.loss < static.loss - 1.0  # the phrase is learnt after a few repetitions


def test_every_token_is_scored_before_the_model_learns_from_it():
    """With one segment covering the whole text, no update can come before a prediction: the static loss."""
    model = tiny_model()
    ids = repeating_ids(200)
    static = evaluate(model, ids, batch_size=1)
    one_segment = run_to_end(evaluate_dynamic(model, ids, lr=1e-1, segment=len(ids)))
    assert one_segment.loss == pytest.approx(static.loss, abs=1e-5)
    # with short segments the later ones are scored by an adapted model, so the loss differs
    assert run_to_end(evaluate_dynamic(model, ids, lr=1e-1, segment=16)).loss < static.loss


def test_dynamic_evaluation_leaves_the_model_unchanged():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_to_end(evaluate_dynamic(model, repeating_ids(), lr=1e-2))
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_progress_reports_count_up_to_the_total_and_bpc_uses_the_characters():
    model = tiny_model()
    ids = repeating_ids(600)
    reports, result = reports_and_result(evaluate_dynamic(model, ids, lr=1e-2, n_chars=1198, segment=16,
                                                          report_every=4))
    assert [r.tokens for r in reports] == [*range(64, 599, 64), 599]  # the last report says it is done
    assert all(r.total == 599 for r in reports)
    assert result.characters == 1198
    assert result.bpc == pytest.approx(result.loss * 599 / 1198 / np.log(2))


def test_a_learning_rate_that_blows_the_weights_up_is_named():
    with pytest.raises(ConfigError, match="lower --dynamic-lr"):
        run_to_end(evaluate_dynamic(tiny_model(), repeating_ids(), lr=1e38))  # weights overflow to inf


def test_default_rate_is_a_tenth_of_the_cells_training_rate():
    assert default_dynamic_lr("lstm") == pytest.approx(1e-3)
    assert default_dynamic_lr("gru") == pytest.approx(3e-4)


def test_the_model_learns_in_training_mode_with_dropout_off():
    """cuDNN's RNN backward refuses modules in eval mode, so the recurrent layers train; the dropout must not."""
    model = tiny_model()
    model.drop.p = 0.5
    seen = []
    model.layers[0].register_forward_hook(lambda module, args, out: seen.append(module.training))
    model.drop.register_forward_hook(lambda module, args, out: seen.append(("drop", module.training)))
    ids = repeating_ids(100)
    result = run_to_end(evaluate_dynamic(model, ids, lr=1e-12, segment=len(ids)))
    assert seen == [True, ("drop", False)]
    assert result.loss == pytest.approx(evaluate(model, ids, batch_size=1).loss, abs=1e-5)  # no dropout noise


def test_the_static_pass_reports_its_progress_and_ends_with_the_same_figures():
    model = tiny_model()
    ids = repeating_ids(20_000)
    reports, result = reports_and_result(evaluate_steps(model, ids, batch_size=4, seq_len=256, report_every=2))
    tokens = [r.tokens for r in reports]
    assert len(reports) > 2 and tokens == sorted(tokens) and tokens[-1] == reports[-1].total == len(ids) - 1
    assert reports[-1].loss == pytest.approx(result.loss)
    assert result.loss == pytest.approx(evaluate(model, ids, batch_size=4).loss, abs=1e-6)
    assert model.training  # left in the mode it came in
