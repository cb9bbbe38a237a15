"""Interactive next-token prediction: type text, see what the model expects next.

The loop reads one line at a time (from a terminal or a pipe), feeds it to a
``Predictor`` that carries the hidden state (O(1) work per new character, the
context is never re-encoded) and draws the top-k next tokens as bars with the
entropy of the distribution. Lines starting with ':' are commands.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from rich.table import Table

from charlm import console
from charlm.checkpoint import atomic_write
from charlm.config import SampleConfig
from charlm.errors import CharlmError
from charlm.sampling import Predictor, filter_logits

VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}
HELP = """commands:
  TEXT          feed TEXT to the model (\\n and \\t are read as newline and tab)
  :gen [N]      generate N characters from here (default 200; Ctrl-C stops early)
  :accept       append the most likely next character (an empty line does the same)
  :temp T  :topk K  :topp P  :seed S     sampling settings for :gen
  :undo         take back the last input
  :reset        forget everything (empty context)
  :context      show the whole context
  :save FILE    write the context to FILE
  :help         this list
  :quit         leave (Ctrl-D too)"""


def visible(token: str) -> str:
    return "".join(VISIBLE.get(ch, ch) for ch in token)


def unescape(line: str) -> str:
    return line.replace("\\\\", "\x00").replace("\\n", "\n").replace("\\t", "\t").replace("\x00", "\\")


@dataclass
class Session:
    """The REPL's state: the text so far and, per input, the predictor state before it (for :undo)."""

    predictor: Predictor
    tokenizer: object
    context: str = ""
    history: list = field(default_factory=list)  # (context, state, logits) before each input
    sample_config: SampleConfig = field(default_factory=SampleConfig)
    generator: torch.Generator = field(default_factory=lambda: torch.Generator().manual_seed(0))

    def feed(self, text: str) -> None:
        ids = self.tokenizer.encode(text, unknown="error")
        self.history.append((self.context, self.predictor.state, self.predictor.logits))
        self.context += text
        if len(ids):
            self.predictor.feed(torch.from_numpy(ids.astype("int64")))

    def undo(self) -> bool:
        if not self.history:
            return False
        self.context, self.predictor.state, self.predictor.logits = self.history.pop()
        return True

    def reset(self) -> None:
        self.context, self.history = "", []
        self.predictor.reset()

    def distribution(self) -> torch.Tensor | None:
        """Next-token probabilities (V,), or None before any input."""
        if self.predictor.logits is None:
            return None
        return torch.softmax(self.predictor.logits[0].float(), -1)


def render_predictions(session: Session, k: int, plain: bool) -> None:
    probs = session.distribution()
    if probs is None:
        console.out.print("(type some text to see predictions)")
        return
    entropy = float(-(probs * torch.log2(probs.clamp_min(1e-30))).sum())
    top = torch.topk(probs, min(k, probs.numel()))
    rows = [(visible(session.tokenizer.token(int(i))), float(p)) for p, i in zip(top.values, top.indices)]
    if plain:
        console.out.print(f"entropy {entropy:.2f} bits | " + "  ".join(f"{t} {p:.3f}" for t, p in rows))
        return
    table = Table(title=f"next after …{visible(session.context[-30:])}  (entropy {entropy:.2f} bits)",
                  show_header=False, title_justify="left", box=None)
    table.add_column(justify="right", style="bold cyan")
    table.add_column()
    table.add_column(justify="right")
    for token, p in rows:
        table.add_row(token, "█" * max(1, round(p * 40)) if p >= 0.0125 else "▏", f"{p:6.1%}")
    console.out.print(table)


def generate_here(session: Session, n: int) -> None:
    """Sample n tokens from the current state, appending them to the context; Ctrl-C stops early."""
    try:
        for _ in range(n):
            probs = filter_logits(session.predictor.logits[0], session.sample_config)
            token_id = int(probs.argmax()) if session.sample_config.temperature == 0 else int(
                torch.multinomial(probs, 1, generator=session.generator))
            token = session.tokenizer.token(token_id)
            session.context += token
            session.predictor.feed(torch.tensor([token_id]))
            sys.stdout.write(token)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write("\n[stopped]")
    sys.stdout.write("\n")


def _command(session: Session, line: str, show_k: int) -> bool:
    """Run one ':' command; returns False to quit."""
    name, _, arg = line[1:].strip().partition(" ")
    arg = arg.strip()
    cfg = session.sample_config
    try:
        if name in ("quit", "q", "exit"):
            return False
        if name in ("help", "h", "?"):
            console.out.print(HELP)
        elif name in ("gen", "g"):
            if session.predictor.logits is None:
                console.out.print("type some text first")
            else:
                n = int(arg) if arg else 200
                if n < 0:
                    raise CharlmError(":gen needs a count of 0 or more")
                session.history.append((session.context, session.predictor.state, session.predictor.logits))
                generate_here(session, n)
        elif name in ("accept", "a"):
            _accept(session)
        elif name == "temp":
            session.sample_config = replace(cfg, temperature=float(arg))
        elif name == "topk":
            session.sample_config = replace(cfg, top_k=int(arg))
        elif name == "topp":
            session.sample_config = replace(cfg, top_p=float(arg))
        elif name == "seed":
            session.generator.manual_seed(int(arg))
        elif name == "undo":
            if not session.undo():
                console.out.print("nothing to undo")
        elif name == "reset":
            session.reset()
        elif name == "context":
            console.out.print(session.context, markup=False)
            return True
        elif name == "save":
            if not arg:
                raise CharlmError(":save needs a file name")
            atomic_write(Path(arg).expanduser(), session.context.encode("utf-8"))
            console.out.print(f"saved {len(session.context):,} characters to {arg}")
            return True
        else:
            console.out.print(f"unknown command :{name} (:help lists them)")
            return True
    except ValueError:
        console.out.print(f":{name} needs a number (:help lists the commands)")
        return True
    except (CharlmError, OSError) as e:
        console.out.print(f"error: {e}")
        return True
    if name in ("temp", "topk", "topp", "seed"):
        c = session.sample_config
        console.out.print(f"temperature {c.temperature}, top-k {c.top_k}, top-p {c.top_p}")
    elif name not in ("help", "h", "?", "gen", "g"):
        render_predictions(session, show_k, plain=not sys.stdin.isatty())
    return True


def _accept(session: Session) -> None:
    probs = session.distribution()
    if probs is None:
        console.out.print("type some text first")
        return
    session.feed(session.tokenizer.token(int(probs.argmax())))


def run(model, tokenizer, device, show_k: int = 8, name: str = "") -> None:
    """Read lines until :quit or end of input; plain output when stdin is not a terminal."""
    interactive = sys.stdin.isatty()
    session = Session(Predictor(model, device), tokenizer)
    if interactive:
        console.out.print(f"[bold]charlm repl[/] {name} — type text; ':help' lists commands, Ctrl-D quits.\n{HELP}")
    while True:
        try:
            line = input("» " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            console.out.print("(Ctrl-D or :quit to leave)")
            continue
        if line.startswith(":") and len(line) > 1:
            if not _command(session, line, show_k):
                break
            continue
        if line == "":
            _accept(session)
        else:
            try:
                session.feed(unescape(line))
            except CharlmError as e:
                console.out.print(f"error: {e}")
                continue
        render_predictions(session, show_k, plain=not interactive)
