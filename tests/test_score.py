"""Surprisal: against a naive one-prefix-at-a-time reference, a stored snapshot of a fixed model, and the command."""

import codecs
import json
import math
import os

import numpy as np
import pytest
import torch

from charlm import checkpoint
from charlm.cli import display
from charlm.config import ModelConfig, TrainConfig
from charlm.explore import surprisal
from charlm.model import RNNLM
from charlm.tokenizers import CharTokenizer

SNAPSHOT_TEXT = "abc cab.\nba ca"
# bits of each character of SNAPSHOT_TEXT under fixed_model(); the first has no prediction
SNAPSHOT_BITS = [math.nan, 5.2212, 4.7677, 3.6679, 4.6538, 2.7585, 5.5436, 0.9888, 4.5801, 4.0229, 4.874, 2.4112,
                 4.7102, 2.7136]
SNAPSHOT_OUTPUT = """\
abc cab.⏎
 ▆▅▄▅▃▆▁▅
ba ca
▅▅▃▅▃

▁ 0 bits … █ 8+ bits
{run} on --text
┌────────────────────┬──────────┐
│ characters scored  │ 13 of 14 │
│ total bits         │     50.9 │
│ bits per character │    3.916 │
└────────────────────┴──────────┘
most surprising spans of 3 characters
┏━━━━━━━━━━┳━━━━━━┳━━━━━━┳━━━━━━━━━━━┓
┃ line:col ┃ text ┃ bits ┃ bits/char ┃
┡━━━━━━━━━━╇━━━━━━╇━━━━━━╇━━━━━━━━━━━┩
│      1:2 │ bc␣  │ 13.7 │      4.55 │
│      1:9 │ ⏎ba  │ 13.5 │      4.49 │
│      1:5 │ cab  │ 13.0 │      4.32 │
└──────────┴──────┴──────┴───────────┘
"""


def fixed_model():
    """A one-layer LSTM whose weights are set by formula (no RNG): parameter i, element k = 1.5 sin(0.7 k + i)."""
    tokenizer = CharTokenizer("abc .\n")
    model = RNNLM(ModelConfig(cell="lstm", num_layers=1, hidden_size=6, embed_size=4, dropout=0.0),
                  tokenizer.vocab_size)
    with torch.no_grad():
        for i, (_, p) in enumerate(sorted(model.named_parameters())):
            k = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((1.5 * torch.sin(0.7 * k + i)).reshape(p.shape))
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fixed") / "run"
    model, tokenizer = fixed_model()
    checkpoint.create_run(run_dir, tokenizer, model.config, TrainConfig(max_steps=1), {"source": "formula"}, "test")
    checkpoint.save_weights(run_dir, model, {"step": 0})
    return run_dir


@pytest.fixture(scope="module")
def korean_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("korean") / "run"
    tokenizer = CharTokenizer("어제 나는 공원에서 산책했다.\n")
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell="gru", num_layers=1, hidden_size=6, embed_size=4, dropout=0.0), tokenizer.vocab_size)
    checkpoint.create_run(run_dir, tokenizer, model.config, TrainConfig(max_steps=1), {"source": "random"}, "test")
    checkpoint.save_weights(run_dir, model, {"step": 0})
    return run_dir


# ----- the numbers ------------------------------------------------------------------------------------------


def naive_bits(model, ids):
    """Bits of token t from a fresh forward pass over tokens 0..t-1, for each t: no carried state at all."""
    out = [math.nan]
    with torch.no_grad():
        for t in range(1, len(ids)):
            logits, _ = model(torch.tensor(ids[:t], dtype=torch.long).unsqueeze(0))  # (1, t, V)
            out.append(-torch.log_softmax(logits[0, -1].double(), -1)[ids[t]].item() / math.log(2))
    return np.array(out)


@pytest.mark.parametrize("chunk", [4096, 3])  # one pass, and chunks with the state carried across
def test_bits_match_a_naive_reference(monkeypatch, chunk):
    monkeypatch.setattr(surprisal, "CHUNK", chunk)
    torch.manual_seed(1)
    tokenizer = CharTokenizer("abc .\n")
    model = RNNLM(ModelConfig(cell="gru", num_layers=2, hidden_size=8, embed_size=4, dropout=0.3), tokenizer.vocab_size)
    model.train()  # token_bits must turn dropout off itself, and put the mode back
    ids = tokenizer.encode("abc cab. ba\nca bc").astype(np.int64)
    expected = naive_bits(model.eval(), ids)
    model.train()
    got = surprisal.token_bits(model, ids)
    assert model.training
    np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)


def test_snapshot_of_a_fixed_model():
    model, tokenizer = fixed_model()
    scored = surprisal.score(model, tokenizer, SNAPSHOT_TEXT)
    np.testing.assert_allclose(scored.bits, SNAPSHOT_BITS, atol=2e-4, equal_nan=True)
    assert scored.text == SNAPSHOT_TEXT and scored.scored_chars == len(SNAPSHOT_TEXT) - 1
    assert scored.total_bits == pytest.approx(np.nansum(SNAPSHOT_BITS), abs=1e-3)
    assert scored.bpc == pytest.approx(np.nansum(SNAPSHOT_BITS) / 13, abs=1e-4)
    spans = surprisal.surprising_spans(scored, 3, 3)
    assert [(s.text, s.line, s.column) for s in spans] == [("bc ", 1, 2), ("\nba", 1, 9), ("cab", 1, 5)]
    assert spans[0].bits == pytest.approx(sum(SNAPSHOT_BITS[1:4]), abs=1e-3)


def test_context_lets_the_first_character_be_scored():
    model, tokenizer = fixed_model()
    whole = surprisal.score(model, tokenizer, "ab" + SNAPSHOT_TEXT)
    after = surprisal.score(model, tokenizer, SNAPSHOT_TEXT, context="ab")
    np.testing.assert_allclose(after.bits, whole.bits[2:], rtol=1e-9)
    assert after.scored_chars == len(SNAPSHOT_TEXT)


class PairTokenizer:
    """A stand-in subword tokenizer: 'ab' is one token, every other character its own."""

    pieces = ["<unk>", "ab", "a", "b", "c", " "]
    vocab_size = len(pieces)

    class Decoder:
        def feed(self, token_id):
            return PairTokenizer.pieces[token_id]

        def flush(self):
            return ""

    def encode(self, text, unknown="error"):
        ids, i = [], 0
        while i < len(text):
            step = 2 if text.startswith("ab", i) else 1
            ids.append(self.pieces.index(text[i:i + step]))
            i += step
        return np.array(ids, dtype=np.int64)

    def token(self, token_id):
        return self.pieces[token_id]

    def incremental_decoder(self):
        return self.Decoder()


class Utf8BytesTokenizer:
    """A stand-in byte-level tokenizer: ids are UTF-8 bytes, decoded as they complete a character."""

    vocab_size = 256

    def encode(self, text, unknown="error"):
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def token(self, token_id):
        return chr(token_id) if token_id < 128 else f"<0x{token_id:02X}>"

    def incremental_decoder(self):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        class Decoder:
            def feed(self, token_id):
                return decoder.decode(bytes([token_id]))

            def flush(self):
                return decoder.decode(b"", final=True)

        return Decoder()


def test_a_tokens_bits_are_spread_over_its_characters():
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell="lstm", num_layers=1, hidden_size=8, embed_size=4, dropout=0.0), 6).eval()
    scored = surprisal.score(model, PairTokenizer(), "c ab ab")
    assert scored.tokens == ["c", " ", "ab", " ", "ab"] and scored.text == "c ab ab"
    assert scored.char_bits[2] == scored.char_bits[3] == pytest.approx(scored.bits[2] / 2)
    assert np.nansum(scored.char_bits) == pytest.approx(scored.total_bits)


def test_a_multi_byte_character_gets_the_bits_of_all_its_bytes():
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(cell="gru", num_layers=1, hidden_size=8, embed_size=4, dropout=0.0), 256).eval()
    scored = surprisal.score(model, Utf8BytesTokenizer(), "aé—b")  # 1 + 2 + 3 + 1 bytes
    assert scored.text == "aé—b" and scored.tokens[1] == "<0xC3>" and len(scored.bits) == 7
    b = scored.bits
    np.testing.assert_allclose(scored.char_bits[1:], [b[1] + b[2], b[3] + b[4] + b[5], b[6]])
    assert math.isnan(scored.char_bits[0]) and scored.scored_chars == 3
    assert scored.bpc == pytest.approx(np.nansum(b) / 3)


def test_spans_do_not_overlap_and_know_their_line():
    #   text       a  b  ⏎  c  d  ⏎  e  f
    #   bits       0  1  0  5  5  0  0  9     windows of 2: 1 1 5 10 5 0 9
    scored = surprisal.Scored(list("ab\ncd\nef"), np.zeros(8), "ab\ncd\nef", np.array([0, 1, 0, 5, 5, 0, 0, 9.0]))
    spans = surprisal.surprising_spans(scored, count=5, width=2)
    assert [(s.text, s.bits, s.line, s.column) for s in spans] == [("cd", 10, 2, 1), ("ef", 9, 3, 1), ("ab", 1, 1, 1)]


def test_plain_heatmap_bars_are_as_wide_as_their_characters():
    #   text     어   제   ␣    Ａ   e    ◌́    b        the syllables and the fullwidth Ａ take 2 columns, ◌́ none
    #   bits     0    8    nan  4    8    8    0
    #   bar      ▁▁   ██   ␣    ▅▅   █         ▁
    heat = display.cells(["어", "제", " ", "Ａ", "e", "\u0301", "b"], [0, 8, math.nan, 4, 8, 8, 0], display.sequential,
                         8, "bits")
    assert display.plain_heatmap(heat, 0, 8) == "어제 Ａe\u0301b\n▁▁██ ▅▅█▁"
    assert display.columns("어제 Ａé") == 8 and display.columns("e\u0301") == 1 and display.columns("␣⏎") == 2


def test_colour_scales():
    assert display.sequential(0, 8) == display.SEQUENTIAL[0] and display.sequential(99, 8) == display.SEQUENTIAL[-1]
    assert display.diverging(0, 1) == display.DIVERGING[2] and display.diverging(-1, 1) == display.DIVERGING[0]
    assert display.sequential(math.nan, 8) is None
    assert display.ink((255, 255, 204)) == (0, 0, 0) and display.ink((128, 0, 38)) == (255, 255, 255)


# ----- the command ------------------------------------------------------------------------------------------


def test_score_output_snapshot(invoke, fixed_run):
    # on CPU: a GPU's arithmetic can move the last printed digit
    result = invoke("score", fixed_run, "--text", SNAPSHOT_TEXT, "--spans", "3", "--span-width", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stdout == SNAPSHOT_OUTPUT.format(run=fixed_run)


def test_score_json_and_file(invoke, fixed_run, tmp_path):
    text_file = tmp_path / "t.txt"
    text_file.write_text(SNAPSHOT_TEXT, encoding="utf-8")
    result = invoke("score", fixed_run, text_file, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["scored_characters"] == 13 and figures["bpc"] == pytest.approx(3.9164, abs=1e-3)
    assert figures["token_bits"][0] == ["a", None] and figures["token_bits"][1][1] == pytest.approx(5.2212, abs=1e-3)


def test_score_html_is_self_contained_and_written_atomically(invoke, fixed_run, tmp_path):
    page = tmp_path / "score.html"
    result = invoke("score", fixed_run, "--text", SNAPSHOT_TEXT, "--html", page)
    assert result.exit_code == 0, result.output
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "<script" not in html and "src=" not in html and "http" not in html
    assert html.count("background:#") == 13 + 16  # 13 scored characters, 16 legend cells
    assert "&#x27;b&#x27;: 5.544 bits" in html  # the tooltip of the costliest character
    assert [p.name for p in tmp_path.iterdir()] == ["score.html"]  # no temporary file left


def test_show_limits_the_heatmap_not_the_figures(invoke, fixed_run):
    result = invoke("score", fixed_run, "--text", SNAPSHOT_TEXT * 3, "--show", "5", "--json")
    shown = json.loads(result.stdout)
    assert shown["scored_characters"] == 3 * len(SNAPSHOT_TEXT) - 1
    assert shown["text_characters"] == 3 * len(SNAPSHOT_TEXT)
    result = invoke("score", fixed_run, "--text", SNAPSHOT_TEXT * 3, "--show", "5")
    assert result.stdout.startswith("abc c\n") and "showing the first 5 of 42 characters" in result.stderr


def test_plain_heatmap_of_wide_characters_lines_up(invoke, korean_run):
    result = invoke("score", korean_run, "--text", "어제 나는\n공원에서")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "어제 나는⏎" and lines[2] == "공원에서"
    assert len(lines[1]) == display.columns(lines[0]) == 10  # 2 + 2 + 1 + 2 + 2 + 1 (⏎)
    assert lines[1].startswith("  ") and " " not in lines[1][2:]  # the first syllable has no bits: two blanks
    assert len(lines[3]) == display.columns(lines[2]) == 8


@pytest.mark.parametrize("args, message", [
    (["{run}"], "either as a FILE argument or with --text"),
    (["{run}", "{tmp}/t.txt", "--text", "ab"], "not both or neither"),
    (["{run}", "--text", ""], "--text is empty"),
    (["{run}", "{tmp}/missing.txt"], "no file"),
    (["{run}", "{tmp}"], "is not a regular file"),
    (["{run}", "--text", "a"], "one character alone"),
    (["{run}", "--text", "abZ"], "never saw: 'Z'"),
    (["{run}", "--text", "ab", "--context", "aZ"], "--context text has 1 character(s) the model never saw: 'Z'"),
    (["{run}", "--text", "ab", "--html", "{tmp}/no/such/dir/x.html"], "does not exist"),
    (["{run}", "--text", "ab", "--html", "{tmp}"], "is a folder: give a file name, e.g. --html {tmp}/score.html"),
    (["{run}", "--text", "ab", "--max-bits", "0"], "--max-bits"),
    (["{tmp}/nothing", "--text", "ab"], "does not exist"),
])
def test_bad_input_gives_one_line_error(invoke, fixed_run, tmp_path, args, message):
    (tmp_path / "t.txt").write_text("abc", encoding="utf-8")
    result = invoke("score", *[a.format(run=fixed_run, tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert message.format(tmp=tmp_path) in result.stderr and result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_unwritable_html_folder_is_refused_before_scoring(invoke, fixed_run, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # root may write anywhere, so a read-only folder is simulated
    monkeypatch.setattr(os, "access", lambda path, mode: path != locked and real_access(path, mode))
    result = invoke("score", fixed_run, "--text", "ab", "--html", locked / "x.html")
    assert result.exit_code == 1 and "is not writable" in result.stderr


def test_help_ends_with_examples(invoke):
    result = invoke("score", "--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "charlm score checkpoints/" in result.stdout


@pytest.mark.parametrize("terminal", [dict(no_color=True), dict(color_system=None)], ids=["NO_COLOR", "dumb"])
def test_a_terminal_without_colour_gets_the_bar_line(invoke, fixed_run, monkeypatch, terminal):
    """On a terminal that shows no colour (NO_COLOR set, or TERM=dumb), the heatmap is the text with a line of
    level glyphs under it, as in a pipe: never the text alone with its colours stripped."""
    import io

    from rich.console import Console

    from charlm.cli import console

    screen = io.StringIO()
    monkeypatch.setattr(console, "out", Console(file=screen, force_terminal=True, width=100, **terminal))
    result = invoke("score", fixed_run, "--text", "abc cab.\n")
    assert result.exit_code == 0, result.output
    shown = screen.getvalue()
    assert "abc cab.⏎\n ▆▅▄▅▃▆▁▅" in shown and "▁ 0 bits … █ 8+ bits" in shown
    assert "\x1b[48;2" not in shown  # no background colours
