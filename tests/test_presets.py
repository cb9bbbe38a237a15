"""The one preset table (charlm.config): how resolve() fills in what a user leaves out, and the docs that show it."""

from pathlib import Path

import pytest

from charlm import config
from charlm.config import BUDGET_PRESETS, LR_BY_CELL, UNBUDGETED, ModelConfig, TrainConfig, resolve

ROOT = Path(__file__).resolve().parent.parent


def preset_table() -> str:
    """The presets as the markdown table docs/performance.md and the README show."""
    def runs(row):
        return "--epochs or --max-steps only" if row is UNBUDGETED else f"--time-budget {row.applies}"

    lines = ["| runs | cell | hidden | dropout | weight drop | weight decay | peak lr |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {runs(r)} | {r.cell} | {r.hidden_size} | {r.dropout:g} | {r.weight_drop:g} | {r.weight_decay:g} | "
              f"{LR_BY_CELL[r.cell]:g} |" for r in (*BUDGET_PRESETS, UNBUDGETED)]
    return "\n".join(lines)


@pytest.mark.parametrize("doc", ["docs/performance.md", "README.md"])
def test_the_docs_show_the_table_the_code_reads(doc):
    assert preset_table() in (ROOT / doc).read_text(encoding="utf-8"), f"{doc}: paste the table from preset_table()"


@pytest.mark.parametrize("budget, row", [(60.0, 0), (120.0, 0), (120.5, 1), (600.0, 1), (601.0, 2), (86_400.0, 2)])
def test_a_budget_takes_the_first_row_that_holds_it(budget, row):
    model, train = resolve({"time_budget": budget})
    preset = BUDGET_PRESETS[row]
    assert (model.cell, model.hidden_size, model.dropout, model.weight_drop) == (
        preset.cell, preset.hidden_size, preset.dropout, preset.weight_drop)
    assert train.weight_decay == preset.weight_decay and train.lr == LR_BY_CELL[preset.cell]
    assert train.time_budget == budget


def test_no_limit_means_the_default_budget_and_steps_alone_mean_the_unbudgeted_row():
    model, train = resolve({})
    assert train.time_budget == config.DEFAULT_TIME_BUDGET and model.cell == config.preset_for(300.0).cell
    model, train = resolve({"max_steps": 10})
    assert train.time_budget is None and model == ModelConfig() and train == TrainConfig(max_steps=10)
    assert (model.cell, model.hidden_size, train.weight_decay) == (UNBUDGETED.cell, UNBUDGETED.hidden_size,
                                                                   UNBUDGETED.weight_decay)


def test_what_the_user_gives_wins_and_the_rate_follows_the_cell():
    model, train = resolve({"time_budget": 60.0, "cell": "gru", "dropout": 0.3})
    assert model.cell == "gru" and model.dropout == 0.3 and train.lr == LR_BY_CELL["gru"]
    assert model.hidden_size == BUDGET_PRESETS[0].hidden_size  # the rest of the row stays
    assert resolve({"time_budget": 60.0, "lr": 0.5})[1].lr == 0.5
    model, _ = resolve({"time_budget": 300.0, "tie_weights": True, "embed_size": 32})
    assert model.hidden_size == 32 and model.tie_weights  # the one width that tied weights allow


def test_help_says_what_the_table_says(invoke):
    text = " ".join(invoke("train", "--help").stdout.split())
    for name in config.PRESET_FIELDS:
        assert " ".join(config.preset_help(name).split()) in text, name


def test_a_fine_tuning_run_takes_the_fine_tuning_row_and_a_classifier_its_parents_dropout():
    parent = (ModelConfig(cell="lstm", hidden_size=48, dropout=0.2, weight_drop=0.2),
              TrainConfig(lr=5e-3, batch_size=64, seq_len=96, weight_decay=0.2))
    model, train = resolve({"time_budget": 60.0, "hidden_size": 999}, parent)  # the architecture is the parent's
    assert (model.cell, model.hidden_size, train.batch_size, train.seq_len, train.weight_decay) == (
        "lstm", 48, 64, 96, 0.2)
    assert (model.dropout, model.weight_drop) == (config.FINE_TUNE.dropout, config.FINE_TUNE.weight_drop)
    assert train.lr == pytest.approx(5e-3 * config.FINE_TUNE.lr_fraction)
    assert train.warmup_steps == config.FINE_TUNE.warmup_steps
    assert resolve({"time_budget": 60.0, "dropout": 0.3}, parent)[0].dropout == 0.3  # what the user gives wins
    encoder, _ = config.resolve_classifier({"time_budget": 60.0}, parent)
    assert (encoder.dropout, encoder.weight_drop) == (0.2, 0.2)
