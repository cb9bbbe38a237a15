"""Starting a run from another one (charlm train --from RUN): weights, a grown vocabulary, lineage, errors."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from charlm import checkpoint, transfer
from charlm.config import ModelConfig
from charlm.model import RNNLM
from charlm.tokenizers import CharTokenizer

from conftest import TINY_MODEL_ARGS, TINY_TEXT, stop_training_at

NEW_TEXT = "Hello, World! the cat sat on the mat. Über café ☃\n" * 60  # capitals, accents and a snowman are new


def folder_hashes(run):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}


@pytest.fixture
def new_text(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize("embed", [8, 0])
def test_transplanted_weights_predict_the_old_tokens_as_the_parent_did(tmp_path, embed):
    """Every old token's logit is the parent's, at every position; a new token starts near its frequency."""
    torch.manual_seed(0)
    parent_tok = CharTokenizer("acdt .\n")
    config = ModelConfig(num_layers=2, hidden_size=12, embed_size=embed, dropout=0.0)
    parent_model = RNNLM(config, parent_tok.vocab_size)
    parent = transfer.Parent("p", tmp_path, {}, parent_tok, config, None, parent_model.state_dict(), "", {})
    child_tok = parent_tok.extended("be")
    ids = child_tok.encode("a cat. bead. tact.\n" * 50)
    child = RNNLM(config, child_tok.vocab_size)
    assert transfer.transplant(child, parent, child_tok, ids) == 2
    text = "a cat at a tact. cat\n"
    with torch.no_grad():
        old = parent_model.eval()(torch.tensor(parent_tok.encode(text).astype(np.int64))[None])[0][0]
        new = child.eval()(torch.tensor(child_tok.encode(text).astype(np.int64))[None])[0][0]
    moved = parent_tok.id_map(child_tok)
    assert torch.allclose(new[:, moved], old, atol=1e-5)
    probs = torch.softmax(new, dim=-1)
    for ch in "be":
        frequency = (ids == child_tok.encode(ch)[0]).mean()
        assert probs[:, child_tok.encode(ch)[0]].mean().item() == pytest.approx(frequency, rel=0.35)


def test_fine_tuning_grows_the_vocabulary_records_the_parent_and_leaves_it_untouched(ok, trained_run, new_text,
                                                                                     tmp_path):
    before = folder_hashes(trained_run)
    child = tmp_path / "child"
    result = ok("train", new_text, "--from", trained_run, "--out", child, "--max-steps", "20", "--eval-every", "10")
    added = sorted(set(NEW_TEXT[:int(len(NEW_TEXT) * 0.9)]) - set(checkpoint.load(trained_run).tokenizer.chars))
    assert f"starting from {trained_run} (step 60): vocabulary" in result.stderr
    assert f"{len(added)} characters: " in result.stderr and "added" in result.stderr
    info = json.loads((child / "config.json").read_text())
    parent = checkpoint.load(trained_run)
    assert info["parent"]["run"] == str(trained_run) and info["parent"]["weights_sha256"] == parent.weights_sha256
    assert info["model"]["hidden_size"] == 16 and info["model"]["cell"] == parent.model_config.cell
    assert info["train"]["lr"] == pytest.approx(parent.train_config.lr * 0.4) and info["train"]["warmup_steps"] == 20
    assert set(checkpoint.load(child).tokenizer.chars) == set(parent.tokenizer.chars) | set(added)
    assert folder_hashes(trained_run) == before  # the parent is only read
    shown = ok("report", child, "--no-chart").stdout
    assert "started from" in shown and str(trained_run) in shown


def test_a_finished_run_gets_more_time_on_its_own_corpus(ok, trained_run, tmp_path):
    more = tmp_path / "more"
    ok("train", "--from", trained_run, "--out", more, "--max-steps", "10", "--eval-every", "5")
    info = json.loads((more / "config.json").read_text())
    assert info["corpus"]["sha256"] == json.loads((trained_run / "config.json").read_text())["corpus"]["sha256"]
    rows = json.loads(ok("eval", more, trained_run, "--split-of", trained_run, "--json").stdout)
    assert rows[0]["text"] == rows[1]["text"] == f"the val split of {trained_run}"
    # a shipped model named beside a run is a second checkpoint, not the older `eval CHECKPOINT TEXT` form
    rows = json.loads(ok("eval", more, "shakespeare-lstm", "--split-of", trained_run, "--unknown", "unk",
                         "--json").stdout)
    assert [Path(r["checkpoint"]).name for r in rows] == ["more", "shakespeare-lstm"]


def test_a_fine_tuning_run_resumes_exactly(invoke, trained_run, new_text, tmp_path, monkeypatch):
    args = ["--from", trained_run, "--max-steps", "30", "--eval-every", "10", "--dropout", "0.1"]
    straight = invoke("train", new_text, "--out", tmp_path / "a", *args)
    assert straight.exit_code == 0, straight.output
    stop_training_at(monkeypatch, 15)
    assert invoke("train", new_text, "--out", tmp_path / "b", *args).exit_code == 130
    monkeypatch.undo()
    resumed = invoke("train", "--resume", tmp_path / "b")
    assert resumed.exit_code == 0, resumed.output
    a = checkpoint.load(tmp_path / "a", weights=checkpoint.LAST_FILE).model.state_dict()
    b = checkpoint.load(tmp_path / "b", weights=checkpoint.LAST_FILE).model.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_byte_and_subword_parents_keep_their_tokenizer(ok, tmp_path, new_text):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    for level in (["--level", "byte"], ["--level", "subword", "--vocab-size", "300"]):
        parent = tmp_path / level[1]
        ok("train", corpus, *level, "--out", parent, "--max-steps", "2", *TINY_MODEL_ARGS)
        child = tmp_path / f"{level[1]}-child"
        result = ok("train", new_text, "--from", parent, "--out", child, "--max-steps", "2")
        assert "added" not in result.stderr.split("starting from")[1].splitlines()[0]
        assert (child / "tokenizer.json").read_text() == (parent / "tokenizer.json").read_text()


@pytest.mark.parametrize("args, message", [
    (["--cell", "gru"], "a run started from it keeps its architecture: --cell gru contradicts its lstm"),
    (["--hidden", "32"], "--hidden 32 contradicts its 16; drop --hidden, or train from scratch without --from"),
    (["--level", "byte"], "--level byte contradicts it"),
    (["--normalize", "nfd"], "--normalize nfd contradicts it"),
    (["--tie-weights"], "--tie-weights contradicts its untied weights"),
])
def test_options_that_contradict_the_parent_are_one_line_errors(fails, trained_run, new_text, tmp_path, args,
                                                                 message):
    fails("train", new_text, "--from", trained_run, "--out", tmp_path / "c", *args, message=message)
    assert not (tmp_path / "c").exists()


def test_a_parent_that_is_not_a_good_run_is_refused(fails, trained_run, new_text, tmp_path):
    fails("train", new_text, "--from", tmp_path / "nope", "--out", tmp_path / "c", message="does not exist")
    (tmp_path / "empty").mkdir()
    fails("train", new_text, "--from", tmp_path / "empty", "--out", tmp_path / "c", message="has no config.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in trained_run.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    weights = bytearray((broken / "model.safetensors").read_bytes())
    weights[-3] ^= 0xFF  # one flipped byte in the tensors
    (broken / "model.safetensors").write_bytes(bytes(weights))
    fails("train", new_text, "--from", broken, "--out", tmp_path / "c", message="fails its content check")
    assert not (tmp_path / "c").exists()
    before = folder_hashes(trained_run)
    fails("train", new_text, "--from", trained_run, "--out", trained_run, "--force",
          message="is the run --from")  # --force would have replaced the parent with its child
    assert folder_hashes(trained_run) == before


def test_an_option_that_says_what_the_parent_is_passes(ok, trained_run, new_text, tmp_path):
    parent = checkpoint.load(trained_run)
    ok("train", new_text, "--from", trained_run, "--hidden", parent.model_config.hidden_size, "--cell",
       parent.model_config.cell, "--out", tmp_path / "c", "--max-steps", "2")
    info = json.loads((tmp_path / "c" / "config.json").read_text())
    # a child keeps its parent's batch and window, and a grandchild fine-tunes at the lineage's first rate
    assert info["train"]["batch_size"] == parent.train_config.batch_size
    assert info["train"]["seq_len"] == parent.train_config.seq_len
    ok("train", new_text, "--from", tmp_path / "c", "--out", tmp_path / "g", "--max-steps", "2")
    grandchild = json.loads((tmp_path / "g" / "config.json").read_text())
    assert grandchild["train"]["lr"] == info["train"]["lr"] == pytest.approx(parent.train_config.lr * 0.4)


def test_more_time_refuses_a_corpus_that_changed_since_the_parent_read_it(fails, ok, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    ok("train", text, "--out", tmp_path / "p", "--max-steps", "3", *TINY_MODEL_ARGS)
    text.write_text(TINY_TEXT.upper(), encoding="utf-8")
    fails("train", "--from", tmp_path / "p", "--out", tmp_path / "more", message="has changed since the run was "
                                                                                 "recorded")


def test_a_parent_far_more_sure_than_right_still_fine_tunes(tmp_path):
    """A model that starts many times worse than guessing on the new text (a confident parent on other text)
    is not an exploding run: the guard measures against where training started."""
    from charlm.config import TrainConfig
    from charlm.train import Trainer

    torch.manual_seed(0)
    tok = CharTokenizer(TINY_TEXT)
    ids = tok.encode(TINY_TEXT)
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=16, embed_size=8, dropout=0.0), tok.vocab_size)
    with torch.no_grad():
        model.decoder.bias[:] = 0.0
        model.decoder.bias[0] = 60.0  # sure of <unk> everywhere: a loss of about 60 nats
    trainer = Trainer(model, ids[:2000], ids[2000:], TrainConfig(batch_size=4, seq_len=16, max_steps=20,
                                                                 warmup_steps=0, lr=0.01), torch.device("cpu"))
    list(trainer.run())
    assert trainer.progress.bad_steps == 0 and trainer.progress.start_loss > 40


def test_new_rows_are_counted_by_the_text(tmp_path):
    """A new character that never occurs in the training text starts very unlikely, not at a random logit."""
    torch.manual_seed(0)
    tok = CharTokenizer("ab")
    config = ModelConfig(num_layers=1, hidden_size=4, embed_size=3, dropout=0.0)
    model = RNNLM(config, tok.vocab_size)
    parent = transfer.Parent("p", tmp_path, {}, tok, config, None, model.state_dict(), "", {})
    child_tok = tok.extended("z")
    child = RNNLM(config, child_tok.vocab_size)
    transfer.transplant(child, parent, child_tok, np.array([1, 2, 1, 2, 1], dtype=np.uint8))
    with torch.no_grad():
        probs = torch.softmax(child.eval()(torch.tensor([[1, 2, 1]]))[0][0], dim=-1)
    assert probs[:, child_tok.encode("z")[0]].max() < 0.2
