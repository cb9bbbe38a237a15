"""Shared fixtures: a tiny corpus and a tiny trained run folder (session-scoped, trained once)."""

from __future__ import annotations

import os

# charlm.console sizes its tables for a piped stdout unless COLUMNS is set; some shells and CI runners export
# it (80), which would wrap the tables the tests read. Tests see the output a pipe gets, wherever they run.
os.environ.pop("COLUMNS", None)

import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from charlm import data  # noqa: E402
from charlm.cli import cli  # noqa: E402
from charlm.corpus import split_sizes  # noqa: E402
from charlm.tokenizers import Tokenizer, TokenizerSpec  # noqa: E402
from charlm.train import StepReport, Trainer  # noqa: E402


def split_text(text: str, val_fraction: float = 0.1, test_fraction: float = 0.0) -> tuple[str, str, str]:
    """The reference split: (train, val, test) cut from ``text`` by corpus.split_sizes, a whole string at once."""
    n_train, n_test, n_val = split_sizes(len(text), val_fraction, test_fraction)
    return text[:n_train], text[len(text) - n_val:] if n_val else "", text[n_train:n_train + n_test]


def prepare(*args, **kwargs):
    """data.prepare_steps run to its end without looking at its progress reports: a run's RunData."""
    return data.drain(data.prepare_steps(*args, **kwargs))


def char_tokenizer(text: str, normalize: str = "none") -> Tokenizer:
    """The char-level tokenizer of ``text``, fitted as a run fits one."""
    return TokenizerSpec(level="char", normalize=normalize).fit(text)


def subword_tokenizer(text: str, vocab_size: int, model_type: str = "unigram", normalize: str = "none") -> Tokenizer:
    """The sentencepiece tokenizer of ``text``, fitted as a run fits one."""
    return TokenizerSpec(level="subword", vocab_size=vocab_size, model_type=model_type, normalize=normalize).fit(text)


TINY_TEXT = "the cat sat on the mat.\nthe dog sat on the log.\na cat and a dog.\n" * 40


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine it mostly waits."""
    torch.set_num_threads(1)


@pytest.fixture
def tiny_corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path):
    """Three times the tiny corpus: long enough for a few hundred steps of the resume tests."""
    path = tmp_path / "corpus.txt"
    path.write_text(TINY_TEXT * 3, encoding="utf-8")
    return path


TINY_MODEL_ARGS = ["--hidden", "16", "--embed", "8", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
                   "--eval-every", "20", "--dropout", "0", "--lr", "0.01", "--warmup", "5"]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder trained for 60 steps on the tiny corpus."""
    root = tmp_path_factory.mktemp("run")
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    out = root / "run"
    result = CliRunner().invoke(cli, ["train", str(corpus), "--out", str(out), "--max-steps", "60", *TINY_MODEL_ARGS],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def invoke():
    """``invoke(*args, input=None)`` runs the command line in-process and returns click's Result, with exit_code,
    stdout and stderr apart. Only the exits charlm makes itself are caught (click turns them into exit codes):
    any other exception reaches the test with its traceback, instead of hiding in a failed run's output."""
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture
def ok(invoke):
    """``ok(*args, input=None)``: ``invoke`` on a happy path, asserting exit status 0; returns the Result."""
    def run(*args, input=None):
        result = invoke(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    return run


@pytest.fixture
def fails(invoke):
    """``fails(*args, message=…)``: the command ends with exit status 1 and a single line 'Error: …' on stderr
    that contains ``message``, no traceback; returns the Result."""
    def run(*args, message: str, input=None):
        result = invoke(*args, input=input)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
        return result

    return run


def stop_training_at(monkeypatch, step: int) -> None:
    """Until ``monkeypatch.undo()``, a training run stops after ``step`` as if Ctrl-C was pressed (exit 130)."""
    run = Trainer.run

    def run_then_stop(self):
        for report in run(self):
            yield report
            if isinstance(report, StepReport) and report.step >= step:
                self.request_stop("SIGINT")

    monkeypatch.setattr(Trainer, "run", run_then_stop)


def run_and_backprop(run, rnn, x, state):
    """Run ``run(x, state)``, then backprop a loss touching every output and the final state; return the
    outputs, final states and the gradients w.r.t. x, the initial state (unless None) and every weight of ``rnn``."""
    out, final = run(x, state)
    finals = final if isinstance(final, tuple) else (final,)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)  # fixed, uneven weighting
    loss = (out * weights).sum() + sum((f ** 2).sum() for f in finals)
    states = () if state is None else state if isinstance(state, tuple) else (state,)
    grads = torch.autograd.grad(loss, [x, *states, *rnn.parameters()])
    return [out, *finals, *grads]
