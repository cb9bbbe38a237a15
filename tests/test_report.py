"""Training curves: reading metrics.jsonl, the figures, the terminal chart, the PNG and the command."""

import json

import pytest

from charlm.cli import charts
from charlm.cli.explore import report_rows
from charlm.explore import curves


@pytest.fixture
def written_run(tmp_path, trained_run):
    """A copy of the trained run's config with metrics written by hand, so every figure is known."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((trained_run / "config.json").read_text())
    records = [{"type": "train", "step": s, "loss": 3.0 - s / 100, "elapsed": s * 3.0, "lr": 1e-3,
                "tokens_per_s": 1000.0 + s} for s in (10, 20, 30, 40)]
    records += [{"type": "val", "step": 20, "loss": 2.5, "bpc": 3.6, "perplexity": 12.2, "elapsed": 61.0},
                {"type": "val", "step": 40, "loss": 2.25, "bpc": 3.25, "perplexity": 9.5, "elapsed": 121.0},
                {"type": "event", "step": 33, "kind": "rollback", "message": "loss was NaN; rolled back"}]
    lines = [json.dumps(r) for r in records] + ['{"type": "train", "step": 50, "lo']  # a torn last line
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_read_curves_and_figures(written_run):
    run = curves.read_curves(written_run)
    assert run.train.step == [10, 20, 30, 40] and run.val.loss == [2.5, 2.25]
    rows = dict(report_rows(run))
    assert rows["steps"] == "40" and rows["time"] == "2.0 min"  # the last record: val at 121 s
    assert rows["best val loss"] == "2.2500 at step 40" and rows["best val bpc"] == "3.2500"
    assert rows["tokens/s while training (median)"] == "1,025" and rows["last train loss"] == "2.6000"
    assert rows["events"] == "1; last: loss was NaN; rolled back"
    assert rows["model"].startswith("LSTM 1×16")
    assert curves.time_axis(run) == (60.0, "min")


def test_lines_that_are_not_utf8_or_not_records_are_skipped(invoke, written_run):
    metrics = written_run / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    lines[2:2] = [b"\xe3\x28\xff garbage\n", b"42\n", bytes(range(256)) + b"\n"]  # bad UTF-8, a number, noise
    metrics.write_bytes(b"".join(lines))
    run = curves.read_curves(written_run)
    assert run.train.step == [10, 20, 30, 40] and run.val.loss == [2.5, 2.25]
    result = invoke("report", written_run, "--no-chart")
    assert result.exit_code == 0, result.output
    assert "2.2500 at step 40" in result.stdout


def test_terminal_chart_has_both_axes_and_both_curves(written_run):
    chart = charts.curves_chart([curves.read_curves(written_run)], width=80, height=30, colour=False)
    assert "\x1b[" not in chart
    assert "loss (nats/token) vs step" in chart and "loss (nats/token) vs wall time (min)" in chart
    assert chart.count("train") == 2 and chart.count("val") == 2 and "●" in chart
    assert max(len(line) for line in chart.splitlines()) <= 80


def test_png_is_a_picture(written_run):
    pytest.importorskip("matplotlib")
    data = charts.curves_png([curves.read_curves(written_run)], "a run", dpi=40)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_report_command(invoke, trained_run, tmp_path):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "curves.png"
    result = invoke("report", trained_run, "--png", picture)
    assert result.exit_code == 0, result.output
    assert "best val loss" in result.stdout and "vs wall time" in result.stdout
    assert picture.read_bytes()[:4] == b"\x89PNG" and f"wrote {picture}" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
    quiet = invoke("report", trained_run, "--no-chart")
    assert quiet.exit_code == 0 and "vs step" not in quiet.stdout


@pytest.mark.parametrize("args, message", [
    (["{tmp}/none"], "does not exist"),
    (["{tmp}"], "has no config.json"),
    (["{empty}"], "no training records"),
    (["{run}", "--png", "{tmp}/no/dir/c.png"], "does not exist"),
    (["{run}", "--png", "{tmp}"], "is a folder: give a file name, e.g. --png {tmp}/curves.png"),
    (["{run}", "--height", "3"], "--height"),
])
def test_bad_input_gives_one_line_error(invoke, trained_run, tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((trained_run / "config.json").read_text())
    result = invoke("report", *[a.format(run=trained_run, tmp=tmp_path, empty=empty) for a in args])
    assert result.exit_code == 1
    assert message.format(tmp=tmp_path) in result.stderr and result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_png_without_matplotlib_is_a_clear_error(invoke, trained_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = invoke("report", trained_run, "--no-chart", "--png", tmp_path / "c.png")
    assert result.exit_code == 1 and "pip install 'charlm[plot]'" in result.stderr


def test_help_ends_with_examples(invoke):
    result = invoke("report", "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "charlm report checkpoints/" in result.stdout
