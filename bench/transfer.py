"""Transfer: a model fine-tuned from a base model against one trained from scratch for the same time.

Prints, each beside its baseline from the same run:
1. that the base corpus shares no line of 35 or more characters with tinyshakespeare (an honest benchmark);
2. the base model's own bits per character on tinyshakespeare's validation split and on each shipped corpus;
3. tinyshakespeare (first 90% train, last 10% validation): from scratch and fine-tuned from the base
   (`charlm train --from BASE`), each for every --budget, validation loss in nats/char;
4. Korean text the base never saw (the shipped korean_bills, every 43rd bill; none of its bills is in the base
   corpus, though bills repeat one another's sentences):
   each fine-tuning for the shortest budget against from scratch for the longest, in bits per character.
Losses are per character (bits per character × ln 2), whatever the models' tokens: the base reads Hangul as
jamo, a model trained from scratch reads syllables.

    python bench/transfer.py                                  # 60 s and 300 s, the shipped base
    python bench/transfer.py --budgets 60s --skip-korean
    python bench/transfer.py --base runs/base --try "lr=--lr 1e-3"    # another base, another fine-tuning rate
    python bench/transfer.py --budgets 60s --skip-korean --try "1e-3=--lr 1e-3" --try "5e-3=--lr 5e-3"
    python bench/transfer.py --skip-corpus --try "preset=" --try "d0=--dropout 0"    # Korean only, two ways
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from train_budget import parse_try  # run as a script, bench/ is on the path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"
SHIPPED = ["shakespeare", "korean_bills", "kolaw_constitution"]


def charlm(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "charlm", *args], check=True, capture_output=True, text=True,
                          cwd=ROOT).stdout


def overlap(corpus_files: list[Path], reference: Path, min_chars: int = 35) -> tuple[int, int]:
    """The distinct lines of ``reference`` with at least ``min_chars`` characters that occur as a line of the
    corpus, and how many such lines ``reference`` has."""
    long_lines = {line for line in reference.read_text(encoding="utf-8").splitlines() if len(line) >= min_chars}
    corpus_lines = set()
    for path in corpus_files:
        corpus_lines |= set(path.read_text(encoding="utf-8").splitlines())
    return len(long_lines & corpus_lines), len(long_lines)


def train(corpus: Path, budget: str, out: Path, extra: list[str]) -> dict:
    """Train (defaults, or ``extra``) and return the best validation figures and the steps taken."""
    charlm("train", str(corpus), "--time-budget", budget, "--out", str(out), "--force", "--eval-every", "250",
           *extra)
    report = json.loads(charlm("report", str(out), "--json"))
    # Per character, not per token: a child of the base reads Hangul as jamo, a model from scratch as syllables.
    bpc = report["best"]["bpc"]
    return {"loss": bpc * math.log(2), "bpc": bpc, "steps": report["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="base", help="the base run (default: the shipped base model)")
    parser.add_argument("--corpus", type=Path, default=TINY)
    parser.add_argument("--budgets", default="60s,300s")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="LABEL=OPTIONS",
                        help="fine-tune with these charlm train options instead of the preset's, each a run beside "
                             "the same from-scratch one (repeatable)")
    parser.add_argument("--skip-korean", action="store_true")
    parser.add_argument("--skip-corpus", action="store_true", help="only the base's own figures and the Korean part")
    args = parser.parse_args()
    budgets = args.budgets.split(",")
    tunings = {} if args.tries else {"preset": ["--from", args.base]}
    for tried in args.tries:
        label, options = parse_try(tried, "--try 'lr=--lr 1e-3' (or 'preset=')")
        tunings[label] = ["--from", args.base, *options]

    base_corpus = [ROOT / "corpora" / "base" / "train.txt", ROOT / "corpora" / "base" / "val.txt"]
    if all(p.exists() for p in base_corpus):
        shared, lines = overlap(base_corpus, args.corpus)  # tinyshakespeare: 0 (bills repeat each other's sentences)
        print(f"lines of 35+ characters of {args.corpus.name} that are lines of the base corpus: "
              f"{shared:,} of {lines:,}")
    else:
        print("base corpus not built (python scripts/build_corpora.py --only base): overlap not checked")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = args.corpus.read_text(encoding="utf-8")
        val = tmp / "tinyshakespeare-val.txt"
        val.write_text(text[int(len(text) * 0.9):], encoding="utf-8")
        print(f"\nthe base model ({args.base}) before fine-tuning, bits per character:")
        for name, source in [(f"{args.corpus.name} (validation split)", str(val))] + [(n, n) for n in SHIPPED]:
            row = json.loads(charlm("eval", args.base, "--text", source, "--unknown", "unk", "--json"))
            print(f"  {name:40} {row['bpc']:.4f}  ({row['unknown_characters']:,} characters unknown)")

        if not args.skip_corpus:
            print(f"\n{args.corpus.name}: validation loss (nats/char), from scratch and fine-tuned from {args.base}")
        for budget in budgets if not args.skip_corpus else []:
            scratch = train(args.corpus, budget, tmp / f"scratch-{budget}", [])
            print(f"  {budget:>5}  from scratch {scratch['loss']:.4f} ({scratch['steps']:,} steps)")
            for name, options in tunings.items():
                tuned = train(args.corpus, budget, tmp / f"ft-{budget}", options)
                print(f"  {budget:>5}  fine-tuned ({name}) {tuned['loss']:.4f} ({tuned['steps']:,} steps)   ratio "
                      f"to from scratch {tuned['loss'] / scratch['loss']:.3f}", flush=True)

        if not args.skip_korean:
            korean = ROOT / "corpora" / "korean_bills.txt"
            short, long = budgets[0], budgets[-1]
            scratch = train(korean, long, tmp / "ko-scratch", [])
            print(f"\nKorean the base never saw ({korean.name}), bits per character: from scratch {long} "
                  f"{scratch['bpc']:.4f} ({scratch['steps']:,} steps)")
            for name, options in tunings.items():
                tuned = train(korean, short, tmp / "ko-ft", options)
                print(f"  fine-tuned ({name}) {short} {tuned['bpc']:.4f} ({tuned['steps']:,} steps)   ratio to from "
                      f"scratch {long} {tuned['bpc'] / scratch['bpc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
