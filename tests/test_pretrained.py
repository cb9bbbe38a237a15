"""The models shipped in checkpoints/: they load, their recorded figures reproduce, and their files match the
commands recorded in their configs. shakespeare-lstm first, then base (the default model)."""

import dataclasses
import json
import shlex

import click
import pytest
import torch

from charlm import checkpoint
from charlm.cli import cli
from charlm.config import LR_BY_CELL, ModelConfig, TrainConfig, resolve

RUN = checkpoint.shipped_runs()["shakespeare-lstm"]


def test_loads_and_is_small():
    ck = checkpoint.load("shakespeare-lstm")
    assert ck.run_dir == RUN
    assert sum(p.stat().st_size for p in RUN.iterdir()) < 8_000_000
    assert not (RUN / "last.safetensors").exists()  # weights only: no optimizer state shipped


def test_recorded_validation_figures_reproduce(invoke):
    recorded = checkpoint.load(RUN).weights
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


# ----- the base model (checkpoints/base): the one to fine-tune from ----------------------------------------

BASE = checkpoint.shipped_runs().get("base")
needs_base = pytest.mark.skipif(BASE is None, reason="base model not shipped")


def test_every_shipped_model_is_small_loads_and_ships_no_optimizer_state():
    for name, run in checkpoint.shipped_runs().items():
        assert sum(p.stat().st_size for p in run.iterdir()) < 25_000_000, name
        assert not (run / "last.safetensors").exists(), name
        assert checkpoint.load(name).run_dir == run


@needs_base
def test_the_base_model_loads_its_half_precision_weights_as_float32_and_reproduces_its_figures(invoke):
    ck = checkpoint.load("base")
    assert ck.weights["stored_as"] == "float16"
    assert all(p.dtype == torch.float32 for p in ck.model.parameters())
    shipped = ck.info["shipped"]
    # the rounding to float16 cost next to nothing on the run's own validation split
    assert shipped["val_split"]["stored_weights"]["loss"] == pytest.approx(
        shipped["val_split"]["float32_weights"]["loss"], abs=1e-3)
    assert ck.weights["val_loss"] == shipped["val_split"]["stored_weights"]["loss"]
    recorded = shipped["shipped_corpora"]["kolaw_constitution"]
    result = invoke("eval", "base", "--text", "corpora/kolaw_constitution.txt", "--unknown", "unk", "--json")
    assert result.exit_code == 0, result.output
    # bf16 autocast rounds a little differently from one CPU to another
    assert json.loads(result.stdout)["loss"] == pytest.approx(recorded["loss"], abs=0.01)


@needs_base
def test_the_base_model_was_trained_as_its_config_says():
    info = json.loads((BASE / "config.json").read_text())
    words = shlex.split(info["command"])
    assert words[:3] == ["charlm", "train", "corpora/base/train.txt"]
    ctx = cli.commands["train"].make_context("train", words[2:])
    assert str(ctx.params["out"]) == "runs/base"
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    settings = {f.name for config in (ModelConfig, TrainConfig) for f in dataclasses.fields(config)}
    model, train = resolve({name: ctx.params[name] for name in given & settings})
    assert ModelConfig.from_dict(info["model"]) == model
    recorded = TrainConfig.from_dict(info["train"])
    assert recorded == dataclasses.replace(train, precision=recorded.precision)
    assert recorded.time_budget <= 9000  # two and a half hours on two CPU cores
    assert info["corpus"]["inputs"] == ["corpora/base/train.txt"]  # where a clone builds it, not a machine's path
    assert info["shipped"]["command"].startswith("python scripts/ship_model.py runs/base checkpoints/base")


def test_the_base_corpus_leaves_out_the_plays_tinyshakespeare_is_cut_from():
    """tinyshakespeare stays an honest benchmark for a model fine-tuned from the base (bench/transfer.py also
    checks that no line of 35 or more characters is shared)."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "build_corpora.py"
    spec = importlib.util.spec_from_file_location("build_corpora", script)
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # its dataclasses look their module up
    spec.loader.exec_module(build)
    titles = {"richard_iii", "henry_vi_part_3", "richard_ii", "romeo_and_juliet", "coriolanus",
              "measure_for_measure", "winters_tale", "taming_of_the_shrew", "tempest"}
    assert build.TINYSHAKESPEARE_PLAYS == {f"{title}_gut.txt" for title in titles}


@needs_base
def test_sample_and_repl_default_to_the_base_model_in_english_and_korean(invoke):
    assert checkpoint.pretrained_dir() == BASE
    sample = invoke("sample", "-p", "HAMLET:", "-n", "20", "--seed", "1")
    assert sample.exit_code == 0, sample.output
    assert sample.stdout.startswith("HAMLET:") and len(sample.stdout) == len("HAMLET:") + 20 + 1
    repl = invoke("repl", input="To be, or not to b\n:quit\n")
    assert repl.exit_code == 0, repl.output
    first = repl.stdout.splitlines()[0]  # 'entropy 1.52 bits | e 0.742  u 0.061 …'
    assert first.startswith("entropy ") and first.split(" | ")[1].split()[0] == "e"  # "To be, or not to b" → e
    # Three jamo make one syllable; the base model puts 0.93 on the first of them, a margin
    # that survives another CPU's rounding (a near tie would make greedy output machine-dependent).
    korean = invoke("sample", "-p", "대한민", "-n", "3", "-t", "0")
    assert korean.exit_code == 0 and korean.stdout.strip() == "대한민국"
