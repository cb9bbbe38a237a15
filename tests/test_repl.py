"""The REPL: its session state against fresh forward passes, and the real command driven through a pipe and a
pseudo-terminal as a person would use it."""

import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from charlm.cli.repl import escape, unescape
from charlm.config import ModelConfig, SampleConfig
from charlm.errors import CharlmError, TokenizerError
from charlm.model import RNNLM
from charlm.session import Session, summarize
from charlm.tokenizers import CharTokenizer

from conftest import char_tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    """The REPL runs its steps on one thread (repl.step_threads); so do these tests, and put it back after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_session(cell="lstm", **kwargs):
    torch.manual_seed(0)
    tokenizer = CharTokenizer("abc .\n")
    model = RNNLM(ModelConfig(cell=cell, num_layers=2, hidden_size=8, embed_size=4, dropout=0.0), tokenizer.vocab_size)
    return Session(model.eval(), tokenizer, **kwargs)


def fresh_probs(session, text):
    """The reference: one forward pass over the whole text from a zero state."""
    ids = torch.from_numpy(session.tokenizer.encode(text).astype("int64")).unsqueeze(0)  # (1, T)
    with torch.no_grad():
        logits, _ = session.model(ids)
    return torch.softmax(logits[0, -1], -1)


# ----- the session ------------------------------------------------------------------------------------------


def test_generated_jamo_compose_with_the_context_into_whole_syllables(monkeypatch):
    """Under --normalize nfd the model writes jamo: the jamo after 고 joins it (공), generation runs on to
    finish a syllable it began, the context stays NFC, and the state is that of the whole text read afresh."""
    import unicodedata

    torch.manual_seed(0)
    tokenizer = char_tokenizer("어제 나는 공원에서 사과를 샀다.\n", normalize="nfd")
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=8, embed_size=4, dropout=0.0), tokenizer.vocab_size)
    s = Session(model.eval(), tokenizer)
    s.feed("어제 나는 고")
    script = iter(tokenizer.encode("ᆼ원에").tolist())  # the model "writes" ᆼ ᄋ ᅯ ᆫ ᄋ ᅦ
    monkeypatch.setattr(s, "_next_token", lambda config: next(script))
    assert "".join(s.generate(2)) == "공워"  # ᆼ joins 고; ᄋ alone is unreadable, so ᅯ comes too
    assert s.context == "어제 나는 공워" == unicodedata.normalize("NFC", s.context)
    assert torch.allclose(s.probs(), fresh_probs(s, s.context), atol=1e-5)
    assert s.accept() == "원" and s.context == "어제 나는 공원"  # ᆫ: the last syllable comes back whole
    assert s.accept() == "\u110b" and s.context == "어제 나는 공원\u110b"  # one token, even if unfinished
    assert s.accept() == "에" and s.context == "어제 나는 공원에"  # the next one joins it
    assert torch.allclose(s.probs(), fresh_probs(s, s.context), atol=1e-5)


def test_generation_after_text_no_jamo_can_join_repeats_nothing(monkeypatch):
    tokenizer = char_tokenizer("hello 공원.\n", normalize="nfd")
    model = RNNLM(ModelConfig(num_layers=1, hidden_size=8, embed_size=4, dropout=0.0), tokenizer.vocab_size)
    s = Session(model.eval(), tokenizer)
    s.feed("hello 공")  # 공 has its final consonant: complete
    script = iter(tokenizer.encode("원").tolist())
    monkeypatch.setattr(s, "_next_token", lambda config: next(script))
    assert "".join(s.generate(0)) == "" and s.context == "hello 공"  # nothing drawn, nothing repeated
    assert "".join(s.generate(2)) == "워" and s.context == "hello 공워"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_incremental_state_matches_a_fresh_pass(cell):
    s = tiny_session(cell)
    for typed in ["c", "ca", "cab", "cab ", "cab", "cab a", "cab ab"]:  # typing, a backspace, a two-key jump
        assert torch.allclose(s.preview(typed), fresh_probs(s, typed), atol=1e-6), typed
    s.commit()
    s.feed("\nba")
    s.accept()
    s.sample_config = SampleConfig(temperature=1.0)
    generated = "".join(s.generate(7))
    assert len(generated) == 7 and s.context.endswith(generated)
    assert torch.allclose(s.probs(), fresh_probs(s, s.context), atol=1e-5)


def test_the_unknown_token_is_never_generated_or_accepted():
    s = tiny_session()
    with torch.no_grad():
        s.model.decoder.bias[s.tokenizer.unk_id] = 50.0  # the model all but insists on <unk>
    s.feed("ab")
    assert s.probs().argmax().item() == s.tokenizer.unk_id  # shown as what the model expects...
    assert "\ufffd" not in s.accept()  # ...but never written into the text
    for temperature in (0.0, 1.0):
        s.sample_config = SampleConfig(temperature=temperature)
        assert "\ufffd" not in "".join(s.generate(30))
    assert "\ufffd" not in s.context


def test_piped_input_with_a_refused_line_goes_on_then_exits_1(invoke):
    result = invoke("repl", "-k", "2", input="To be\nΩ\n:bogus\nor not\n:quit\n")  # Ω: no shipped model knows it
    assert result.exit_code == 1
    assert len(result.stdout.strip().splitlines()) == 2  # the two good lines were answered
    assert result.stderr.count("error:") == 2 and "Traceback" not in result.output
    clean = invoke("repl", "-k", "2", input="To be\n:quit\n")
    assert clean.exit_code == 0


def test_each_keystroke_costs_one_token_and_backspace_none():
    s = tiny_session()
    s.feed("abc " * 50)  # a long context: typing after it must not re-read it
    fed = s.tokens_fed
    for n in range(1, 6):
        s.preview("cab a"[:n])
        assert s.tokens_fed == fed + n
    s.preview("cab")  # backspace twice: back to a stored checkpoint, no model work
    assert s.tokens_fed == fed + 5
    s.commit()
    assert s.tokens_fed == fed + 5 and s.context.endswith("abc cab")


def test_undo_and_reset():
    s = tiny_session()
    s.feed("ab")
    before = s.probs().clone()
    s.feed("c a")
    s.accept()
    assert s.undo() and s.undo()
    assert s.context == "ab" and torch.equal(s.probs(), before)
    s.reset()
    assert s.context == "" and s.probs() is None and not s.undo()


def test_session_points_do_not_alias():
    """A stored state must not change when the session moves on (Predictor returns fresh tensors)."""
    s = tiny_session()
    s.feed("abc")
    h, c = (t.clone() for t in s.base.state)
    stored = s.base.state
    s.feed(" cab")
    list(s.generate(3))
    assert torch.equal(stored[0], h) and torch.equal(stored[1], c)


def test_preview_with_unknown_characters_leaves_the_session_as_it_was():
    s = tiny_session()
    s.preview("ab")
    with pytest.raises(TokenizerError):
        s.preview("abX")
    assert torch.allclose(s.probs(), fresh_probs(s, "ab"), atol=1e-6)


def test_generation_is_reproducible_and_greedy_is_deterministic():
    runs = []
    for _ in range(2):
        s = tiny_session(sample_config=SampleConfig(temperature=1.0), seed=5)
        s.feed("ab")
        runs.append("".join(s.generate(20)))
    assert runs[0] == runs[1]
    s = tiny_session(sample_config=SampleConfig(temperature=0))
    s.feed("ab")
    greedy = "".join(s.generate(5))
    s.undo()
    assert "".join(s.accept() for _ in range(5)) == greedy


def test_generation_stops_when_asked():
    s = tiny_session()
    s.feed("ab")
    asked = []
    text = "".join(s.generate(100, stop=lambda: len(asked.append(1) or asked) > 4))
    assert len(text) == 4 and s.context == "ab" + text
    assert s.undo() and s.context == "ab"


def test_nothing_to_continue_is_an_error():
    with pytest.raises(CharlmError, match="type some text first"):
        tiny_session().accept()


def test_summarize_entropy_and_order():
    probs = torch.tensor([0.0, 0.5, 0.25, 0.125, 0.125, 0.0, 0.0])
    p = summarize(probs, CharTokenizer("abc .\n"), 3)
    assert p.entropy == pytest.approx(1.75)
    assert p.token_ids == [1, 2, 3] and p.tokens == ["\n", " ", "."]


@pytest.mark.parametrize("typed, text", [("a\\nb", "a\nb"), ("a\\\\nb", "a\\nb"), ("\\t", "\t"), ("\\:x", ":x")])
def test_unescape(typed, text):
    assert unescape(typed) == text
    if not typed.startswith("\\:"):
        assert unescape(escape(text)) == text


@pytest.mark.parametrize("stdin_tty, stdout_tty, term, mode, chosen", [
    (False, True, "xterm", "auto", "plain"), (True, True, "dumb", "auto", "line"), (True, False, "xterm", "auto",
                                                                                    "line"),
    (True, True, "xterm-256color", "auto", "live"), (True, True, "xterm", "line", "line"),
])
def test_choose_mode(monkeypatch, stdin_tty, stdout_tty, term, mode, chosen):
    from charlm.cli import repl

    monkeypatch.setattr(sys.stdin, "isatty", lambda: stdin_tty, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: stdout_tty, raising=False)
    monkeypatch.setenv("TERM", term)
    assert repl.choose_mode(mode) == chosen


def test_line_mode_on_a_pipe_is_an_error(monkeypatch):
    from charlm.cli import repl

    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(CharlmError, match="--line needs a terminal on stdin"):
        repl.choose_mode("line")


# ----- piped stdin (plain mode) -----------------------------------------------------------------------------


def test_repl_piped_input(invoke, trained_run, tmp_path):
    saved = tmp_path / "session.txt"
    script = (f"the c\n:accept\n:context\n:undo\n:temp 0\n:gen 5\n:save {saved}\n:bogus\n:temp -1\n:gen x\n"
              f":k 2\n\n:topk 5\n:topp 0.9\n:seed 3\n:settings\n:save {tmp_path}/no/such/dir.txt\n:reset\n:help\n"
              ":quit\nnot read\n")
    result = invoke("repl", trained_run, "--top-k", "3", input=script)
    assert result.exit_code == 1, result.output  # it went on after each refused line, then says so
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"entropy \d+\.\d\d bits \| (\S+ \d\.\d{3}  ){2}\S+ \d\.\d{3}", lines[0])
    assert lines[2].startswith("the c") and len(lines[2]) == 6  # :context after one accepted character
    assert "temperature 0, top-k 0, top-p 1, frequency penalty 0, seed 0" in lines
    assert saved.read_text(encoding="utf-8").startswith("the c") and len(saved.read_text(encoding="utf-8")) == 10
    assert lines.count("context cleared") == 1 and ":gen [N]" in result.stdout
    assert re.search(r"entropy \S+ bits \| \S+ \d\.\d{3}  \S+ \d\.\d{3}$", result.stdout, re.M)  # :k 2
    settings = "temperature 0, top-k 5, top-p 0.9, frequency penalty 0, seed 3"
    assert lines.count(settings) == 2  # after :seed, and :settings
    assert re.search(r"^error: .*no/such/dir\.txt", result.stderr, re.M)  # a one-line error, and the REPL goes on
    assert "error: unknown command :bogus" in result.stderr
    assert "error: :temp must be 0 (greedy) or more" in result.stderr
    assert "error: :gen needs a number" in result.stderr
    assert "not read" not in result.stdout and "Traceback" not in result.output


def test_repl_piped_greedy_generation_matches_sample(invoke, trained_run):
    repl = invoke("repl", trained_run, input="the \n:temp 0\n:gen 12\n")
    sample = invoke("sample", trained_run, "-p", "the ", "-n", "12", "-t", "0")
    generated = repl.stdout.splitlines()[2]
    assert sample.stdout == "the " + generated + "\n"


def test_repl_reports_unknown_characters_and_goes_on(invoke, trained_run):
    result = invoke("repl", trained_run, input="the Q\nthe\n")
    assert result.exit_code == 1
    assert "never saw: 'Q'" in result.stderr and result.stdout.startswith("entropy ")


def test_repl_save_says_why_it_cannot_write(invoke, trained_run, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    script = f"the\n:save {tmp_path}\n:save {tmp_path}/no/such.txt\n:save {tmp_path}/file.txt/x.txt\n"
    result = invoke("repl", trained_run, input=script)
    assert result.stderr.splitlines() == [
        f"error: :save {tmp_path} is a folder: give a file name, e.g. :save {tmp_path}/session.txt",
        f"error: cannot write :save {tmp_path}/no/such.txt: folder {tmp_path}/no does not exist; create it or pick "
        "another path",
        f"error: cannot write :save {tmp_path}/file.txt/x.txt: folder {tmp_path}/file.txt is a file, not a folder; "
        "pick another path",
    ]


def test_repl_save_refuses_a_folder_it_cannot_write_to(invoke, trained_run, tmp_path, monkeypatch):
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path and access(path,
                                                                                           mode))  # no rights there
    result = invoke("repl", trained_run, input=f"the\n:save {tmp_path}/x.txt\n")
    assert result.stderr == (f"error: cannot write :save {tmp_path}/x.txt: folder {tmp_path} is not writable; "
                             "pick another path\n")
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.parametrize("error, says", [
    (OSError(28, "No space left on device"), "No space left on device; free disk space or pick another folder"),
    (PermissionError(13, "Permission denied"), "Permission denied; pick a folder you can write to"),
])
def test_repl_save_of_a_new_file_does_not_speak_of_a_previous_one(invoke, trained_run, tmp_path, monkeypatch, error,
                                                                  says):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(os, "fsync", fail)
    (tmp_path / "old.txt").write_text("old")
    result = invoke("repl", trained_run, input=f"the\n:save {tmp_path}/new.txt\n:save {tmp_path}/old.txt\n")
    new, old = result.stderr.splitlines()
    assert new == f"error: cannot write {tmp_path}/new.txt: {says}"
    assert old.endswith("(the previous file is intact)") and (tmp_path / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


def test_temperature_and_top_p_must_be_finite(invoke, trained_run):
    for value in ("inf", "nan", "-inf"):
        with pytest.raises(CharlmError, match=f"--temperature must be a finite number, .* got {value}"):
            SampleConfig(temperature=float(value))
        with pytest.raises(CharlmError, match=f"--top-p must be in \\(0, 1\\], got {value}"):
            SampleConfig(top_p=float(value))
    result = invoke("repl", trained_run, input="the\n:temp inf\n")
    assert "error: :temp must be a finite number, 0 (greedy) or more, got inf" in result.stderr


# ----- a pseudo-terminal (live and line modes) --------------------------------------------------------------


class Terminal:
    """The command in a pseudo-terminal (pexpect), read through a terminal emulator (pyte): the screen a person sees.

    prompt_toolkit redraws only the cells that change, so the raw byte stream is no
    place to look for text; the emulated screen is. The emulator also answers the
    cursor position requests prompt_toolkit sends, as a real terminal does, unless
    ``answers_cpr`` is False.
    """

    def __init__(self, run_dir, tmp_path, term="xterm-256color", answers_cpr=True, rows=30, columns=100):
        pexpect = pytest.importorskip("pexpect")
        pyte = pytest.importorskip("pyte")
        env = {**os.environ, "TERM": term, "CHARLM_HISTORY": str(tmp_path / "history")}
        env.pop("PROMPT_TOOLKIT_NO_CPR", None)
        if not answers_cpr:
            env["PROMPT_TOOLKIT_NO_CPR"] = "1"
        self.child = pexpect.spawn(sys.executable, ["-m", "charlm", "repl", str(run_dir), "-k", "4"], env=env,
                                   encoding="utf-8", dimensions=(rows, columns))
        self.screen = pyte.Screen(columns, rows)
        self.screen.write_process_input = self.child.send if answers_cpr else (lambda data: None)
        self.stream = pyte.Stream(self.screen)
        self.pexpect = pexpect

    def pump(self, seconds=0.05) -> bool:
        """Feed what the program wrote to the screen; False once it has exited."""
        try:
            self.stream.feed(self.child.read_nonblocking(1 << 16, timeout=seconds))
        except self.pexpect.TIMEOUT:
            pass
        except self.pexpect.EOF:
            return False
        return True

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, pattern, timeout=20.0):
        """Wait until ``pattern`` (a regex) shows on the screen; returns the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = self.pump()
            match = re.search(pattern, "\n".join(self.lines()), re.M)
            if match:
                return match
            if not alive:
                break
        pytest.fail(f"{pattern!r} never showed; the screen:\n" + "\n".join(self.lines()))

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def exit_status(self, timeout=20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.pump() and time.monotonic() < deadline:
            pass
        self.child.close()
        return self.child.exitstatus


def test_live_repl_in_a_terminal(trained_run, tmp_path):
    term = Terminal(trained_run, tmp_path)
    term.wait_for("predictions update as you type")
    term.wait_for("type to see what the model expects next")
    term.send("the c")  # the panel follows key by key
    term.wait_for(r"» the c$")
    term.wait_for(r"next · entropy \d+\.\d\d bits · \d+\.\d ms")
    bars = [line for line in term.lines() if re.fullmatch(r"\s+\S+ [█▏▎▍▌▋▊▉]+\s+\d+\.\d%", line)]
    assert len(bars) == 4
    term.send("\t")  # Tab puts the top prediction into the line
    top = bars[0].split()[0]
    term.wait_for(re.escape("» the c" + escape({"␣": " ", "⏎": "\n"}.get(top, top))) + "$")
    term.send("\r:context\r")
    context = term.wait_for(r"^(the c.)$").group(1)
    term.send(":gen 100000\r")  # far more than it can write before the Ctrl-C
    term.wait_for(r"\S{10}")
    term.send("\x03")
    term.wait_for(r"\[stopped\]")
    term.send(":temp 0.5\r")
    term.wait_for("^temperature 0.5, top-k 0, top-p 1, frequency penalty 0, seed 0$")
    term.send(":undo\r:context\r")  # the whole generation is one undo step
    term.wait_for(r":context\n" + re.escape(context) + "$")
    term.send("\x1b[A")  # ↑ recalls the last line from the history
    term.wait_for(r"» :context$")
    term.send("\x15\x12temp")  # Ctrl-R searches the history backwards
    term.wait_for(r"» :temp 0\.5$")
    term.send("\r\x05\x15")  # Enter keeps the line found (the cursor at the match); Ctrl-E, Ctrl-U clear it
    term.wait_for(r"» *$")
    term.send("\x1b[200~To be\x1b[201~")  # a bracketed paste arrives as one insertion
    term.wait_for(r"» To be$")
    term.send("\x15:bogus\r")  # Ctrl-U clears the line first
    term.wait_for("error: unknown command :bogus")
    term.send("\x04")  # Ctrl-D quits
    assert term.exit_status() == 0
    assert ":temp 0.5" in (tmp_path / "history").read_text()


def test_live_repl_draws_the_panel_above_where_the_terminal_reports_no_cursor(trained_run, tmp_path):
    term = Terminal(trained_run, tmp_path, answers_cpr=False)
    term.send("the")
    term.wait_for(r"next · entropy \d+\.\d\d bits(.|\n)*» the$")
    term.send("\x03")  # Ctrl-C at the prompt clears the line and stays
    term.send(":quit\r")
    assert term.exit_status() == 0


def test_line_repl_on_a_dumb_terminal(trained_run, tmp_path):
    term = Terminal(trained_run, tmp_path, term="dumb")
    term.wait_for(":help")
    term.send("the c\r")
    term.wait_for(r"next after the␣c\s+\(entropy \d+\.\d\d bits\)")
    term.send(":accept\r")
    term.wait_for(r"next after the␣c\S\s+\(entropy")
    term.send(":gen 100000\r")
    term.wait_for(r"\S{10}")
    term.send("\x03")
    term.wait_for(r"\[stopped\]")
    term.send("\x04")
    assert term.exit_status() == 0


def panel_lines(panel) -> list[str]:
    """prompt_toolkit formatted text → the lines it draws."""
    return "".join(text for _, text in panel).split("\n")


def test_the_panel_lines_up_wide_characters_and_fits_narrow_terminals():
    from charlm.cli.display import columns
    from charlm.cli.repl import live_panel
    from charlm.session import Prediction

    prediction = Prediction([1, 2, 3], ["한", "e", "␣"], [0.5, 0.3, 0.2], 1.5)
    for width in (80, 50, 30):
        rows = panel_lines(live_panel(prediction, 3, "next", width=width))[1:4]
        assert all(columns(row) <= width for row in rows), (width, rows)  # the percentages are not clipped
        assert all(row.rstrip().endswith("%") for row in rows)
        token_ends = [columns(row[:row.index(tok) + len(tok)]) for row, tok in zip(rows, ["한", "e", "␣"])]
        assert len(set(token_ends)) == 1, rows  # every candidate ends in the same column, 한 included


def test_an_unknown_character_note_is_wrapped_and_names_the_repls_own_command():
    from charlm.cli.repl import in_repl_words, live_panel

    message = in_repl_words("text has 1 character(s) the model never saw: '☃' (U+2603); remove them, or pass "
                            "--unknown unk (map to <unk>) or --unknown skip")
    assert "type :unknown unk" in message and ":unknown skip" in message and "--unknown" not in message
    lines = panel_lines(live_panel(None, 4, "cannot read that", message, width=40))
    assert "".join(line.strip() + " " for line in lines[1:]).startswith(message[:30])
    assert all(len(line) <= 40 for line in lines)


def test_the_unknown_policy_changes_in_the_repl(invoke, trained_run):
    result = invoke("repl", trained_run, input="the Q\n:unknown unk\nthe Q\n:unknown maybe\n:quit\n")
    assert result.exit_code == 1  # a piped session with refused inputs exits 1 at the end
    assert "error: text has 1 character(s) the model never saw: 'Q' (U+0051); remove them, or type :unknown unk" in \
        result.stderr
    assert "characters the model never saw: unk" in result.stdout
    assert result.stdout.count("entropy") == 1  # the second 'the Q' was read, as <unk>
    assert ":unknown takes one of error, unk, skip" in result.stderr
