"""Text classification: accuracy and macro-F1 on a labelled task's test split, each beside the baselines.

For the built task (which committee a Korean bill was referred to: scripts/build_corpora.py --only
bills_committee, 8 classes, 3,200 training and 800 test bills) it prints, in one run:
- the majority class, and a bag-of-characters logistic regression (the baseline a classifier must beat);
- `charlm classify train` from scratch with a GRU, an LSTM and a vanilla RNN, and a bidirectional GRU;
- the same task started from a language model (--from, default the shipped base) for the same budget and
  for a fifth of it, and with ULMFiT's schedule: discriminative rates (2.6 per layer) or gradual unfreezing;
- training and prediction speed (texts/s) on this machine.

    python bench/classify.py                                   # 300 s each
    python bench/classify.py --budget 120s --only scratch-gru,from-lm,from-lm-fifth
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "corpora" / "bills_committee"


def read(path: Path, label_column: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r[label_column] for r in rows]


def bag_of_characters(train: tuple, test: tuple) -> float:
    """Accuracy of a multinomial logistic regression on character frequencies (L2, fitted with L-BFGS)."""
    chars = sorted({ch for text in train[0] for ch in text})
    index = {ch: i for i, ch in enumerate(chars)}
    labels = sorted(set(train[1]))

    def features(texts):
        x = torch.zeros(len(texts), len(chars))
        for row, text in enumerate(texts):
            for ch, n in Counter(text).items():
                if ch in index:
                    x[row, index[ch]] = n / len(text)
        return x

    x, y = features(train[0]), torch.tensor([labels.index(label) for label in train[1]])
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    model = torch.nn.Linear(len(chars), len(labels))
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=300)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + 1e-3 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    x_test = (features(test[0]) - mean) / std
    predicted = model(x_test).argmax(1).tolist()
    return sum(labels[p] == t for p, t in zip(predicted, test[1])) / len(test[1])


def run(name: str, options: list[str], args, tmp: Path) -> dict:
    out = tmp / name
    train = [sys.executable, "-m", "charlm", "classify", "train", str(args.train), "--label-column", args.label_column,
             "--out", str(out), "--force", *options]
    subprocess.run(train, check=True, capture_output=True, text=True, cwd=ROOT)
    figures = json.loads(subprocess.run(
        [sys.executable, "-m", "charlm", "classify", "eval", str(out), "--data", str(args.test), "--label-column",
         args.label_column, "--json"], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = max(r["step"] for r in records)
    elapsed = max(r["elapsed"] for r in records if "elapsed" in r)
    info = json.loads((out / "config.json").read_text())
    figures["train_texts_per_s"] = steps * info["train"]["batch_size"] / elapsed
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=TASK / "train.csv")
    parser.add_argument("--test", type=Path, default=TASK / "test.csv")
    parser.add_argument("--label-column", default="committee")
    parser.add_argument("--budget", default="300s")
    parser.add_argument("--lm", default="base", help="the language model for --from (default: the shipped base)")
    parser.add_argument("--only", help="comma-separated names of the runs to make (default: all)")
    args = parser.parse_args()
    if not args.train.exists():
        sys.exit(f"{args.train} is missing: build it with python scripts/build_corpora.py --only bills_committee")
    seconds = float(args.budget.rstrip("s"))
    configs = {
        "scratch-gru": ["--cell", "gru", "--time-budget", args.budget],
        "scratch-lstm": ["--cell", "lstm", "--time-budget", args.budget],
        "scratch-rnn": ["--cell", "rnn", "--time-budget", args.budget],
        "scratch-bigru": ["--cell", "gru", "--bidirectional", "--time-budget", args.budget],
        "from-lm": ["--from", args.lm, "--time-budget", args.budget],
        "from-lm-fifth": ["--from", args.lm, "--time-budget", f"{seconds / 5:g}s"],
        "from-lm-discriminative": ["--from", args.lm, "--discriminative", "2.6", "--time-budget", args.budget],
        "from-lm-unfreeze": ["--from", args.lm, "--gradual-unfreeze", "--time-budget", args.budget],
    }
    if args.only:
        configs = {name: configs[name] for name in args.only.split(",")}
    train, test = read(args.train, args.label_column), read(args.test, args.label_column)
    majority = Counter(train[1]).most_common(1)[0][0]
    print(f"{len(train[0]):,} training and {len(test[0]):,} test texts, {len(set(train[1]))} classes")
    print(f"{'majority class':28} accuracy {sum(t == majority for t in test[1]) / len(test[1]):.4f}")
    print(f"{'bag-of-characters logistic':28} accuracy {bag_of_characters(train, test):.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in configs.items():
            f = run(name, options, args, Path(tmp))
            print(f"{name:28} accuracy {f['accuracy']:.4f}  macro-F1 {f['macro_f1']:.4f}  "
                  f"train {f['train_texts_per_s']:,.1f} texts/s  predict {f['texts_per_s']:,.1f} texts/s  "
                  f"({' '.join(options)})")


if __name__ == "__main__":
    main()
