import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from charlm import checkpoint
from charlm.errors import CheckpointError


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
