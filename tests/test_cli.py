import json

import pytest
from safetensors.torch import load_file

from conftest import TINY_MODEL_ARGS, TINY_TEXT, stop_training_at


def test_help_has_examples(invoke):
    for command in ("train", "eval", "sample", "repl"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output


def test_train_writes_a_complete_run(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "last.safetensors", "metrics.jsonl"} <= names
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "val"} <= {r["type"] for r in records}
    assert not any(p.suffix == ".pkl" or p.suffix == ".pt" for p in trained_run.iterdir())


def test_eval_json_reports_the_figures(invoke, trained_run):
    result = invoke("eval", trained_run, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert {"loss", "perplexity", "bpc", "tokens", "characters"} <= set(figures)
    assert figures["perplexity"] == pytest.approx(2.718281828 ** figures["loss"], rel=1e-6)
    bits = figures["loss"] / 0.6931471805599453 * figures["tokens"]
    assert figures["bpc"] == pytest.approx(bits / figures["characters"])
    best = json.loads((trained_run / "config.json").read_text())
    assert best["corpus"]["val_characters"] > 0


def test_eval_on_a_file_and_human_table(invoke, trained_run, tiny_corpus):
    result = invoke("eval", trained_run, tiny_corpus)
    assert result.exit_code == 0, result.output
    assert "bits per character" in result.stdout


def test_eval_draws_a_bar_on_a_terminal(invoke, trained_run, monkeypatch):
    import io

    from rich.console import Console

    from charlm.cli import console

    screen = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=screen, force_terminal=True, width=120))
    row = json.loads(invoke("eval", trained_run, "--json").stdout)
    shown = f"evaluating {trained_run}: {row['tokens']:,} of {row['tokens']:,} tokens, loss so far {row['loss']:.4f}"
    assert shown in screen.getvalue()


def test_eval_dynamic_reports_the_adapted_and_the_static_figures(invoke, trained_run, tmp_path):
    text = tmp_path / "repeats.txt"
    text.write_text("a dog sat on the cat.\n" * 30, encoding="utf-8")  # a line the tiny corpus never had
    static = json.loads(invoke("eval", trained_run, "--text", text, "--json").stdout)
    result = invoke("eval", trained_run, "--text", text, "--dynamic-lr", "0.01", "--json")
    assert result.exit_code == 0, result.output
    dynamic = json.loads(result.stdout)
    assert dynamic["dynamic_lr"] == 0.01
    assert dynamic["static_loss"] == pytest.approx(static["loss"])
    assert dynamic["static_bpc"] == pytest.approx(static["bpc"])
    assert dynamic["loss"] < static["loss"] and dynamic["tokens"] == static["tokens"]
    table = invoke("eval", trained_run, "--text", text, "--dynamic")
    assert table.exit_code == 0 and "dynamic, lr 0.001" in table.stdout and "static bits per character" in table.stdout
    side_by_side = invoke("eval", trained_run, trained_run, "--text", text, "--dynamic")
    assert side_by_side.exit_code == 0 and "static bpc" in side_by_side.stdout
    assert f"{static['bpc']:.4f} *" in side_by_side.stdout  # the best is marked by its static figure


def test_eval_dynamic_takes_no_more_threads_than_free_cpus(invoke, trained_run, monkeypatch):
    import torch

    from charlm import runtime

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "busy_cpus", lambda: (2, 1.0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = invoke("eval", trained_run, "--dynamic", "--device", "cpu")  # threads are fitted on CPU only
        assert result.exit_code == 0 and "evaluation with 1 of 2 threads" in result.stderr
    finally:
        torch.set_num_threads(threads)


def test_eval_dynamic_says_when_adapting_made_it_worse_and_refuses_a_bad_rate(invoke, trained_run, tmp_path):
    worse = invoke("eval", trained_run, "--dynamic-lr", "50")
    assert worse.exit_code == 0 and "scored worse than the model as it is" in worse.stderr
    as_json = invoke("eval", trained_run, "--dynamic-lr", "1000", "--json")

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    figures = json.loads(as_json.stdout, parse_constant=refuse)  # an infinite perplexity is null, not Infinity
    assert figures["perplexity"] is None and figures["loss"] > 100
    short = tmp_path / "short.txt"
    short.write_text("the cat sat.", encoding="utf-8")
    one_segment = invoke("eval", trained_run, "--text", short, "--dynamic")
    assert one_segment.exit_code == 0 and "nothing to learn from" in one_segment.stderr
    assert "scored worse" not in one_segment.stderr
    for bad in ("0", "-1", "nan", "inf"):
        result = invoke("eval", trained_run, "--dynamic-lr", bad)
        assert result.exit_code == 1 and "--dynamic-lr must be a positive number" in result.stderr


def test_eval_of_runs_on_different_corpora_marks_no_best(invoke, trained_run, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("a bird in the hand.\nis worth two in the bush.\n" * 40, encoding="utf-8")
    run = tmp_path / "other-run"
    assert invoke("train", other, "--out", run, "--max-steps", "2", *TINY_MODEL_ARGS).exit_code == 0
    result = invoke("eval", trained_run, run)
    assert result.exit_code == 0, result.output
    assert "each on its own text" in result.stdout and "*" not in result.stdout
    assert "val split of" in result.stdout and "other.txt" in result.stdout
    same = invoke("eval", trained_run, run, "--text", other, "--unknown", "unk")
    assert same.exit_code == 0 and "* = best" in same.stdout and " *" in same.stdout


def test_training_reports_a_change_of_threads_in_the_log(invoke, tmp_path, tiny_corpus, monkeypatch):
    from charlm import runtime

    class Fitter:
        def __init__(self, work):
            self.calls = 0

        def start(self):
            return None

        def observe(self, tokens_per_s):
            self.calls += 1
            return "training with 1 of 2 threads: (a test)" if self.calls == 3 else None

    monkeypatch.setattr(runtime, "ThreadFitter", Fitter)
    result = invoke("train", tiny_corpus, "--out", tmp_path / "run", "--max-steps", "60", "--device", "cpu",
                    *TINY_MODEL_ARGS)  # threads are fitted on CPU only
    assert result.exit_code == 0 and "training with 1 of 2 threads: (a test)" in result.stderr
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["message"] for e in events if e.get("kind") == "threads"] == ["training with 1 of 2 threads: (a test)"]


def test_eval_unknown_skip_counts_only_the_characters_it_scores(invoke, trained_run, tmp_path):
    """Skipped characters are never predicted, so they must not dilute bits per character."""
    plain, padded = tmp_path / "plain.txt", tmp_path / "padded.txt"
    plain.write_text("the cat sat on the mat.\n" * 4, encoding="utf-8")
    padded.write_text("the cat sat on the mat.\n" * 4 + "Z" * 500, encoding="utf-8")  # 'Z' never seen
    figures = [json.loads(invoke("eval", trained_run, "--text", path, "--unknown", "skip", "--json").stdout)
               for path in (plain, padded)]
    assert figures[1]["characters"] == figures[0]["characters"] == 4 * 24 - 1
    assert figures[1]["bpc"] == pytest.approx(figures[0]["bpc"])


def test_eval_score_and_inspect_read_text_that_is_not_utf8_when_told_how(invoke, trained_run, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("the cat sat on the mat, caf\xe9.\n".encode("latin-1"))
    for args in (["eval", trained_run, "--text", latin1, "--json"], ["score", trained_run, latin1],
                 ["inspect", trained_run, latin1]):
        assert invoke(*args).exit_code == 1
        result = invoke(*args, "--encoding-errors", "ignore", "--unknown", "skip")
        assert result.exit_code == 0, result.output


def test_sample_is_reproducible_and_stdout_only_text(invoke, trained_run):
    a = invoke("sample", trained_run, "--prompt", "the ", "--length", "40", "--seed", "3")
    b = invoke("sample", trained_run, "--prompt", "the ", "--length", "40", "--seed", "3", "--no-stream")
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout and a.stdout.startswith("the ") and len(a.stdout) == len("the ") + 40 + 1
    many = invoke("sample", trained_run, "-p", "a", "-n", "10", "--num-samples", "3", "--seed", "1")
    assert many.exit_code == 0 and many.stdout.count("─" * 40) == 2


def script_generation(monkeypatch, ids):
    """Until the test ends, `charlm sample` generates ``ids`` (the same for every sample), not the model's."""
    import torch

    from charlm import sampling

    def scripted(model, prompt_ids, length, config, num_samples, *args):
        for token_id in ids[:length]:
            yield torch.full((num_samples,), token_id)

    monkeypatch.setattr(sampling, "generate", scripted)


def test_sample_under_nfd_joins_the_prompt_and_finishes_its_last_syllable(invoke, tmp_path, monkeypatch):
    from charlm import checkpoint

    corpus = tmp_path / "ko.txt"
    corpus.write_text("어제 나는 공원에서 사과를 샀다.\n" * 30, encoding="utf-8")
    run = tmp_path / "run"
    assert invoke("train", corpus, "--normalize", "nfd", "--out", run, "--max-steps", "2",
                  *TINY_MODEL_ARGS).exit_code == 0
    jamo = checkpoint.load(run).tokenizer.encode("ᆼ원에서").tolist()
    script_generation(monkeypatch, jamo)  # the model "writes" ᆼ ᄋ ᅯ ᆫ ᄋ ᅦ …
    for options in ([], ["--no-stream"], ["--num-samples", "2"]):
        result = invoke("sample", run, "-p", "어제 나는 고", "-n", "2", *options)
        assert result.exit_code == 0, result.output
        assert result.stdout.split("\n")[0] == "어제 나는 공워"  # not 고 + a lone ᆼ, nor a lone ᄋ at the end


def test_sample_to_a_terminal_draws_control_characters_instead_of_obeying_them(invoke, trained_run, tmp_path,
                                                                               monkeypatch):
    import click.testing

    run = tmp_path / "bytes"
    assert invoke("train", trained_run.parent / "tiny.txt", "--level", "byte", "--out", run, "--max-steps", "1",
                  *TINY_MODEL_ARGS).exit_code == 0
    written = list("ab\x1b[2J\rc".encode())  # a byte-level model may write any byte, ESC (clear screen) included
    script_generation(monkeypatch, written)
    assert invoke("sample", run, "-p", "the", "-n", "8").stdout == "theab\x1b[2J\rc\n"  # a pipe gets the text as is
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: True)
    assert invoke("sample", run, "-p", "the", "-n", "8").stdout == "theab\u241b[2J\u240dc\n"


def test_greedy_sampling_is_deterministic(invoke, trained_run):
    a = invoke("sample", trained_run, "-p", "the", "-n", "30", "-t", "0", "--seed", "1")
    b = invoke("sample", trained_run, "-p", "the", "-n", "30", "-t", "0", "--seed", "2")
    assert a.stdout == b.stdout


@pytest.mark.parametrize("args, message", [
    (["sample", "{run}", "-t", "-1"], "--temperature"),
    (["sample", "{run}", "--top-p", "0"], "--top-p"),
    (["sample", "{run}", "--top-p", "1.5"], "--top-p"),
    (["sample", "{run}", "-k", "-2"], "--top-k"),
    (["sample", "{run}", "-n", "-5"], "--length"),
    (["sample", "{run}", "-p", "XYZ"], "never saw"),
    (["sample", "/no/such/run"], "does not exist"),
    (["eval", "{corpus}"], "is a file"),
    (["train", "/no/such/file.txt"], "no file, folder or shipped corpus"),
    (["train", "{corpus}", "--hidden", "0"], "--hidden"),
    (["train", "{corpus}", "--time-budget", "soon"], "duration"),
    (["train", "{corpus}", "--device", "cuda"], "CUDA is not available"),
    (["train", "--resume", "{run}", "--seq-len", "8", "--lr", "5"], "drop --seq-len, --lr"),  # not silently ignored
    (["train", "{corpus}", "--resume", "{run}"], "drop CORPUS"),
    (["train", "{corpus}", "--save-every", "0"], "--save-every"),
    (["eval", "{run}", "{run}", "--text", "{latin1}"], "--encoding-errors replace"),
    (["eval", "{run}", "{run}", "--text", "{korean}"], "{run}: text has"),  # which checkpoint, of several
])
def test_bad_input_gives_one_line_error(invoke, trained_run, tiny_corpus, tmp_path, args, message):
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "korean.txt").write_text("고양이", encoding="utf-8")
    files = dict(run=trained_run, corpus=tiny_corpus, latin1=tmp_path / "latin1.txt", korean=tmp_path / "korean.txt")
    args, message = [a.format(**files) for a in args], message.format(**files)
    if "--device" in args:
        import torch
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_refuses_to_overwrite_a_run(invoke, trained_run, tiny_corpus):
    result = invoke("train", tiny_corpus, "--out", trained_run, "--max-steps", "1")
    assert result.exit_code == 1 and "--resume" in result.stderr and "--force" in result.stderr


def test_a_run_that_saved_nothing_is_named_so_and_ctrl_c_before_training_exits_130(invoke, tiny_corpus, tmp_path,
                                                                                   monkeypatch):
    from charlm.cli import train

    run = tmp_path / "run"
    assert invoke("train", tiny_corpus, "--out", run, "--max-steps", "2", *TINY_MODEL_ARGS).exit_code == 0
    for name in ("model.safetensors", "last.safetensors"):  # as if stopped between writing config.json and a save
        (run / name).unlink()
    refused = invoke("train", tiny_corpus, "--out", run, "--max-steps", "2")
    assert refused.exit_code == 1 and "stopped before it saved anything" in refused.stderr
    assert "--force" in refused.stderr

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_new_run", interrupted)  # Ctrl-C while the corpus is read
    result = invoke("train", tiny_corpus, "--out", tmp_path / "other")
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted" and "Traceback" not in result.output


def test_force_replaces_a_run_and_keeps_other_files(invoke, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert invoke("train", tiny_corpus, "--out", out, "--max-steps", "2", *TINY_MODEL_ARGS).exit_code == 0
    (out / "notes.txt").write_text("mine")
    first = (out / "config.json").read_text()
    refused = invoke("train", tiny_corpus, "--out", out, "--max-steps", "3", *TINY_MODEL_ARGS)
    assert refused.exit_code == 1 and (out / "config.json").read_text() == first  # untouched
    replaced = invoke("train", tiny_corpus, "--out", out, "--max-steps", "3", "--force", *TINY_MODEL_ARGS)
    assert replaced.exit_code == 0, replaced.output
    assert '"max_steps": 3' in (out / "config.json").read_text()
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    (["train", "hihello", "--cell", "transformer"], "'transformer' is not one of"),
    (["train", "hihello", "--lr", "abc"], "'abc' is not a valid float"),
    (["sample", "--no-such-option"], "No such option '--no-such-option'"),
    (["trian"], "No such command 'trian'"),
])
def test_a_mistyped_command_line_is_one_line_with_the_help_to_read(invoke, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert message in result.stderr and "--help')" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("cell, args, lr", [("lstm", [], 1e-2), ("gru", [], 3e-3), ("rnn", [], 3e-3),
                                              ("gru", ["--lr", "0.02"], 0.02)])
def test_the_default_learning_rate_depends_on_the_cell(invoke, tiny_corpus, tmp_path, cell, args, lr):
    out = tmp_path / cell
    result = invoke("train", tiny_corpus, "--out", out, "--max-steps", "1", "--cell", cell, "--hidden", "8",
                    "--embed", "4", "--layers", "1", "--batch-size", "2", "--seq-len", "8", *args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == lr


@pytest.mark.parametrize("args, model", [(["--time-budget", "2m"], "LSTM 1×256"), (["--time-budget", "5m"],
                                                                                   "GRU 1×384"),
                                         (["--time-budget", "10m"], "GRU 1×384"), (["--time-budget", "11m"],
                                                                                   "GRU 1×384"),
                                         (["--time-budget", "5m", "--hidden", "64"], "GRU 1×64"), ([], "LSTM 1×256"),
                                         (["--time-budget", "5m", "--tie-weights"],
                                          "GRU 1×4")])  # the width of --embed 4
def test_the_default_width_depends_on_the_time_budget(invoke, tiny_corpus, tmp_path, args, model):
    result = invoke("train", tiny_corpus, "--out", tmp_path / "run", "--max-steps", "1", "--embed", "4", "--layers",
                    "1",
                    "--batch-size", "2", "--seq-len", "8", *args)
    assert result.exit_code == 0, result.output
    assert f"run: {model}," in result.stderr


@pytest.mark.parametrize("args, cell, dropout, drop_w, decay", [
    (["--time-budget", "60s"], "lstm", 0.1, 0, 0.1),
    (["--time-budget", "2m"], "lstm", 0.1, 0, 0.1),
    (["--time-budget", "5m"], "gru", 0.1, 0.1, 0.1),
    (["--time-budget", "10m"], "gru", 0.1, 0.1, 0.1),
    (["--time-budget", "30m"], "gru", 0.2, 0.3, 0.1),
    ([], "lstm", 0.2, 0, 0.01),  # bounded by --max-steps only
    (["--epochs", "1"], "lstm", 0.2, 0, 0.01),
    (["--time-budget", "60s", "--dropout", "0.3"], "lstm", 0.3, 0, 0.1),
    (["--time-budget", "5m", "--cell", "lstm"], "lstm", 0.1, 0.1, 0.1),
    (["--time-budget", "5m", "--weight-decay", "0"], "gru", 0.1, 0.1, 0),
    (["--time-budget", "5m", "--weight-drop", "0.25", "--dropout", "0.3"], "gru", 0.3, 0.25, 0.1),
    (["--time-budget", "1h", "--weight-drop", "0"], "gru", 0.2, 0, 0.1),
])
def test_the_default_cell_dropouts_and_weight_decay_depend_on_the_time_budget(invoke, tiny_corpus, tmp_path, args, cell,
                                                                               dropout, drop_w, decay):
    out = tmp_path / "run"
    result = invoke("train", tiny_corpus, "--out", out, "--max-steps", "1", "--hidden", "8", "--embed", "4",
                    "--layers", "1", "--batch-size", "2", "--seq-len", "8", *args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    model = config["model"]
    assert (model["cell"], model["dropout"], model["weight_drop"], config["train"]["weight_decay"]) == (
        cell, dropout, drop_w, decay)
    lr = {"lstm": "0.01", "gru": "0.003"}[cell]
    assert f"{cell.upper()} 1×8" in result.stderr
    drop_words = f"dropout {dropout:g}" + (f", weight drop {drop_w:g}" if drop_w else "")
    assert f"lr {lr}, {drop_words}, weight decay {decay:g}, device" in result.stderr


def test_empty_corpus_is_refused(invoke, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = invoke("train", empty, "--out", tmp_path / "run")
    assert result.exit_code == 1 and "empty" in result.stderr
    assert not (tmp_path / "run").exists()


def test_hihello_through_the_cli(invoke, tmp_path):
    out = tmp_path / "hh"
    result = invoke("train", "hihello", "--out", out, "--cell", "rnn", "--embed", "0", "--hidden", "8", "--layers", "1",
                    "--batch-size", "1", "--seq-len", "6", "--val-fraction", "0", "--max-steps", "150", "--lr", "0.05",
                    "--warmup", "0", "--dropout", "0")
    assert result.exit_code == 0, result.output
    sample = invoke("sample", out, "-p", "h", "-n", "6", "-t", "0")
    assert sample.stdout == "hihello\n"


def test_a_run_stopped_before_its_first_evaluation_can_be_sampled(invoke, tmp_path, tiny_corpus, monkeypatch):
    stop_training_at(monkeypatch, 5)  # evaluation comes every 20 steps
    stopped = invoke("train", tiny_corpus, "--out", tmp_path / "run", "--max-steps", "40", *TINY_MODEL_ARGS)
    monkeypatch.undo()
    assert stopped.exit_code == 130
    sampled = invoke("sample", tmp_path / "run", "-p", "the", "-n", "10")
    assert sampled.exit_code == 0 and sampled.stdout.startswith("the"), sampled.output
    assert invoke("train", "--resume", tmp_path / "run").exit_code == 0
    from charlm import checkpoint

    assert "val_loss" in checkpoint.load(tmp_path / "run").weights  # the best weights by validation now


def test_resume_keeps_best_weights_saved_after_its_last_state(invoke, tmp_path, tiny_corpus, monkeypatch):
    """With --save-every, an evaluation can write model.safetensors after last.safetensors was saved; a
    crash then leaves the training state with an older best, which must not overwrite the better weights."""
    from charlm import checkpoint

    run = tmp_path / "run"
    stop_training_at(monkeypatch, 25)
    assert invoke("train", tiny_corpus, "--out", run, "--max-steps", "60", *TINY_MODEL_ARGS).exit_code == 130
    monkeypatch.undo()
    best = checkpoint.load(run)
    checkpoint.save_weights(run, best.model, {**best.weights, "val_loss": 0.001, "val_bpc": 0.002})  # unbeatable
    resumed = invoke("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint.load(run).weights["val_loss"] == 0.001
    assert "0.0020" in resumed.stdout  # its bits per character in the summary (not 0.001 nats in bits: 0.0014)


def test_a_run_given_a_relative_corpus_path_resumes_and_evaluates_from_another_folder(invoke, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny.txt").write_text(TINY_TEXT, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "data")
    stop_training_at(monkeypatch, 10)
    assert invoke("train", "tiny.txt", "--out", tmp_path / "run", "--max-steps", "30",
                  *TINY_MODEL_ARGS).exit_code == 130
    monkeypatch.undo()  # back in the first folder: tiny.txt is not here
    assert json.loads((tmp_path / "run" / "config.json").read_text())["corpus"]["source"] == "tiny.txt"
    resumed = invoke("train", "--resume", tmp_path / "run")
    assert resumed.exit_code == 0, resumed.output
    assert invoke("eval", tmp_path / "run").exit_code == 0


def test_a_crash_between_saves_does_not_cut_a_resumed_run_short(invoke, tmp_path, tiny_corpus, monkeypatch):
    """--save-every 7 with evaluations every 10: a crash right after the evaluation at step 10 leaves the state
    of step 7 and the weights of step 10. Replaying step 10 must count as an improvement (--patience 1 would
    stop the run there otherwise) and must not replace the saved weights with the same or worse ones."""
    from charlm import checkpoint
    from charlm.train import EvalReport, Trainer

    run_dir, args = tmp_path / "run", ["--max-steps", "30", *TINY_MODEL_ARGS, "--eval-every", "10", "--patience", "1"]
    run = Trainer.run

    def crash_after_the_first_evaluation(self):
        for report in run(self):
            yield report
            if isinstance(report, EvalReport):
                raise KeyboardInterrupt  # the second Ctrl-C: out at once, nothing more saved

    monkeypatch.setattr(Trainer, "run", crash_after_the_first_evaluation)
    assert invoke("train", tiny_corpus, "--out", run_dir, "--save-every", "7", *args).exit_code == 130
    monkeypatch.undo()
    assert checkpoint.read_weights_summary(run_dir)["step"] == 10
    resumed = invoke("train", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert checkpoint.read_metrics(run_dir)[-1]["step"] > 10  # not stopped by the replayed evaluation at step 10


def test_a_second_stop_before_any_evaluation_keeps_the_newer_weights(invoke, tmp_path, tiny_corpus, monkeypatch):
    from charlm import checkpoint

    run_dir = tmp_path / "run"
    stop_training_at(monkeypatch, 5)  # reports come every 10 steps: it stops at step 11
    args = ["--max-steps", "60", *TINY_MODEL_ARGS, "--eval-every", "50"]
    assert invoke("train", tiny_corpus, "--out", run_dir, *args).exit_code == 130
    first = checkpoint.read_weights_summary(run_dir)["step"]
    monkeypatch.undo()
    stop_training_at(monkeypatch, first + 5)  # again before the first evaluation (step 50)
    assert invoke("train", "--resume", run_dir).exit_code == 130
    assert checkpoint.read_weights_summary(run_dir)["step"] > first


def test_eval_unknown_skip_under_nfd_counts_every_character_it_still_predicts(invoke, tmp_path):
    """Under NFD a text with nothing unknown scores alike under error and skip; an 'é' whose accent the model
    never saw keeps its 'e', which is scored, so it still counts; a character with nothing left does not."""
    import unicodedata

    corpus = tmp_path / "mixed.txt"
    corpus.write_text("어제 나는 공원에서 사과를 샀다. cafe\n" * 30, encoding="utf-8")
    run = tmp_path / "run"
    assert invoke("train", corpus, "--normalize", "nfd", "--out", run, "--max-steps", "2",
                  *TINY_MODEL_ARGS).exit_code == 0
    known, mixed = tmp_path / "nfd.txt", tmp_path / "mixed-text.txt"
    known.write_text(unicodedata.normalize("NFD", "나는 공원에서 사과를 샀다.\n"), encoding="utf-8")
    mixed.write_text("나는 café에서 ☃ 샀다.\n", encoding="utf-8")  # é: 'e' + an unseen accent; ☃: unseen

    def figures(text, policy):
        return json.loads(invoke("eval", run, "--text", text, "--unknown", policy, "--json").stdout)

    error, skip = figures(known, "error"), figures(known, "skip")
    assert skip["characters"] == error["characters"] and skip["bpc"] == pytest.approx(error["bpc"])
    assert figures(mixed, "skip")["characters"] == len("나는 café에서 ☃ 샀다.\n") - 1 - 1  # ☃, and the first '나'


def test_interrupted_run_resumes_to_the_same_weights(invoke, tmp_path, tiny_corpus, monkeypatch):
    args = ["--max-steps", "40", *TINY_MODEL_ARGS, "--dropout", "0.1"]
    straight = invoke("train", tiny_corpus, "--out", tmp_path / "a", *args)
    assert straight.exit_code == 0, straight.output

    stop_training_at(monkeypatch, 20)
    stopped = invoke("train", tiny_corpus, "--out", tmp_path / "b", *args)
    assert stopped.exit_code == 130 and "--resume" in stopped.stderr
    monkeypatch.undo()
    resumed = invoke("train", "--resume", tmp_path / "b")
    assert resumed.exit_code == 0, resumed.output
    a, b = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), name  # bit-identical on CPU


def test_a_log_gets_one_complete_line_per_evaluation(invoke, tiny_corpus, tmp_path):
    """stderr redirected to a file: no bar, and after each evaluation a line with the step, epoch, train and
    validation loss, bpc, tokens/s, elapsed time and ETA."""
    result = invoke("train", tiny_corpus, "--out", tmp_path / "run", "--max-steps", "40", *TINY_MODEL_ARGS)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["20", "40"]  # --eval-every 20
    for word in ("epoch", "train", "val", "ppl", "bpc", "tok/s", "elapsed", "ETA"):
        assert all(f" {word} " in line for line in lines), word
    assert "train 100%" not in result.stderr and "━" not in result.stderr  # no bar drawn into the log


def test_a_killed_run_leaves_a_log_that_says_how_far_it_got(corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "train.log"
    with open(log, "w") as err:
        command = [sys.executable, "-m", "charlm", "train", str(corpus), "--out", str(tmp_path / "run"),
                   "--max-steps", "100000", *TINY_MODEL_ARGS]
        process = subprocess.Popen(command, stderr=err, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while "step 40 " not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.2)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    text = log.read_text()
    assert "step 20 " in text and "step 40 " in text and text.endswith("\n")


def test_eval_says_how_many_characters_each_model_never_saw(invoke, trained_run, tmp_path):
    """Side by side on one text, a char model that scored characters as <unk> is marked and not ranked."""
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat. THE END!\n" * 20, encoding="utf-8")  # 'T', 'H', … never seen
    byte_run = tmp_path / "bytes"
    assert invoke("train", trained_run.parent / "tiny.txt", "--level", "byte", "--out", byte_run, "--max-steps", "2",
                  *TINY_MODEL_ARGS).exit_code == 0
    rows = json.loads(invoke("eval", trained_run, byte_run, "--text", text, "--unknown", "unk", "--json").stdout)
    unseen = sum(ch in "THEND!" for ch in text.read_text())
    assert rows[0]["unknown_characters"] == unseen and rows[0]["unknown_share"] == pytest.approx(unseen / 660)
    assert rows[1]["unknown_characters"] == 0
    table = invoke("eval", trained_run, byte_run, "--text", text, "--unknown", "unk").stdout
    assert f"{unseen} ({unseen / 660:.1%}) †" in table and "its figures do not compare" in table
    best = [line for line in table.splitlines() if line.startswith("│") and " * " in line]
    assert len(best) == 1 and str(byte_run) in best[0]  # only the model that read everything is ranked


def test_shell_completion_offers_shipped_corpora_and_models():
    from click.shell_completion import ShellComplete

    from charlm.cli import cli

    complete = ShellComplete(cli, {}, "charlm", "_CHARLM_COMPLETE")
    corpora = complete.get_completions(["train"], "kor")
    assert [i.value for i in corpora if i.type == "plain"] == ["korean_bills"] and corpora[-1].type == "file"
    runs = complete.get_completions(["sample"], "shak")
    assert [i.value for i in runs if i.type == "plain"] == ["shakespeare-lstm"] and runs[-1].type == "dir"
    assert [i.value for i in complete.get_completions(["train", "--from"], "sh") if i.type == "plain"] == [
        "shakespeare-lstm"]
