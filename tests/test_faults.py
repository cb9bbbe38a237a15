"""Faults while writing: an unwritable output folder and a disk that fills up mid-run."""

import errno
import os

from charlm import checkpoint

from conftest import TINY_MODEL_ARGS


def test_unwritable_output_folder(invoke, tmp_path, tiny_corpus):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = invoke("train", str(tiny_corpus), "--out", str(blocker / "run"), "--max-steps", "2",
                                      *TINY_MODEL_ARGS)
    assert result.exit_code == 1
    assert "cannot create output folder" in result.stderr and "writable --out" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_disk_full_mid_run_keeps_the_previous_checkpoint(invoke, tmp_path, tiny_corpus, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_then_fill_up(fd):
        calls["n"] += 1
        if calls["n"] > 8:  # the first saves succeed, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_then_fill_up)
    result = invoke("train", str(tiny_corpus), "--out", str(out), "--max-steps", "200",
                                      *TINY_MODEL_ARGS)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr and "previous file is intact" in result.stderr
    assert "Traceback" not in result.output
    loaded = checkpoint.load(out)  # the last good checkpoint still loads and verifies
    assert loaded.weights["step"] > 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_metrics_that_cannot_be_written_stop_the_run_with_its_state_saved(invoke, tmp_path, tiny_corpus, monkeypatch):
    """metrics.jsonl is the first file a filling disk refuses (it is appended every few steps): the run
    warns, stops and saves, and resumes once there is room again."""
    out = tmp_path / "run"
    appends = {"n": 0}

    def open_then_refuse_appends(file, mode="r", *args, **kwargs):
        if "a" in mode:
            appends["n"] += 1
            if appends["n"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", open_then_refuse_appends, raising=False)
    result = invoke("train", str(tiny_corpus), "--out", str(out), "--max-steps", "200",
                                      *TINY_MODEL_ARGS)
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    assert "No space left on device" in result.stderr and "stopped by a failed write" in result.stderr
    assert "--resume" in result.stderr and "Traceback" not in result.output
    resumed = invoke("train", "--resume", str(out))
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint.load(out).weights["step"] > 0
