"""Exact resume after a real crash: SIGKILL a training subprocess, resume it, compare with an uninterrupted run.

The comparison is bit-identical on CPU with --deterministic (which turns off
torch's multi-threaded oneDNN RNN kernels: with them, even two uninterrupted runs
in two processes differ in the last bits): every tensor of the final training
state, and the final validation loss, must be equal.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

ARGS = ["--max-steps", "400", "--save-every", "40", "--eval-every", "100", "--hidden", "48", "--embed", "16",
        "--layers", "2", "--batch-size", "8", "--seq-len", "32", "--dropout", "0.1", "--lr", "0.005",
        "--deterministic"]


def charlm(*args):
    return [sys.executable, "-m", "charlm", *map(str, args)]


def wait_for_state(run_dir, proc, min_step):
    """Wait until the run has saved resumable state at or after ``min_step``; False if it ended first."""
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        metrics = run_dir / "metrics.jsonl"
        if (run_dir / "last.safetensors").exists() and metrics.exists():
            steps = [json.loads(line).get("step", 0) for line in metrics.read_text().splitlines() if line.strip()]
            if steps and max(steps) >= min_step:
                return True
        time.sleep(0.01)
    return False


def final_val_loss(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["type"] == "val"][-1]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, corpus):
    straight = tmp_path / "straight"
    subprocess.run(charlm("train", corpus, "--out", straight, *ARGS), check=True, capture_output=True)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(charlm("train", corpus, "--out", crashed, *ARGS),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_state(crashed, proc, min_step=80):
        proc.kill()
        pytest.fail("the run finished before it could be killed: make it longer")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL

    resumed = subprocess.run(charlm("train", "--resume", crashed), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    a, b = load_file(straight / "last.safetensors"), load_file(crashed / "last.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), f"{name} differs after resume"
    assert final_val_loss(straight) == final_val_loss(crashed)
    steps = [json.loads(line)["step"] for line in (crashed / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["type"] == "val"]
    assert steps == sorted(set(steps)), "replayed steps must not be logged twice"


def test_sigterm_saves_and_says_how_to_resume(tmp_path, corpus):
    run = tmp_path / "run"
    proc = subprocess.Popen(charlm("train", corpus, "--out", run, *ARGS), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if not wait_for_state(run, proc, min_step=40):
        proc.kill()
        pytest.fail("the run finished before it could be stopped")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"charlm train --resume {run}" in err
    assert "Traceback" not in err
    resumed = subprocess.run(charlm("train", "--resume", run), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
