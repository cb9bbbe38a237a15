"""`charlm repl`: type text, see what the model expects next.

A loop over a ``Session`` (charlm/session.py), which carries the hidden state
so each new character costs one step of the recurrence. Three front ends share
the commands and differ only in how they read and draw:

    live    stdin and stdout are terminals: prompt_toolkit redraws a bottom panel with
            the top-k next tokens as you type each key; Tab accepts the top one
    line    a terminal that cannot redraw (TERM=dumb): read a whole line, print a table
    plain   stdin is a pipe: one line per step, predictions as one plain line, no banner

Lines that start with ':' and a letter are commands (``:help`` lists them);
anything else is text for the model, with \\n, \\t and \\\\ read as newline,
tab and backslash (and \\: as a colon, to start a line of text with ':').
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text

from charlm.cli import console
from charlm.cli.display import columns, for_terminal, visible
from charlm.cli.options import check_writable, complete_run, device_option, impl_override_option, unknown_option
from charlm.config import UNKNOWN_POLICIES, SampleConfig
from charlm.errors import CharlmError, ConfigError

if TYPE_CHECKING:
    from charlm.session import Prediction, Session

MODES = ("auto", "live", "line", "plain")
BAR_WIDTH = 40
HELP = """commands (a line that starts with ':' and a letter):
  TEXT          feed TEXT to the model (\\n \\t \\\\ are newline, tab, backslash; \\: a leading colon)
  :gen [N]      generate N tokens from here (default 200; a few more to finish a syllable; Ctrl-C stops)
  :accept       append the most likely next token (an empty line does the same; Tab in live mode)
  :temp T  :topk K  :topp P  :penalty F  :seed S     sampling settings for :gen (:settings shows them)
  :k N          show N predictions
  :undo         take back the last input, acceptance or generation
  :reset        forget everything (empty context)
  :context      show the whole context
  :unknown P    characters the model never saw: error, unk (as <unk>) or skip
  :save FILE    write the context to FILE
  :help         this list
  :quit         leave (Ctrl-D too)"""
LIVE_KEYS = "Tab accept · Enter commit · Alt-Enter newline · ↑ history · :help · Ctrl-D quit"
_COMMAND = re.compile(r"^:[A-Za-z?]")


@click.command(epilog="""\b
Examples:
  charlm repl checkpoints/shakespeare-lstm
  charlm repl checkpoints/shakespeare-lstm --line -t 0.6 --seed 7
  printf 'ROMEO:\\\\nWhat light\\n:gen 100\\n' | charlm repl checkpoints/shakespeare-lstm
  charlm repl checkpoints/shakespeare-lstm --impl reference
""")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False, shell_complete=complete_run)
@click.option("-k", "--top-k", "show_k", type=int, default=8, show_default=True,
              help="Predictions shown (:k N changes it).")
@click.option("--line", "line_mode", is_flag=True,
              help="Read whole lines even on a terminal that can redraw (no live panel).")
@click.option("-t", "--temperature", type=float, default=SampleConfig.temperature, show_default=True,
              help="For :gen (:temp T changes it).")
@click.option("--top-p", type=float, default=SampleConfig.top_p, show_default=True,
              help="For :gen (:topp P changes it).")
@click.option("-s", "--seed", type=int, default=0, show_default=True, help="For :gen (:seed S changes it).")
@unknown_option
@impl_override_option
@device_option
def repl(checkpoint, show_k, line_mode, temperature, top_p, seed, unknown, impl, device):
    """Type text and watch the model's next-token predictions change with every key (':help' lists commands).

    Without CHECKPOINT, the pretrained Shakespeare model shipped with charlm is used.

    On a terminal the predictions follow each key in a panel under the input;
    on a dumb terminal, or with --line, they follow each line; with piped
    input they are printed as one plain line per input line, for scripts.
    """
    from charlm import checkpoint as checkpoints
    from charlm import runtime

    if show_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {show_k}")
    config = SampleConfig(temperature=temperature, top_p=top_p)
    mode = choose_mode("line" if line_mode else "auto")  # cheap checks first: --line with piped input is refused
    device = runtime.select_device(device)
    ck = checkpoints.load(checkpoint, device, impl=impl)
    refused = run(ck.model, ck.tokenizer, device, show_k, name=str(ck.run_dir), mode=mode, sample_config=config,
                  seed=seed, unknown=unknown)
    if refused:  # piped input: the session went on past each one, but a script must be told
        sys.exit(1)


# ----- text helpers ---------------------------------------------------------------------------------------


def unescape(line: str) -> str:
    """What the user typed → the text for the model: \\n newline, \\t tab, \\\\ backslash, leading \\: colon."""
    if line.startswith("\\:"):
        line = line[1:]
    return line.replace("\\\\", "\x00").replace("\\n", "\n").replace("\\t", "\t").replace("\x00", "\\")


def escape(text: str) -> str:
    """The inverse of ``unescape`` for text inserted into a one-line input (e.g. an accepted newline)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def in_repl_words(message: str) -> str:
    """An error message with the command-line fixes it names put as the REPL's commands (--unknown → :unknown)."""
    return message.replace("pass --unknown", "type :unknown").replace("--unknown", ":unknown")


def is_command(line: str) -> bool:
    return bool(_COMMAND.match(line))


def tail(context: str, width: int = 30) -> str:
    shown = visible(context[-width:])
    return ("…" if len(context) > width else "") + shown


def bar(p: float, width: int = BAR_WIDTH) -> str:
    """A bar of eighth-blocks for a probability: 0.5 → half of ``width`` cells."""
    eighths = round(p * width * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


# ----- the commands, shared by all front ends -------------------------------------------------------------


class Repl:
    """Runs text and ':' commands against a Session and prints the results (plain or rich)."""

    def __init__(self, session: Session, show_k: int = 8, plain: bool = False, live: bool = False):
        self.session = session
        self.show_k = show_k
        self.plain = plain
        self.live = live  # the live panel shows predictions, so nothing is printed for them
        self.errors = 0  # inputs that were refused; piped, any makes the command exit 1 at the end

    def error(self, message: str) -> None:
        """A problem with one input: reported on stderr, counted, and the session goes on."""
        self.errors += 1
        console.err.print(f"error: {in_repl_words(message)}", markup=False, highlight=False, soft_wrap=True)

    def handle(self, line: str) -> bool:
        """Act on one line of input; returns False to quit."""
        if is_command(line):
            return self.command(line)
        try:
            if line == "":
                self.session.accept()
            else:
                self.session.feed(unescape(line))
        except CharlmError as e:
            self.error(str(e))
            return True
        self.show_predictions()
        return True

    def command(self, line: str) -> bool:
        name, _, arg = line[1:].strip().partition(" ")
        arg, s = arg.strip(), self.session
        try:
            if name in ("quit", "q", "exit"):
                return False
            if name in ("help", "h", "?"):
                console.out.print(HELP, markup=False)
            elif name in ("gen", "g"):
                self.generate(int(arg) if arg else 200)
            elif name in ("accept", "a"):
                s.accept()
                self.show_predictions()
            elif name in ("temp", "t"):
                self._set(temperature=float(arg))
            elif name == "topk":
                self._set(top_k=int(arg))
            elif name == "topp":
                self._set(top_p=float(arg))
            elif name == "penalty":
                self._set(frequency_penalty=float(arg))
            elif name == "seed":
                s.set_seed(int(arg))
                self.show_settings()
            elif name == "settings":
                self.show_settings()
            elif name == "k":
                if int(arg) < 1:
                    raise ConfigError(":k needs a count of 1 or more")
                self.show_k = int(arg)
                self.show_predictions()
            elif name in ("undo", "u"):
                if not s.undo():
                    console.out.print("nothing to undo")
                self.show_predictions()
            elif name == "reset":
                s.reset()
                console.out.print("context cleared")
            elif name in ("context", "c"):
                console.out.print(s.context, markup=False, highlight=False)
            elif name == "save":
                self.save(arg)
            elif name == "unknown":
                if arg not in UNKNOWN_POLICIES:
                    raise ConfigError(f":unknown takes one of {', '.join(UNKNOWN_POLICIES)}, e.g. ':unknown unk'")
                s.unknown = arg
                console.out.print(f"characters the model never saw: {arg}", markup=False)
            else:
                self.error(f"unknown command :{name} (:help lists them)")
        except ValueError:
            self.error(f":{name} needs a number, e.g. ':{name} 5' (:help lists the commands)")
        except CharlmError as e:
            self.error(str(e))
        return True

    def _set(self, **change) -> None:
        try:
            self.session.sample_config = replace(self.session.sample_config, **change)  # validates
        except ConfigError as e:  # its message names the sample command's options
            for option, command in (("--temperature", ":temp"), ("--top-k", ":topk"), ("--top-p", ":topp"),
                                    ("--frequency-penalty", ":penalty")):
                e = ConfigError(str(e).replace(option, command))
            raise e from None
        self.show_settings()

    def show_settings(self) -> None:
        c, s = self.session.sample_config, self.session
        console.out.print(f"temperature {c.temperature:g}, top-k {c.top_k}, top-p {c.top_p:g}, "
                          f"frequency penalty {c.frequency_penalty:g}, seed {s.seed}")

    def save(self, name: str) -> None:
        if not name:
            raise CharlmError(":save needs a file name, e.g. ':save session.txt'")
        path = Path(name).expanduser()
        check_writable(path, ":save", "session.txt")
        from charlm.checkpoint import atomic_write

        atomic_write(path, self.session.context.encode("utf-8"))  # a failure is a one-line CheckpointError
        console.out.print(f"saved {len(self.session.context):,} characters to {path}", markup=False)

    def generate(self, n: int) -> None:
        """Stream n sampled tokens to stdout; Ctrl-C stops after the current token."""
        write = sys.stdout.write
        to_terminal = sys.stdout.isatty()
        with _stop_on_sigint() as stop:
            for piece in self.session.generate(n, stop=stop.is_set):
                write(for_terminal(piece) if to_terminal else piece)  # control characters drawn, not obeyed
                sys.stdout.flush()
        write("\n[stopped]\n" if stop.is_set() else "\n")
        sys.stdout.flush()

    def show_predictions(self) -> None:
        if self.live:
            return
        prediction = self.session.prediction(self.show_k)
        if prediction is None:
            console.out.print("(type some text to see predictions)")
        elif self.plain:
            console.out.print(plain_line(prediction), markup=False, highlight=False)
        else:
            console.out.print(prediction_table(prediction, self.session.context))


@contextlib.contextmanager
def _stop_on_sigint():
    """Turn Ctrl-C into a flag the generation loop checks between tokens, so the state stays whole."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


# ----- drawing predictions --------------------------------------------------------------------------------


def plain_line(prediction: Prediction) -> str:
    """'entropy 1.23 bits | e 0.412  ␣ 0.301 …' for pipes and scripts."""
    pairs = "  ".join(f"{visible(t)} {p:.3f}" for t, p in zip(prediction.tokens, prediction.probs))
    return f"entropy {prediction.entropy:.2f} bits | {pairs}"


def prediction_table(prediction: Prediction, context: str) -> Table:
    table = Table(title=f"next after {tail(context)}  (entropy {prediction.entropy:.2f} bits)",
                  show_header=False, title_justify="left", box=None)
    table.add_column(justify="right", style="bold cyan")
    table.add_column(style="cyan")
    table.add_column(justify="right")
    for token, p in zip(prediction.tokens, prediction.probs):
        table.add_row(Text(visible(token)), bar(p), f"{p:6.1%}")
    return table


TOKEN_COLUMNS = 6  # a candidate token, right-aligned in this many terminal columns


def live_panel(prediction: Prediction | None, k: int, header: str, note: str = "",
               width: int = 80) -> list[tuple[str, str]]:
    """prompt_toolkit formatted text for the bottom panel, ``width`` columns wide: a header, k bar rows
    (padded), the key help. A note (an error) is wrapped to the width; the bars shrink to leave room for
    the percentages; a wide character (Hangul, CJK) is padded by the columns it takes, not by its length."""
    lines: list[list[tuple[str, str]]] = [[("class:header", header)]]
    bar_width = max(8, min(BAR_WIDTH, width - TOKEN_COLUMNS - 1 - 1 - 6 - 1))
    if note:
        lines += [[("class:error", part)] for part in textwrap.wrap(note, max(width - 1, 20))]
    elif prediction is not None:
        for token, p in zip(prediction.tokens, prediction.probs):
            shown = visible(token)
            pad = " " * max(TOKEN_COLUMNS - columns(shown), 0)
            lines.append([("class:token", f"{pad}{shown} "), ("class:bar", f"{bar(p, bar_width):<{bar_width + 1}}"),
                          ("", f"{p:6.1%}")])
    while len(lines) < k + 1:
        lines.append([])
    keys = LIVE_KEYS if len(LIVE_KEYS) < width else LIVE_KEYS[:max(width - 2, 1)] + "…"
    lines.append([("class:keys", keys)])
    out: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        out += line + ([("", "\n")] if i < len(lines) - 1 else [])
    return out


# ----- front ends -----------------------------------------------------------------------------------------


def choose_mode(mode: str = "auto") -> str:
    """'auto' → live on a capable terminal, line on a dumb one, plain when stdin is not a terminal."""
    if mode not in MODES:
        raise ConfigError(f"unknown repl mode {mode!r}: choose one of {', '.join(MODES)}")
    tty = sys.stdin.isatty()
    if mode == "auto":
        if not tty:
            return "plain"
        dumb = os.environ.get("TERM", "dumb") in ("dumb", "unknown", "")
        return "line" if dumb or not sys.stdout.isatty() else "live"
    if mode in ("live", "line") and not tty:
        raise ConfigError(f"--{mode} needs a terminal on stdin, and here it is a pipe or a file: "
                          f"drop --{mode} and the piped lines are read one per step")
    return mode


def step_threads(device) -> None:
    """One CPU thread for one-token steps.

    A step of a small model is a few matrix-vector products, too small to gain
    from more threads; and on a busy machine the threads wait for each other
    (bench/repl_latency.py measures both).
    """
    import torch

    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)


def run(model, tokenizer, device, show_k: int = 8, name: str = "", mode: str = "auto",
        sample_config: SampleConfig | None = None, seed: int = 0, unknown: str = "error") -> int:
    """Read input until :quit or end of input (Ctrl-D); ``mode`` is one of MODES (see module docstring).
    Returns the number of refused inputs when reading piped input (a script should know), else 0."""
    from charlm.session import Session

    mode = choose_mode(mode)
    step_threads(device)
    session = Session(model, tokenizer, device, sample_config or SampleConfig(), seed, unknown)
    repl = Repl(session, show_k, plain=mode == "plain", live=mode == "live")
    if mode == "live":
        _run_live(repl, name)
        return 0
    if mode == "line":
        _enable_readline()
        _banner(name, "type text; ':help' lists commands, Ctrl-D quits.")
    while True:
        try:
            line = input(f"{tail(session.context, 20)} » " if mode == "line" else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            console.out.print("\n(Ctrl-D or :quit to leave)")
            continue
        if not repl.handle(line):
            break
    return repl.errors if mode == "plain" else 0


def _banner(name: str, how: str) -> None:
    console.out.print(Text("charlm repl", style="bold").append(f" {name}: {how}", style=""), highlight=False)


def _enable_readline() -> None:
    """Arrow keys and history for input() where the readline module exists."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401


def history_path() -> Path | None:
    """$CHARLM_HISTORY (empty: no file), else $XDG_STATE_HOME or ~/.local/state, /charlm/repl_history."""
    if "CHARLM_HISTORY" in os.environ:
        return Path(os.environ["CHARLM_HISTORY"]) if os.environ["CHARLM_HISTORY"] else None
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "charlm" / "repl_history"


def _history():
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = history_path()
    if path is not None:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            return FileHistory(str(path))
    return InMemoryHistory()


class _LiveView:
    """The live panel's model side: preview what is being typed and time it."""

    def __init__(self, repl: Repl, width=lambda: 80):
        self.repl = repl
        self.width = width  # the terminal's columns, asked at each redraw
        self.latency_ms = 0.0
        self._last: tuple = (None, None)  # (key, panel): prompt_toolkit asks several times per redraw

    def panel(self, text: str) -> list[tuple[str, str]]:
        s = self.repl.session
        key = (text, len(s.context), id(s.base), s.sample_config, s.unknown, self.repl.show_k, self.width())
        if self._last[0] != key:
            self._last = (key, self._panel(text))
        return self._last[1]

    def _panel(self, text: str) -> list[tuple[str, str]]:
        s, k, width = self.repl.session, self.repl.show_k, self.width()
        c = s.sample_config
        settings = f"   [T {c.temperature:g} · top-k {c.top_k} · top-p {c.top_p:g}]"
        if is_command(text):
            s.preview("")
            return live_panel(None, k, "command: Enter runs it" + settings, _command_hint(text), width)
        try:
            start = time.perf_counter()
            s.preview(unescape(text))
            prediction = s.prediction(k)
            self.latency_ms = 1000 * (time.perf_counter() - start)
        except CharlmError as e:
            return live_panel(None, k, "cannot read that" + settings, in_repl_words(str(e)), width)
        if prediction is None:
            return live_panel(None, k, "type to see what the model expects next" + settings, width=width)
        header = f"next · entropy {prediction.entropy:.2f} bits · {self.latency_ms:.1f} ms" + settings
        return live_panel(prediction, k, header, width=width)

    def top_token(self, text: str) -> str | None:
        if is_command(text):
            return None
        with contextlib.suppress(CharlmError):
            s = self.repl.session
            s.preview(unescape(text))
            prediction = s.prediction(1)
            return None if prediction is None else prediction.tokens[0]
        return None


def _command_hint(text: str) -> str:
    name = text[1:].split(" ")[0]
    matches = [line.strip() for line in HELP.splitlines() if line.strip().startswith(f":{name}")]
    return " | ".join(matches) or f"no command :{name} (:help lists them)"


def _run_live(repl: Repl, name: str) -> None:
    """A prompt whose panel of predictions is redrawn on every key (_live_prompt)."""
    view = _LiveView(repl)
    session = repl.session
    prompt = _live_prompt(view, session)
    _banner(name, f"predictions update as you type. {LIVE_KEYS}.")
    while True:
        try:
            line = prompt()
        except EOFError:
            break
        except KeyboardInterrupt:
            session.preview("")
            continue
        if is_command(line):
            session.preview("")
            if not repl.command(line):
                break
        elif line == "":
            try:
                session.accept()
            except CharlmError as e:
                repl.error(str(e))
        else:
            try:
                session.preview(unescape(line))
                session.commit()
            except CharlmError as e:
                repl.error(str(e))


def _live_prompt(view: _LiveView, session):
    """A prompt_toolkit application with only what the REPL shows: the line being typed (after the context's
    tail), the history search toolbar while Ctrl-R searches, and the panel right under the line; or above it
    where the terminal never reports the cursor's position (without that report prompt_toolkit cannot tell
    how many rows are left below). A PromptSession lays out a dozen containers it would never show (menus,
    validation, argument and system toolbars) on every key. Kept from it: the history file and ↑/↓, Ctrl-R,
    bracketed paste and the emacs line-editing keys (prompt_toolkit's default bindings), Ctrl-C (clears the
    line) and Ctrl-D on an empty line (quits). Returns a function that reads one line."""
    from prompt_toolkit.application import Application
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.filters import Condition, has_focus
    from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings
    from prompt_toolkit.key_binding.defaults import load_key_bindings
    from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, Window
    from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
    from prompt_toolkit.layout.processors import BeforeInput
    from prompt_toolkit.renderer import CPR_Support
    from prompt_toolkit.styles import Style
    from prompt_toolkit.widgets import SearchToolbar

    def accept(buffer: Buffer) -> bool:
        app.exit(result=buffer.text)
        return True  # keep the text on screen; the next prompt starts empty

    buffer = Buffer(history=_history(), multiline=False, accept_handler=accept)
    search = SearchToolbar()
    editing = has_focus(buffer)
    bindings = KeyBindings()

    @bindings.add("enter", filter=editing)
    def _accept(event):
        buffer.validate_and_handle()

    @bindings.add("c-c", filter=editing)
    @bindings.add("<sigint>")
    def _interrupt(event):
        event.app.exit(exception=KeyboardInterrupt, style="class:aborting")

    @bindings.add("c-d", filter=editing & Condition(lambda: not buffer.text))
    def _quit(event):
        event.app.exit(exception=EOFError, style="class:exiting")

    @bindings.add("tab", filter=editing)
    def _accept_into_buffer(event):
        token = view.top_token(buffer.text)
        if token is not None:
            buffer.insert_text(escape(token))

    @bindings.add("escape", "enter", filter=editing)
    def _newline(event):
        buffer.insert_text("\\n")

    @Condition
    def panel_below() -> bool:
        # a layout taller than the rows left under the cursor can only be drawn where the terminal has
        # answered a cursor position request (CPR); elsewhere the panel goes above the input line
        return app.output.responds_to_cpr and app.renderer.cpr_support != CPR_Support.NOT_SUPPORTED

    done = Condition(lambda: app.is_done)
    line = [("class:context", ""), ("", " » ")]

    def message():
        line[0] = ("class:context", tail(session.context))
        return line

    def panel():
        return view.panel(buffer.text)

    style = Style.from_dict({"header": "bold", "token": "bold ansicyan", "bar": "ansicyan", "error": "ansired",
                             "keys": "ansibrightblack", "context": "ansibrightblack"})
    app = Application(
        layout=Layout(HSplit([
            ConditionalContainer(Window(FormattedTextControl(panel), dont_extend_height=True),
                                 filter=~panel_below & ~done),
            Window(BufferControl(buffer, input_processors=[BeforeInput(message)],
                                 search_buffer_control=search.control), dont_extend_height=True, wrap_lines=True),
            ConditionalContainer(search, filter=~done),
            ConditionalContainer(Window(FormattedTextControl(panel), dont_extend_height=True),
                                 filter=panel_below & ~done),
        ]), focused_element=buffer),
        key_bindings=merge_key_bindings([load_key_bindings(), bindings]), style=style, erase_when_done=False)
    app.renderer.cpr_not_supported_callback = None  # no warning: the panel moves above the line instead
    view.width = lambda: app.output.get_size().columns

    def read_line() -> str:
        buffer.reset()
        return app.run()

    return read_line
