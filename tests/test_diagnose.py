"""charlm diagnose: gradient flow (the vanishing gradient, measured) and the long-dependency memory probe."""

import json

import pytest
import torch

from charlm.config import MemoryConfig, ModelConfig
from charlm.explore import diagnose
from charlm.model import RNNLM

from conftest import TINY_MODEL_ARGS, TINY_TEXT

FRESH = ["diagnose", "gradients", "--fresh", "--hidden", "16", "--layers", "1", "--length", "40", "--windows", "4"]


def test_gradient_norms_are_d_loss_at_T_by_d_h_t():
    """The measured norms against a plain autograd computation of the same derivative, for a 1-layer RNN."""
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell="rnn", num_layers=1, hidden_size=5, embed_size=3, dropout=0.0), vocab_size=6)
    ids = torch.randint(0, 6, (30,))
    norms = diagnose.gradient_norms(model, ids, length=4, windows=1)
    w_ih, w_hh, b_ih, b_hh = [p.detach().double() for p in model.layer_weights[0]]
    h = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    hs = []
    for x in model.embedding(ids[:4]).detach().double():
        h = torch.tanh(x @ w_ih.T + h @ w_hh.T + b_ih + b_hh)
        hs.append(h)
    logits = hs[-1] @ model.decoder.weight.detach().double().T + model.decoder.bias.detach().double()
    loss = torch.nn.functional.cross_entropy(logits[None], ids[4:5])
    grads = torch.autograd.grad(loss, hs)
    assert norms == pytest.approx([g.norm().item() for g in reversed(grads)], rel=1e-9)


def test_fresh_rnn_gradient_vanishes_much_faster_than_lstm(ok, tiny_corpus, tmp_path):
    png = tmp_path / "grads.png"
    result = ok(*FRESH, "--text", tiny_corpus, "--json", "--png", png)
    flows = {m["cell"]: m for m in json.loads(result.stdout)["models"]}
    assert set(flows) == {"rnn", "lstm", "gru"}
    assert all(len(m["norms"]) == 40 for m in flows.values())
    assert flows["rnn"]["ratio"] < 1e-3 * flows["lstm"]["ratio"]  # the headline: the RNN's gradient vanishes
    assert flows["rnn"]["per_step"] < flows["lstm"]["per_step"] < 1
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "wrote" in result.stderr


def test_gradients_table_and_chart_on_a_checkpoint_and_fresh_models(ok, trained_run, tiny_corpus):
    result = ok("diagnose", "gradients", trained_run, "--fresh", "--cells", "gru", "--hidden", "8",
                "--layers", "1", "--text", tiny_corpus, "--length", "20", "--windows", "2")
    assert f"LSTM 1×16 {trained_run}" in result.stdout and "GRU 1×8 (fresh)" in result.stdout
    assert "k=19" in result.stdout and "ratio" in result.stdout
    assert "1e" in result.stdout.split("×/step")[-1]  # the chart's log-scale ticks


def test_gradients_are_deterministic(ok, tiny_corpus):
    args = [*FRESH, "--cells", "lstm", "--text", str(tiny_corpus), "--json"]
    assert ok(*args).stdout == ok(*args).stdout


@pytest.mark.parametrize("args, message", [
    (["--cells", "rnn,tranformer"], "--cells 'rnn,tranformer': name cells from"),
    (["--length", "1"], "--length must be at least 3"),
    (["--length", "5000"], "fewer than --length 5000 + 1"),
    (["--text", "no-such-file.txt"], "no file, folder or shipped corpus named 'no-such-file.txt'"),
    (["--hidden", "0"], "--hidden must be at least 1"),
    (["--png", "/no/such/folder/g.png"], "folder /no/such/folder does not exist"),
])
def test_gradients_bad_input_is_one_line(fails, tiny_corpus, args, message):
    fails(*FRESH, "--text", tiny_corpus, *args, message=message)


def test_png_folder_gets_a_file_name_suggested(fails, tiny_corpus, tmp_path):
    fails(*FRESH, "--text", tiny_corpus, "--png", tmp_path,
          message=f"--png {tmp_path} is a folder: give a file name, e.g. --png {tmp_path}/gradients.png")


def test_a_run_is_measured_on_its_own_validation_text(tmp_path, ok, fails):
    """Without --text a run's windows come from its own validation split, whatever its language; when that text
    cannot be read again, a one-line error names --text."""
    korean = tmp_path / "ko.txt"
    korean.write_text("어제 나는 공원에서 산책했다.\n" * 60, encoding="utf-8")
    run = tmp_path / "korean"
    ok("train", korean, "--out", run, "--max-steps", "2", *TINY_MODEL_ARGS)
    result = ok("diagnose", "gradients", run, "--length", "20", "--windows", "2", "--json")
    report = json.loads(result.stdout)
    assert report["text"] == "each run's validation text" and report["models"][0]["name"] == str(run)
    korean.unlink()
    fails("diagnose", "gradients", run, "--length", "20", message=f"{run}: its validation text cannot be read")
    english = tmp_path / "en.txt"
    english.write_text(TINY_TEXT, encoding="utf-8")
    fails("diagnose", "gradients", run, "--text", english, message="character(s) the model never saw")


def test_shaping_options_without_fresh_are_refused(fails, trained_run, tiny_corpus):
    fails("diagnose", "gradients", trained_run, "--cells", "rnn", "--text", tiny_corpus,
          message="--cells shape the --fresh models: add --fresh")


def test_memory_task_sequences():
    x, y = diagnose.memory_batch(gap=3, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 5) and torch.equal(x[:, 0], y)
    assert bool((x[:, 1:4] >= len(diagnose.SYMBOLS)).all()) and bool((x[:, -1] == diagnose.VOCAB.index("?")).all())
    text, answer = diagnose.example(4).split(" → ")
    assert len(text) == 6 and text[0] == answer and text[-1] == "?"


def test_memory_probe_learns_a_short_gap_and_stops_after_a_miss():
    config = MemoryConfig(steps=120, hidden_size=16, threshold=0.99)
    results = list(diagnose.memory_probe(["rnn"], [1, 30, 40], config))
    assert [r.gap for r in results] == [1, 30, 40]
    assert results[0].accuracy >= 0.99 and results[0].steps < 120  # learned, and stopped early
    assert results[1].accuracy < 0.99 and results[1].steps == 120  # too few steps for an RNN over 30 fillers
    assert results[2].accuracy is None  # not tried
    assert diagnose.largest_gap(results, 0.99) == 1


def test_memory_command_table_and_json(ok):
    args = ["diagnose", "memory", "--cells", "rnn,gru", "--gaps", "2,1", "--steps", "30", "--hidden", "8"]
    table = ok(*args).stdout
    assert "bridged" in table and "GRU" in table and "steps)" in table
    report = json.loads(ok(*args, "--json").stdout)
    assert report["chance"] == 0.25 and report["config"]["steps"] == 30
    assert [(r["cell"], r["gap"]) for r in report["results"]] == [("rnn", 1), ("rnn", 2), ("gru", 1), ("gru", 2)]
    assert set(report["results"][0]) == {"cell", "gap", "accuracy", "steps", "seconds"}
    assert set(report["largest_gap"]) == {"rnn", "gru"}


@pytest.mark.parametrize("args, message", [
    (["--gaps", "0,5"], "--gaps '0,5': give positive whole numbers"),
    (["--gaps", "five"], "--gaps 'five': give positive whole numbers"),
    (["--cells", "lstm,cnn"], "--cells 'lstm,cnn': name cells from"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--threshold", "1.5"], "--threshold must be in (0, 1]"),
    (["--lr", "nan"], "--lr must be a positive number"),
])
def test_memory_bad_input_is_one_line(fails, args, message):
    fails("diagnose", "memory", *args, message=message)


def test_help_has_examples(ok):
    for command in (["diagnose"], ["diagnose", "gradients"], ["diagnose", "memory"]):
        assert "Examples:" in ok(*command, "--help").stdout


def test_text_shorter_than_the_window(fails, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text(TINY_TEXT[:30], encoding="utf-8")
    fails(*FRESH, "--text", short, message="the text has 30 tokens, fewer than --length 40 + 1")
