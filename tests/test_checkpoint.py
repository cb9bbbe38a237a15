import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from charlm import checkpoint
from charlm.errors import CheckpointError

from conftest import TINY_MODEL_ARGS, stop_training_at


def test_load_gives_identical_outputs(trained_run):
    ck1 = checkpoint.load(trained_run)
    ck2 = checkpoint.load(trained_run)
    ids = torch.from_numpy(ck1.tokenizer.encode("the cat sat").astype("int64")).unsqueeze(0)
    ck1.model.eval(), ck2.model.eval()
    torch.testing.assert_close(ck1.model(ids)[0], ck2.model(ids)[0], rtol=0, atol=0)
    assert ck1.weights["step"] > 0 and ck1.weights["val_loss"] > 0
    assert ck1.info["command"].startswith("charlm train")


def copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_truncated_weights_are_refused(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupted"):
        checkpoint.load(run)


def test_flipped_byte_fails_the_content_hash(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (run / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        checkpoint.load(run)


def test_malicious_pickle_is_refused_without_running_it(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (run / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    torch.save({"x": Exploit()}, run / "last.safetensors")
    with pytest.raises(CheckpointError):
        checkpoint.load(run)
    with pytest.raises(CheckpointError):
        checkpoint.load_training_state(run, checkpoint.load(trained_run).model)
    assert not marker.exists()


def test_edited_config_and_newer_format_are_named(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    info = json.loads((run / "config.json").read_text())
    info["format_version"] = 99
    (run / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="upgrade charlm"):
        checkpoint.load(run)
    info["format_version"] = 1
    info["model"]["hidden_size"] = 999
    (run / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="different runs"):
        checkpoint.load(run)
    (run / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load(run)


def test_mismatched_tokenizer_is_named(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    (run / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": "abc"}))
    with pytest.raises(CheckpointError, match="tokenizer|does not match"):
        checkpoint.load(run)
    (run / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.load(run)


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    checkpoint.atomic_write(target, b"old contents")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous file is intact"):
        checkpoint.atomic_write(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_metrics_lines_that_cannot_be_read_are_skipped(tmp_path):
    good = [{"type": "train", "step": 1, "loss": 2.0}, {"type": "val", "step": 1, "loss": 2.1}]
    data = [json.dumps(good[0]).encode(), b"\xff\xfe not UTF-8 \xc3", b"[1, 2]", json.dumps(good[1]).encode(),
            b'{"type": "train", "st']  # a line that is not a record, and a torn last line
    (tmp_path / checkpoint.METRICS_FILE).write_bytes(b"\n".join(data))
    assert checkpoint.read_metrics(tmp_path) == good


def test_a_run_with_unreadable_metrics_resumes(invoke, tiny_corpus, tmp_path, monkeypatch):
    stop_training_at(monkeypatch, 20)
    run = tmp_path / "run"
    args = ["train", str(tiny_corpus), "--out", str(run), "--max-steps", "30", *TINY_MODEL_ARGS]
    assert invoke(*args).exit_code == 130
    monkeypatch.undo()
    (run / checkpoint.METRICS_FILE).write_bytes(bytes(range(256)) * 2)  # e.g. head -c 500 /dev/urandom
    result = invoke("train", "--resume", str(run))
    assert result.exit_code == 0, result.output
    assert checkpoint.load(run, weights=checkpoint.LAST_FILE).weights["step"] == 30


def _as_format_1(run: Path) -> None:
    """Rewrite a run as charlm wrote it before one module per layer: stacked names, no dropout_kind."""
    def old_name(name):
        return re.sub(r"layers\.(\d+)\.(weight|bias)_(ih|hh)_l0", r"rnn.\2_\3_l\1", name)

    for file in (checkpoint.MODEL_FILE, checkpoint.LAST_FILE):
        tensors, metadata = checkpoint._read_safetensors(run / file, "weights")
        tensors = {old_name(k): v for k, v in tensors.items()}
        metadata = {**metadata, "format_version": "1", "weights_sha256": checkpoint.tensors_sha256(tensors)}
        checkpoint._write_safetensors(run / file, tensors, metadata)
    info = json.loads((run / "config.json").read_text())
    info["format_version"] = 1
    del info["model"]["dropout_kind"]
    (run / "config.json").write_text(json.dumps(info))


def test_a_format_1_run_loads_the_same_weights(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    _as_format_1(run)
    assert any(k.startswith("rnn.") for k in checkpoint._read_safetensors(run / checkpoint.MODEL_FILE, "")[0])
    old, new = checkpoint.load(run), checkpoint.load(trained_run)
    assert old.model_config.dropout_kind == "standard"  # what it was trained with
    for (name, a), b in zip(old.model.state_dict().items(), new.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_an_interrupted_format_1_run_resumes(invoke, tiny_corpus, tmp_path, monkeypatch):
    stop_training_at(monkeypatch, 20)
    run = tmp_path / "run"
    args = ["train", str(tiny_corpus), "--out", str(run), "--max-steps", "40", *TINY_MODEL_ARGS, "--layers", "2"]
    assert invoke(*args).exit_code == 130
    monkeypatch.undo()
    _as_format_1(run)
    result = invoke("train", "--resume", str(run))
    assert result.exit_code == 0, result.output  # the optimizer moments fit the renamed weights
    assert checkpoint.load(run, weights=checkpoint.LAST_FILE).weights["step"] == 40


def test_a_missing_run_names_the_closest_one_and_shipped_models_load_by_name(fails, ok, trained_run, tmp_path,
                                                                             monkeypatch):
    typo = trained_run.parent / "rnu"
    fails("sample", typo, message=f"checkpoint {typo} does not exist: pass a run folder (charlm train or charlm "
                                  f"classify train makes one); did you mean {trained_run}?")
    fails("eval", tmp_path / "nothing-like-it", message="the shipped models are base, shakespeare-lstm")
    monkeypatch.chdir(tmp_path)  # a folder without checkpoints/: the shipped model is still found by its name
    assert ok("sample", "shakespeare-lstm", "-p", "KING", "-n", "5", "--seed", "1").stdout.startswith("KING")
    assert checkpoint.find_run("checkpoints/shakespeare-lstm") == checkpoint.shipped_runs()["shakespeare-lstm"]
