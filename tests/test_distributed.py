"""Distributed training with torchrun and the gloo backend: 2 processes on this machine, loopback only.

The equivalence test compares one process with batch B against two processes with
B/2 streams each: DDP averages the two half-batch gradients, which is the
full-batch gradient, so the loss curves and weights agree to float rounding (the
all-reduce adds in a different order than one process's reduction does).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_resume import wait_for_state

from charlm.batching import TBPTTBatches
from charlm.config import ModelConfig, TrainConfig
from charlm.distributed import World
from charlm.errors import ConfigError
from charlm.model import RNNLM
from charlm.train import Trainer

ARGS = ["--hidden", "32", "--embed", "8", "--layers", "2", "--batch-size", "8", "--seq-len", "16",
        "--eval-every", "10", "--dropout", "0", "--lr", "0.01", "--warmup", "5", "--deterministic",
        "--precision", "fp32",  # bf16 rounding would depend on how the batch is split
        "--device", "cpu"]  # gloo on CPU, also on a machine with one GPU (two ranks cannot share it)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def charlm(*args):
    return [sys.executable, "-m", "charlm", *map(str, args)]


def torchrun(*args, processes=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "charlm", *map(str, args)]


def records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def kill_processes_naming(path):
    """SIGKILL every process whose command line holds ``path``."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_two_processes_with_half_batches_match_one_process(tmp_path, corpus):
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run(charlm("train", corpus, "--out", single, "--max-steps", 30, *ARGS), check=True,
                   capture_output=True, env=ENV)
    done = subprocess.run(torchrun("train", corpus, "--out", double, "--max-steps", 30, *ARGS),
                          capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("training finished") == 1  # only rank 0 prints

    one, two = records(single, "train"), records(double, "train")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 10, 20, 30]  # rank 0 alone logs
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    for a, b in zip(records(single, "val"), records(double, "val")):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    w1, w2 = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5)


def test_crashed_distributed_run_resumes_every_rank(tmp_path, corpus):
    """SIGKILL the whole torchrun job mid-run, resume it with torchrun: the same result as a run never
    interrupted (each rank's block of the hidden state and its position come back from last.safetensors)."""
    args = ["--max-steps", 400, "--save-every", 40, *ARGS]
    straight = tmp_path / "straight"
    subprocess.run(torchrun("train", corpus, "--out", straight, *args), check=True, capture_output=True, env=ENV)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(torchrun("train", corpus, "--out", crashed, *args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_for_state(crashed, proc, min_step=80)
    finally:
        kill_processes_naming(crashed)  # torchrun and both workers (torchrun starts them in their own sessions)
        proc.wait()
    if max(r["step"] for r in records(crashed, "train")) >= 400:
        pytest.skip("the run finished before it could be killed (machine too fast for this test's timing)")
    saved = load_file(crashed / "last.safetensors")
    assert saved["hidden.0"].shape == (2, 8, 32)  # all B = 8 streams, gathered from both ranks

    resumed = subprocess.run(torchrun("train", "--resume", crashed, "--device", "cpu"), capture_output=True, text=True,
                             env=ENV)
    assert resumed.returncode == 0, resumed.stderr[:3000]
    assert records(crashed, "val")[-1]["loss"] == pytest.approx(records(straight, "val")[-1]["loss"], rel=1e-5)
    a, b = load_file(straight / "last.safetensors"), load_file(crashed / "last.safetensors")
    for name in a:
        if not name.startswith("rng."):
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_batch_that_does_not_split_over_processes_is_refused(tmp_path, corpus):
    out = tmp_path / "run"
    done = subprocess.run(torchrun("train", corpus, "--out", out, "--max-steps", 5, *ARGS, "--batch-size", 5),
                          capture_output=True, text=True, env=ENV)
    assert done.returncode != 0
    assert "--batch-size 5 does not split evenly over 2 processes: pick a multiple of 2" in done.stderr
    assert not out.exists()


def test_rank_rows_tile_the_full_batch():
    ids = np.arange(1000, dtype=np.int64)
    full = TBPTTBatches(ids, 8, 16, offset=3).window(5)
    for size in (1, 2, 4):
        parts = [TBPTTBatches(ids, 8, 16, 3, World(rank, size).rows(8)).window(5) for rank in range(size)]
        for whole, halves in zip(full, zip(*parts)):
            assert torch.equal(torch.cat(halves), whole)
    with pytest.raises(ConfigError, match="pick a multiple of 4"):
        World(0, 4).check_batch_size(6)


def test_fp16_loss_scaling_trains_and_keeps_its_scale():
    """The GradScaler path (fp16 autocast, as on GPUs without bf16), run on CPU with the non-oneDNN kernels."""
    torch.manual_seed(0)
    ids = np.random.default_rng(0).integers(0, 12, 4000).astype(np.int64)
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=12, eval_every=100, warmup_steps=2, deterministic=True)
    trainer = Trainer(RNNLM(ModelConfig(hidden_size=16, embed_size=8, num_layers=1, dropout=0.0), 12),
                      ids, None, config, torch.device("cpu"), amp_dtype=torch.float16)
    reports = list(trainer.run())
    assert trainer.scaler.is_enabled()
    assert trainer.progress.step == 12 and all(np.isfinite(r.loss) for r in reports)
    assert trainer.resumable_progress()["grad_scaler"]["scale"] > 0


@pytest.mark.parametrize("joined", [True, False])
def test_a_process_that_joined_a_group_ends_after_its_exit_handlers_without_cpp_teardown(joined):
    """gloo's threads outlive destroy_process_group once DDP has run, and C++'s teardown at exit then
    aborted 6 exits in about 200 under load: such a process leaves through end_process instead."""
    script = (
        "import atexit, sys\n"
        "from charlm import distributed\n"
        f"distributed._joined_group = {joined}\n"
        "atexit.register(lambda: print('exit handler ran'))\n"
        "print('output', end='')\n"  # no newline: only an explicit flush writes it before os._exit
        "distributed.end_process(3)\n"
        "print(' returned')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if joined:
        assert (done.returncode, done.stdout) == (3, "outputexit handler ran\n")
    else:
        assert (done.returncode, done.stdout) == (0, "output returned\nexit handler ran\n")
