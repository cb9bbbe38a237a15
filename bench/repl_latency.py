"""REPL latency: the time from a keystroke to the prediction the live panel shows.

Types a passage one character at a time into a REPL session, as a person
would (Enter at the end of each line), and reports the median and 90th
percentile milliseconds per keystroke for:

  predict   session.preview(line so far) + top-k and entropy: encode, one recurrence step, softmax
  panel     the live panel's whole update (predict + the formatted text prompt_toolkit draws)
  terminal  (--terminal) key sent → first byte of the redrawn screen, through a pseudo-terminal
            running `charlm repl`, prompt_toolkit's rendering included (needs pexpect and a checkpoint);
            terminal* is the same where the terminal reports no cursor position (panel above the line)

The model is a checkpoint if one is given, otherwise charlm's default model
shape (ModelConfig(), or --hidden / --layers / --cell) with random weights and
tinyshakespeare's 65 characters (+ <unk>), which costs the same per step as a
trained one. Target: median under 10 ms, later goal 5 ms.

    python bench/repl_latency.py                          # default shape, random weights
    python bench/repl_latency.py --hidden 384             # LSTM 2×384
    python bench/repl_latency.py checkpoints/shakespeare --terminal
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from charlm.cli.repl import Repl, _LiveView, step_threads
from charlm.config import ModelConfig
from charlm.model import RNNLM
from charlm.session import Session
from charlm.tokenizers import CharTokenizer

PASSAGE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
           "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n")
VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tinyshakespeare's 65 characters


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def type_passage(view: _LiveView, repeats: int) -> tuple[list[float], list[float]]:
    """Type PASSAGE ``repeats`` times; returns ms per keystroke for predict and for the whole panel."""
    session = view.repl.session
    predict_ms, panel_ms = [], []
    for _ in range(repeats):
        for line in PASSAGE.split("\n"):
            typed = ""
            for ch in line:
                typed += ch
                start = time.perf_counter()
                session.preview(typed)
                session.prediction(view.repl.show_k)
                predict_ms.append(1000 * (time.perf_counter() - start))
                session.preview(typed[:-1])  # back, so the panel below does the same one-token step again
                start = time.perf_counter()
                view.panel(typed)
                panel_ms.append(1000 * (time.perf_counter() - start))
            session.preview(typed + "\n")
            session.commit()
    return predict_ms, panel_ms


def terminal_latency(checkpoint: Path, keys: int, answer_cpr: bool = True) -> list[float]:
    """ms from sending a key to the first byte of the screen update, in a pseudo-terminal.

    The bench answers prompt_toolkit's cursor position requests as a terminal does
    (panel below the input line); with answer_cpr=False the panel is drawn above it.
    """
    import pexpect

    env = {**os.environ, "TERM": "xterm-256color", "CHARLM_HISTORY": ""}
    env.pop("PROMPT_TOOLKIT_NO_CPR", None)
    if not answer_cpr:
        env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    child = pexpect.spawn(sys.executable, ["-m", "charlm", "repl", str(checkpoint)], env=env, encoding="utf-8",
                          dimensions=(30, 100), timeout=30)
    child.delaybeforesend = None  # pexpect otherwise sleeps 50 ms before every send
    _drain(child, until="type to see")
    times = []
    text = PASSAGE.replace("\n", " ")
    for ch in (text * (keys // len(text) + 1))[:keys]:
        start = time.perf_counter()
        child.send(ch)
        child.read_nonblocking(1 << 16, timeout=5)
        times.append(1000 * (time.perf_counter() - start))
        _drain(child)
    child.sendcontrol("c")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    return times[10:]


def _drain(child, quiet: float = 0.03, until: str | None = None) -> None:
    """Read until ``until`` has shown (if given) and the program has been silent for ``quiet`` seconds,
    answering cursor position requests on the way."""
    import pexpect

    seen = ""
    while True:
        try:
            data = child.read_nonblocking(1 << 16, timeout=quiet if until is None else 30)
        except pexpect.TIMEOUT:
            return
        if "\x1b[6n" in data:
            child.send("\x1b[10;1R")
        seen += data
        if until is not None and until in seen:
            until = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", type=Path, help="run folder (default: random weights)")
    parser.add_argument("--hidden", type=int, default=ModelConfig().hidden_size)
    parser.add_argument("--layers", type=int, default=ModelConfig().num_layers)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--repeats", type=int, default=3, help="times to type the passage")
    parser.add_argument("--threads", type=int, help="torch threads (default: what the REPL uses, one on CPU)")
    parser.add_argument("--terminal", action="store_true", help="also time a real `charlm repl` in a pseudo-terminal")
    parser.add_argument("-k", type=int, default=8, help="predictions shown")
    args = parser.parse_args()
    step_threads("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        from charlm import checkpoint

        loaded = checkpoint.load(args.checkpoint)
        model, tokenizer, label = loaded.model, loaded.tokenizer, str(args.checkpoint)
    else:
        torch.manual_seed(0)
        tokenizer = CharTokenizer(VOCAB)
        model = RNNLM(ModelConfig(cell=args.cell, num_layers=args.layers, hidden_size=args.hidden),
                      tokenizer.vocab_size)
        label = "random weights"
    c = model.config
    view = _LiveView(Repl(Session(model, tokenizer), show_k=args.k, live=True))
    type_passage(view, 1)  # warm up
    predict_ms, panel_ms = type_passage(view, args.repeats)
    print(f"{c.cell.upper()} {c.num_layers}×{c.hidden_size} embed {c.embed_size}, vocab {tokenizer.vocab_size} "
          f"({label}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(predict_ms)} keystrokes")
    print(f"{'':10} {'median ms':>10} {'p90 ms':>8}")
    rows = [("predict", predict_ms), ("panel", panel_ms)]
    if args.terminal:
        if not args.checkpoint:
            sys.exit("--terminal runs `charlm repl CHECKPOINT`: pass a checkpoint")
        rows.append(("terminal", terminal_latency(args.checkpoint, 150)))
        rows.append(("terminal*", terminal_latency(args.checkpoint, 150, answer_cpr=False)))
    for name, values in rows:
        print(f"{name:10} {statistics.median(values):10.3f} {percentile(values, 0.9):8.3f}")


if __name__ == "__main__":
    main()
