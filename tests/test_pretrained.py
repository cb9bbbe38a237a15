"""The pretrained model shipped in checkpoints/shakespeare-lstm: it loads, its recorded figures reproduce,
and its files match the command recorded in its config."""

import dataclasses
import json
import shlex

import click
import pytest

from charlm import checkpoint
from charlm.cli import cli
from charlm.config import LR_BY_CELL, ModelConfig, TrainConfig, resolve

RUN = checkpoint.pretrained_dir()
pytestmark = pytest.mark.skipif(not (RUN / "model.safetensors").exists(), reason="pretrained model not built")


def test_loads_and_is_small():
    ck = checkpoint.load(None)
    assert ck.run_dir == RUN
    assert sum(p.stat().st_size for p in RUN.iterdir()) < 8_000_000
    assert not (RUN / "last.safetensors").exists()  # weights only: no optimizer state shipped


def test_recorded_validation_figures_reproduce(invoke):
    recorded = checkpoint.load(None).weights
    result = invoke("eval", RUN, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["loss"] == pytest.approx(recorded["val_loss"], abs=1e-4)
    assert figures["bpc"] == pytest.approx(recorded["val_bpc"], abs=1e-4)


def test_files_match_the_recorded_command():
    """config.json's command, read by `charlm train` and resolved by the preset table, gives the recorded configs."""
    info = json.loads((RUN / "config.json").read_text())
    words = shlex.split(info["command"])
    assert words[:3] == ["charlm", "train", "shakespeare"]
    ctx = cli.commands["train"].make_context("train", words[2:])
    assert not ctx.params["out"].is_absolute()  # a folder a user's clone can have, not the trainer's machine's
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    settings = {f.name for config in (ModelConfig, TrainConfig) for f in dataclasses.fields(config)}
    model, train = resolve({name: ctx.params[name] for name in given & settings})
    assert ModelConfig.from_dict(info["model"]) == model == ModelConfig()  # trained with the default settings
    recorded = TrainConfig.from_dict(info["train"])
    assert recorded == dataclasses.replace(train, precision=recorded.precision)  # "auto" is recorded as decided
    assert recorded.lr == LR_BY_CELL[model.cell] and "lr" not in given  # the default learning rate for its cell
    assert recorded.max_steps == ctx.params["max_steps"]


def test_sample_and_repl_default_to_it(invoke):
    sample = invoke("sample", "-p", "HAMLET:", "-n", "20", "--seed", "1")
    assert sample.exit_code == 0, sample.output
    assert sample.stdout.startswith("HAMLET:") and len(sample.stdout) == len("HAMLET:") + 20 + 1
    repl = invoke("repl", input="To be, or not to b\n:quit\n")
    assert repl.exit_code == 0, repl.output
    first = repl.stdout.splitlines()[0]  # 'entropy 1.52 bits | e 0.742  u 0.061 …'
    assert first.startswith("entropy ") and first.split(" | ")[1].split()[0] == "e"  # "To be, or not to b" → e
