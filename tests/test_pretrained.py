"""The pretrained model shipped in checkpoints/shakespeare-lstm: it loads, its recorded figures reproduce,
and its files match the command recorded in its config."""

import json
import shlex

import pytest
from click.testing import CliRunner

from charlm import checkpoint
from charlm.cli import cli
from charlm.config import DEFAULT_LR, ModelConfig, TrainConfig, budget_preset

RUN = checkpoint.pretrained_dir()
pytestmark = pytest.mark.skipif(not (RUN / "model.safetensors").exists(), reason="pretrained model not built")


def test_loads_and_is_small():
    ck = checkpoint.load(None)
    assert ck.run_dir == RUN
    assert sum(p.stat().st_size for p in RUN.iterdir()) < 8_000_000
    assert not (RUN / "last.safetensors").exists()  # weights only: no optimizer state shipped


def test_recorded_validation_figures_reproduce():
    recorded = checkpoint.load(None).weights
    result = CliRunner().invoke(cli, ["eval", str(RUN), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["loss"] == pytest.approx(recorded["val_loss"], abs=1e-4)
    assert figures["bpc"] == pytest.approx(recorded["val_bpc"], abs=1e-4)


def test_files_match_the_recorded_command():
    info = json.loads((RUN / "config.json").read_text())
    words = shlex.split(info["command"])
    assert words[:3] == ["charlm", "train", "shakespeare"]
    ctx = cli.commands["train"].make_context("train", words[2:])
    params = ctx.params
    model = ModelConfig.from_dict(info["model"])
    preset = budget_preset(params["time_budget"])  # cell, width, dropouts and weight decay were left to the budget
    assert params["cell"] is None and params["dropout"] is None and params["time_budget"] is None
    assert params["weight_drop"] is None
    assert params["hidden_size"] is None
    assert params["weight_decay"] is None and TrainConfig.from_dict(info["train"]).weight_decay == preset["weight_decay"]
    assert model == ModelConfig(cell=preset["cell"], num_layers=params["num_layers"], hidden_size=preset["hidden_size"],
                                embed_size=params["embed_size"], dropout=preset["dropout"], weight_drop=preset["weight_drop"],
                                dropout_kind=params["dropout_kind"], tie_weights=params["tie_weights"])
    assert model == ModelConfig()  # trained with the default settings
    train = TrainConfig.from_dict(info["train"])
    defaults = TrainConfig()
    for name in ("batch_size", "seq_len", "optimizer", "min_lr_ratio", "warmup_steps", "grad_clip", "eval_every",
                 "seed", "val_fraction"):
        assert getattr(train, name) == getattr(defaults, name) == params.get(name, getattr(defaults, name)), name
    assert params["lr"] is None and train.lr == DEFAULT_LR[model.cell]  # the default learning rate for its cell
    assert train.max_steps == params["max_steps"]


def test_sample_and_repl_default_to_it():
    sample = CliRunner().invoke(cli, ["sample", "-p", "HAMLET:", "-n", "20", "--seed", "1"])
    assert sample.exit_code == 0, sample.output
    assert sample.stdout.startswith("HAMLET:") and len(sample.stdout) == len("HAMLET:") + 20 + 1
    repl = CliRunner().invoke(cli, ["repl"], input="To be, or not to b\n:quit\n")
    assert repl.exit_code == 0, repl.output
    assert "e" in repl.stdout.splitlines()[0]
