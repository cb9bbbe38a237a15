"""Text classification: labelled data in, the encoder's reading (windows, padding, pooling, both directions),
training, resume, --from a language model, and what a user who gives bad input is told."""

import json
import random

import numpy as np
import pytest
import torch

from charlm import checkpoint, labelled
from charlm.classify import TextClassifier, batch_tensors, reverse_texts, scores
from charlm.config import ClassifierConfig, ModelConfig

SMALL = ["--hidden", "24", "--embed", "8", "--layers", "1", "--batch-size", "16", "--window", "48",
         "--eval-every", "20", "--precision", "fp32", "--lr", "0.01"]


def contains_x(n: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """A task a label can be read from: whether the text contains an 'x'."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = "".join(rng.choice("abcde ") for _ in range(rng.randint(5, 40)))
        if i % 2:
            spot = rng.randrange(len(text))
            text = text[:spot] + "x" + text[spot + 1:]
        rows.append((text, "x" if "x" in text else "none"))
    return rows


def write_csv(path, rows, header=("text", "label")):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def x_data(tmp_path):
    return write_csv(tmp_path / "x.csv", contains_x())


# ----- data -------------------------------------------------------------------------------------------------


def test_tables_folders_and_label_filters_read_the_same_examples(tmp_path):
    rows = contains_x(40)
    table = labelled.read(str(write_csv(tmp_path / "x.csv", rows)))
    assert table.texts == [t for t, _ in rows] and table.labels == [label for _, label in rows]
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text("".join(json.dumps({"review": t, "stars": label}) + "\n" for t, label in rows), encoding="utf-8")
    assert labelled.read(str(jsonl), "review", "stars").labels == table.labels
    for i, (text, label) in enumerate(rows):  # the IMDB layout: a subfolder per label, a file per text
        folder = tmp_path / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "1.txt").write_bytes(b"\xff not even UTF-8")  # never read: --labels leaves it
    folder = labelled.read(str(tmp_path / "train"), labels=("none", "x"))
    assert sorted(zip(folder.texts, folder.labels)) == sorted(rows)
    with pytest.raises(labelled.DataError, match="has no label 'pos' .*none, unsup, x"):
        labelled.read(str(tmp_path / "train"), labels=("pos",))
    (tmp_path / "test" / "x").mkdir(parents=True)  # the aclImdb root: train/ and test/ are splits, not labels
    with pytest.raises(labelled.DataError, match="look like splits \\(test, train\\), not labels: pass the "):
        labelled.read(str(tmp_path))


def test_tables_that_are_not_utf8_or_have_no_rows_are_named(fails, ok, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"text,label\ncaf\xe9,a\nbar,b\n" * 20)
    fails("classify", "train", latin, message="latin.csv is not valid UTF-8 (bad byte at offset 14): convert it to "
                                              "UTF-8, or pass --encoding-errors replace|ignore")
    jsonl = tmp_path / "latin.jsonl"
    jsonl.write_bytes(b'{"text": "caf\xe9", "label": "a"}\n{"text": "bar", "label": "b"}\n' * 20)
    fails("train", jsonl, message="latin.jsonl is not valid UTF-8")
    for data in (latin, jsonl):
        ok("classify", "train", data, "--encoding-errors", "replace", "--out", tmp_path / f"r{data.suffix}",
           "--max-steps", "2", *SMALL)
    assert "caf\ufffd" in checkpoint.load_classifier(tmp_path / "r.csv").tokenizer.decode(
        checkpoint.load_classifier(tmp_path / "r.csv").tokenizer.encode("caf\ufffd"))
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n", encoding="utf-8")
    fails("classify", "train", header_only, message="header.csv has no rows: pass a table with a header")


def test_a_stratified_split_holds_out_every_class():
    examples = labelled.Examples([str(i) for i in range(100)], ["a"] * 80 + ["b"] * 20, "s")
    train, held = labelled.stratified_split(examples, 0.1, seed=1)
    assert sorted(train + held) == list(range(100)) and len(held) == 10
    assert [examples.labels[i] for i in held].count("b") == 2  # a tenth of each class
    assert labelled.stratified_split(examples, 0.1, seed=1) == (train, held)  # seeded
    few = labelled.Examples(["p", "q", "r", "s", "t"], ["a", "a", "b", "b", "b"], "s")
    train, held = labelled.stratified_split(few, 0.8, seed=1)  # 0.8 of 2 rounds to 2: one stays to train on
    assert sorted(few.labels[i] for i in train) == ["a", "b"] and len(held) == 3


@pytest.mark.parametrize("rows, args, message", [
    ([("a", "x"), ("b", "y")], ["--text-column", "body"],
     "has no column 'body' (columns: text, label): pass --text-column"),
    ([("a", "x"), ("b", "x")], [], "has one class only ('x', 2 examples): a classifier needs two or more"),
    ([("a", "x"), ("", "y"), ("c", "y")], [], "has 1 empty text(s) (the first is example 2): remove them, or pass "
                                              "--skip-empty"),
    ([("a", "x"), ("b", "y")], ["--labels", "x,z"], "has no label 'z' (its labels: x, y): fix --labels"),
])
def test_bad_labelled_data_is_a_one_line_error(fails, tmp_path, rows, args, message):
    data = write_csv(tmp_path / "d.csv", rows)
    fails("classify", "train", data, "--out", tmp_path / "run", *args, message=message)
    assert not (tmp_path / "run").exists()


def test_a_plain_text_file_is_not_labelled_data(fails, tiny_corpus, tmp_path):
    fails("classify", "train", tiny_corpus, message="not a table: pass a csv, json, jsonl or parquet file")


# ----- the encoder's reading --------------------------------------------------------------------------------


def test_reversing_keeps_the_padding_in_front():
    ids = torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]])
    assert reverse_texts(ids, torch.tensor([3, 5])).tolist() == [[0, 0, 7, 6, 5], [5, 4, 3, 2, 1]]


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "concat"])
def test_reading_in_windows_with_padding_matches_reading_each_text_alone(pooling):
    """Windows carry the state; a padded row keeps a zero state until its text begins: so a batch gives each
    text the features it gets alone, read at once (here the short text begins at a window's edge)."""
    torch.manual_seed(0)
    clf = ClassifierConfig(pooling=pooling, bidirectional=True, grad_windows=1, head_dropout=0.0)
    model = TextClassifier(ModelConfig(cell="lstm", num_layers=2, hidden_size=6, embed_size=4, dropout=0.0), 9, 3,
                           clf).eval()
    long, short = np.array([1, 2, 3, 4, 5, 6, 7, 8]), np.array([8, 7, 6, 5])
    ids, lengths = batch_tensors([long, short], window=4)
    assert ids.tolist()[1] == [0, 0, 0, 0, 8, 7, 6, 5]
    with torch.no_grad():
        both = model(ids, lengths, window=4)
        for row, text in enumerate([long, short]):
            alone_ids, alone_len = batch_tensors([text], window=len(text))
            torch.testing.assert_close(both[row], model(alone_ids, alone_len, window=len(text))[0])


def test_only_the_last_windows_get_gradients():
    """BPT3C: with grad_windows 1, a token read only in an earlier window gets no gradient in its embedding."""
    torch.manual_seed(0)
    model = TextClassifier(ModelConfig(cell="gru", num_layers=1, hidden_size=5, embed_size=3, dropout=0.0), 9, 2,
                           ClassifierConfig(grad_windows=1, head_dropout=0.0))
    ids, lengths = batch_tensors([np.array([1, 2, 3, 4, 5, 6, 7, 8])], window=4)  # 1-4 first window, 5-8 last
    model(ids, lengths, window=4).sum().backward()
    grad = model.encoder.embedding.weight.grad
    assert grad[1:5].abs().sum() == 0 and grad[5:9].abs().sum() > 0


def test_scores_count_accuracy_macro_f1_and_the_confusion_matrix():
    accuracy, macro_f1, per_class, confusion = scores(["a", "b", "c"], np.array([0, 0, 1, 1, 2]),
                                                      np.array([0, 1, 1, 1, 0]))
    assert accuracy == pytest.approx(0.6) and confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    f1 = {row["label"]: row["f1"] for row in per_class}
    assert f1 == pytest.approx({"a": 0.5, "b": 0.8, "c": 0.0}) and macro_f1 == pytest.approx(1.3 / 3)


# ----- the commands -----------------------------------------------------------------------------------------


def test_train_eval_and_predict(ok, x_data, tmp_path):
    run = tmp_path / "run"
    result = ok("classify", "train", x_data, "--out", run, "--max-steps", "120", *SMALL)
    assert "270 training and 30 validation examples; predicting the majority class" in result.stderr
    assert "accuracy" in result.stderr.split("step 20 ")[1].splitlines()[0]  # a log line per evaluation
    figures = json.loads(ok("classify", "eval", run, "--data", x_data, "--json").stdout)
    assert figures["accuracy"] > 0.9 and figures["majority_accuracy"] == 0.5 and figures["examples"] == 300
    assert sum(map(sum, figures["confusion"])) == 300 and {r["label"] for r in figures["per_class"]} == {"none", "x"}
    held_out = json.loads(ok("classify", "eval", run, "--json").stdout)  # no --data: the 30 validation examples
    assert held_out["examples"] == 30 and held_out["data"].endswith("(held out for validation)")
    assert held_out["accuracy"] > 0.8
    shown = ok("classify", "predict", run, "--text", "abc dex ab", "--text", "abc de ab").stdout.splitlines()
    assert shown[0].startswith("x\t") and shown[1].startswith("none\t")
    lines = ok("classify", "predict", run, "--json", input="ab x\n\nabab\n").stdout.splitlines()  # blank: no text
    assert [json.loads(line)["label"] for line in lines] == ["x", "none"]
    info = json.loads((run / "config.json").read_text())
    assert info["kind"] == "classifier" and info["labels"] == ["none", "x"] and info["data"]["train_counts"]


def test_a_recurrent_encoder_learns_what_a_bag_of_characters_cannot(ok, tmp_path):
    """Balanced brackets: both classes have as many '(' as ')', so only the order tells them apart."""
    run = tmp_path / "brackets"
    ok("classify", "train", "corpora/brackets.csv", "--out", run, "--max-steps", "150", "--cell", "gru",
       "--hidden", "32", "--embed", "8", "--layers", "1", "--window", "48", "--precision", "fp32")
    figures = json.loads(ok("classify", "eval", run, "--data", "corpora/brackets.csv", "--json").stdout)
    assert figures["accuracy"] > 0.85 and figures["majority_accuracy"] == 0.5


@pytest.mark.parametrize("options", [["--bidirectional", "--pool", "last"], ["--pool", "max", "--cell", "lstm"],
                                     ["--pool", "mean", "--cell", "rnn"]])
def test_every_encoder_and_pooling_trains(ok, x_data, tmp_path, options):
    run = tmp_path / "run"
    ok("classify", "train", x_data, "--out", run, "--max-steps", "20", *SMALL, *options)
    assert checkpoint.load_classifier(run).model(*batch_tensors([np.array([1, 2])], 48), window=48).shape == (1, 2)


def test_eval_without_data_refuses_examples_that_changed_since_training(ok, fails, x_data, tmp_path):
    run = tmp_path / "run"
    ok("classify", "train", x_data, "--out", run, "--max-steps", "5", *SMALL)
    x_data.write_text(x_data.read_text(encoding="utf-8") + "one more x,x\n", encoding="utf-8")
    fails("classify", "eval", run, message="changed since the run started: pass the examples to score with --data")


def stop_at(monkeypatch, step: int) -> None:
    """Make every classifier run ask itself to stop, as SIGINT would, once it has reported ``step``."""
    from charlm.classify import ClassifierTrainer
    from charlm.train import StepReport

    original = ClassifierTrainer.run

    def stopping(self):
        for report in original(self):
            yield report
            if isinstance(report, StepReport) and report.step >= step:
                self.request_stop("SIGINT")

    monkeypatch.setattr(ClassifierTrainer, "run", stopping)


def test_a_stopped_run_resumes_to_the_same_weights(invoke, x_data, tmp_path, monkeypatch):
    args = ["--max-steps", "60", *SMALL]
    assert invoke("classify", "train", x_data, "--out", tmp_path / "a", *args).exit_code == 0
    stop_at(monkeypatch, 30)
    stopped = invoke("classify", "train", x_data, "--out", tmp_path / "b", *args)
    assert stopped.exit_code == 130 and "charlm classify train --resume" in stopped.stderr
    monkeypatch.undo()
    resumed = invoke("classify", "train", "--resume", tmp_path / "b")
    assert resumed.exit_code == 0, resumed.output
    a = checkpoint.load_classifier(tmp_path / "a", weights=checkpoint.LAST_FILE).model.state_dict()
    b = checkpoint.load_classifier(tmp_path / "b", weights=checkpoint.LAST_FILE).model.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_run_stopped_before_its_first_evaluation_predicts_evaluates_and_resumes(invoke, ok, x_data, tmp_path,
                                                                                  monkeypatch):
    run = tmp_path / "run"
    stop_at(monkeypatch, 10)
    assert invoke("classify", "train", x_data, "--out", run, "--max-steps", "40", *SMALL, "--eval-every",
                  "1000").exit_code == 130
    monkeypatch.undo()
    assert ok("classify", "predict", run, "--text", "abx").stdout.split("\t")[0] in ("x", "none")
    assert json.loads(ok("classify", "eval", run, "--data", x_data, "--json").stdout)["examples"] == 300
    ok("classify", "train", "--resume", run)
    assert checkpoint.load_classifier(run).weights["step"] == 40


def test_gradual_unfreezing_leaves_frozen_layers_untouched_and_out_of_the_clipped_norm(x_data):
    from charlm.classify import ClassifierTrainer
    from charlm.config import TrainConfig

    model = TextClassifier(ModelConfig(cell="gru", num_layers=2, hidden_size=8, embed_size=4), 12, 2,
                           ClassifierConfig(gradual_unfreeze=True))
    texts, labels = [np.array([1, 2, 3, 4])] * 8, [0, 1] * 4
    trainer = ClassifierTrainer(model, texts, labels, texts, labels, ["a", "b"],
                                TrainConfig(max_steps=100, batch_size=4, seq_len=4, warmup_steps=0), ClassifierConfig(
                                    gradual_unfreeze=True), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert trainer._trainable_depth() == 0  # the first of four stages: the head alone
    assert trainer._train_step(np.arange(4), lr=0.1) is not None
    after = model.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved == {"head.weight", "head.bias"}
    trainer.progress.step = 60  # three quarters through: every stage but the embedding's
    trainer._train_step(np.arange(4), lr=0.1)
    assert not torch.equal(model.state_dict()["encoder.layers.0.weight_hh_l0"], before["encoder.layers.0.weight_hh_l0"])
    assert torch.equal(model.state_dict()["encoder.embedding.weight"], before["encoder.embedding.weight"])


def test_a_language_model_starts_the_encoder(ok, trained_run, x_data, tmp_path):
    run = tmp_path / "run"
    result = ok("classify", "train", x_data, "--from", trained_run, "--out", run, "--max-steps", "2",
                "--batch-size", "16", "--window", "16", "--bidirectional")
    assert f"starting the encoder from {trained_run}" in result.stderr and "added" in result.stderr  # 'x' is new
    lm, clf = checkpoint.load(trained_run), checkpoint.load_classifier(run, weights=checkpoint.LAST_FILE)
    assert json.loads((run / "config.json").read_text())["parent"]["weights_sha256"] == lm.weights_sha256
    assert clf.model_config.hidden_size == lm.model_config.hidden_size
    moved = lm.tokenizer.id_map(clf.tokenizer)
    layer = "layers.0.weight_hh_l0"  # two small warm-up steps later, still the language model's
    assert torch.allclose(clf.model.encoder.state_dict()[layer], lm.model.state_dict()[layer], atol=0.05)
    assert clf.model.backward_encoder is not None
    assert torch.allclose(clf.model.encoder.embedding.weight[moved[1:]], lm.model.embedding.weight[1:], atol=0.05)


def test_korean_with_jamo_end_to_end(ok, tmp_path):
    run = tmp_path / "ko"
    ok("classify", "train", "corpora/bills_committee_small.csv", "--label-column", "committee", "--normalize", "nfd",
       "--out", run, "--max-steps", "4", *SMALL)
    assert checkpoint.load_classifier(run).tokenizer.normalize == "nfd"
    figures = json.loads(ok("classify", "eval", run, "--data", "corpora/bills_committee_small.csv",
                            "--label-column", "committee", "--json").stdout)
    committees = {"행정안전위원회", "보건복지위원회", "국토교통위원회", "법제사법위원회"}
    assert figures["examples"] == 200 and set(figures["labels"]) == committees
    bill = "국민건강보험법 일부개정법률안: 요양급여의 범위를 넓히려는 것임"
    label = ok("classify", "predict", run, "--text", bill).stdout
    assert label.split("\t")[0] in figures["labels"]


def test_runs_of_the_other_kind_and_unseen_test_labels_are_refused(fails, ok, trained_run, x_data, tmp_path):
    run = tmp_path / "run"
    ok("classify", "train", x_data, "--out", run, "--max-steps", "2", *SMALL)
    fails("sample", run, message="is a text classifier, not a language model: use charlm classify")
    fails("classify", "eval", trained_run, "--data", x_data, message="is a language model, not a text classifier")
    other = write_csv(tmp_path / "other.csv", [("a", "x"), ("b", "maybe")])
    fails("classify", "eval", run, "--data", other, message="has label(s) the classifier was not trained on: maybe")
    fails("classify", "train", x_data, "--from", trained_run, "--hidden", "99", "--out", tmp_path / "c",
          message="keeps its architecture: --hidden 99 contradicts its 16")
    fails("classify", "predict", run, message="no text to classify", input="")
    for command in (["eval", trained_run, "--split-of", run], ["train", "--resume", run], ["report", run]):
        fails(*command, message="is a text classifier, not a language model")
    fails("classify", "train", "--resume", trained_run, message="is a language model, not a text classifier")
    fails("classify", "train", "--resume", x_data, message="is a file, not a run folder")
