"""Quality per minute: train for a fixed wall-clock budget and report validation loss and speed.

Trains charlm's default configuration for the budget (the preset table charlm.config.resolve reads) on
tinyshakespeare (first 90% train, last 10% validation, as nanoGPT splits it) and,
in the same run, a baseline: the
configuration of PyTorch's word_language_model example at character level
(LSTM 2x200, SGD lr 20, clip 0.25, bptt 35, batch 20, dropout 0.2). Prints the
loss curve against wall time, the final validation loss in nats/char and bits
per character, training characters/s, and the ratios default/baseline.

With --try LABEL=OPTIONS (repeatable) it also trains the defaults with those
options, for the same budget in the same run: the way to compare configurations,
or to find a preset row for another corpus. With --dynamic it also scores each
trained model with `charlm eval --dynamic` (the model keeps learning from the
validation text it has already scored): a different measurement from the static
validation loss, printed apart from it.

    python bench/train_budget.py                       # 300 s each
    python bench/train_budget.py --budget 60s --skip-baseline
    python bench/train_budget.py --dynamic
    python bench/train_budget.py --corpus corpora/bills_large/bills.txt --val-fraction 0.01 --budget 10m \
        --skip-baseline --try "gru768=--hidden 768 --batch-size 128"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
BASELINE = ["--cell", "lstm", "--optimizer", "sgd", "--lr", "20", "--clip", "0.25", "--hidden", "200", "--embed", "200",
            "--batch-size", "20", "--seq-len", "35", "--dropout", "0.2", "--min-lr-ratio", "1", "--warmup", "0",
            "--weight-decay", "0"]


def parse_try(tried: str, example: str) -> tuple[str, list[str]]:
    """One --try LABEL=OPTIONS (this script's and bench/transfer.py's): the label and the charlm train options,
    split as a shell would; exits naming ``example`` when it is not of that form."""
    label, sep, options = tried.partition("=")
    if not sep or not label:
        sys.exit(f"--try {tried!r}: write LABEL=OPTIONS, e.g. {example}")
    return label, shlex.split(options)


def train(corpus: Path, budget: str, extra: list[str], out: Path, eval_every: int, val_fraction: float) -> dict:
    command = [sys.executable, "-m", "charlm", "train", str(corpus), "--time-budget", budget, "--out", str(out),
               "--force", "--eval-every", str(eval_every), "--val-fraction", str(val_fraction), *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if r["type"] == "val"]
    steps = [r for r in records if r["type"] == "train"]
    tokens_per_s = sum(r["tokens_per_s"] for r in steps[1:]) / max(len(steps) - 1, 1)
    return {"curve": [(r["elapsed"], r["step"], r["loss"]) for r in vals], "loss": vals[-1]["loss"],
            "bpc": vals[-1]["bpc"], "tokens_per_s": tokens_per_s, "command": " ".join(command[1:])}


def dynamic_loss(out: Path) -> float:
    """The run's best weights scored on its validation split with dynamic evaluation (the cell's default rate)."""
    command = [sys.executable, "-m", "charlm", "eval", str(out), "--dynamic", "--json"]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout)["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--budget", default="300s")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--val-fraction", type=float, default=0.1, help="the last share of the corpus that validates")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="LABEL=OPTIONS",
                        help="also train the defaults with these charlm train options (repeatable)")
    parser.add_argument("--dynamic", action="store_true", help="also score each model with dynamic evaluation")
    parser.add_argument("extra", nargs="*", help="extra options for the default run (after --)")
    args = parser.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"benchmark corpus {args.corpus} not found: pass --corpus FILE")
    runs = {"charlm default": args.extra}
    for tried in args.tries:
        label, options = parse_try(tried, "--try 'wide=--hidden 768'")
        runs[label] = [*args.extra, *options]
    if not args.skip_baseline:
        runs["word_language_model baseline"] = BASELINE
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in runs.items():
            out = Path(tmp) / name.replace(" ", "_")
            results[name] = train(args.corpus, args.budget, extra, out, args.eval_every, args.val_fraction)
            if args.dynamic:
                results[name]["dynamic_loss"] = dynamic_loss(out)
    for name, r in results.items():
        print(f"\n{name}: {r['command']}")
        print("  elapsed_s  step  val_loss")
        for elapsed, step, loss in r["curve"]:
            print(f"  {elapsed:9.1f} {step:5d}  {loss:.4f}")
        print(f"  final val loss {r['loss']:.4f} nats/char, {r['bpc']:.4f} bpc, {r['tokens_per_s']:,.0f} train chars/s")
        if "dynamic_loss" in r:
            print(f"  dynamic evaluation of the best weights (adapting as it reads; not the static figure above): "
                  f"{r['dynamic_loss']:.4f} nats/char")
    default = results["charlm default"]
    for name, r in results.items():
        if name == "charlm default":
            continue
        a, b = (default, r) if name == "word_language_model baseline" else (r, default)
        label = "default/baseline" if a is default else f"{name}/default"
        print(f"\nratio {label}: val loss {a['loss'] / b['loss']:.3f} ({a['bpc']:.4f} against {b['bpc']:.4f} bpc), "
              f"train chars/s {a['tokens_per_s'] / b['tokens_per_s']:.2f}")
        if args.dynamic:
            print(f"ratio {label}, dynamic evaluation: {a['dynamic_loss'] / b['dynamic_loss']:.3f}")


if __name__ == "__main__":
    main()
