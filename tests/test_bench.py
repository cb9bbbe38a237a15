"""Every benchmark script runs to its end, at a tiny size (figures are not checked: timings are not tests).

They are scripts a user runs by hand, so nothing else would notice one that stopped working.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_MODEL_ARGS

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--hidden", "16", "--layers", "1", "--embed", "8", "--batch-size", "4", "--seq-len", "8"]


def bench(script: str, *args) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"bench/{script} {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A small language model for the scripts that start from one."""
    run = tmp_path_factory.mktemp("lm") / "run"
    subprocess.run([sys.executable, "-m", "charlm", "train", "kolaw_constitution", "--out", str(run), "--max-steps",
                    "5", *TINY_MODEL_ARGS], check=True, capture_output=True, cwd=ROOT)
    return run


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "mingru", "minlstm"])
def test_throughput(cell):
    out = bench("throughput.py", "--cell", cell, *TINY)
    assert "training" in out and "generation" in out


def test_train_budget():
    out = bench("train_budget.py", "--corpus", "corpora/kolaw_constitution.txt", "--budget", "2s", "--eval-every",
                "20", "--try", "narrow=--hidden 32")
    assert "ratio default/baseline" in out and "ratio narrow/default" in out


def test_transfer(tiny_lm):
    out = bench("transfer.py", "--base", tiny_lm, "--corpus", "corpora/kolaw_constitution.txt", "--budgets", "2s",
                "--skip-korean")
    assert "fine-tuned" in out and "from scratch" in out


def test_classify(tiny_lm):
    out = bench("classify.py", "--train", "corpora/brackets.csv", "--test", "corpora/brackets.csv", "--label-column",
                "label", "--budget", "2s", "--lm", tiny_lm, "--only", "scratch-gru,from-lm")
    assert "bag-of-characters" in out and "from-lm" in out


def test_repl_latency():
    assert "median" in bench("repl_latency.py", "--hidden", "16", "--layers", "1", "--repeats", "1")


def test_tokenize_memmap(tmp_path):
    assert "MB/s" in bench("tokenize_memmap.py", "--throughput-mb", "1", "--size-mb", "2", "--steps", "3",
                           "--dir", tmp_path)


def test_soak():
    assert "memory" in bench("soak.py", "--size-mb", "1", "--minutes", "0.1", "--save-every", "20").lower()


def test_distributed():
    assert "tokens/s" in bench("distributed.py", "--corpus", "corpora/kolaw_constitution.txt", "--steps", "20")


def test_fault_resume():
    assert "bit-identical to the uninterrupted run: True" in bench("fault_resume.py", "--kills", "1", "--steps", "60",
                                                                   "--corpus", "kolaw_constitution")
