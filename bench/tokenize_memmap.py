"""Corpora larger than memory: tokenisation throughput and the peak memory of training on a memmapped corpus.

Builds a corpus by repeating a text file (default: the shipped shakespeare.txt), then

1. tokenises a --throughput-mb file into a fresh token cache and prints MB/s for the whole
   preparation (scan + fit + encode) and for each pass;
2. runs `charlm train` on a --size-mb file (a fresh cache, so it tokenises first), then again
   (reusing the cache), and prints each run's peak resident memory (ru_maxrss of the child).

    python bench/tokenize_memmap.py                          # 100 MB throughput, 1 GB training
    python bench/tokenize_memmap.py --size-mb 4000 --steps 500
    python bench/tokenize_memmap.py --level subword --throughput-mb 20 --size-mb 0

Each figure comes from a separate process, so imports and the page cache are the
only things the runs share. Needs free disk space of about twice --size-mb.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[1] / "corpora" / "shakespeare.txt"

PREPARE = """
import json, resource, sys, time
from charlm import data
from charlm.tokenizers import TokenizerSpec
start, stages, last = time.perf_counter(), {}, None
steps = data.prepare_steps(sys.argv[1], 0.1, spec=TokenizerSpec(level=sys.argv[3]), cache_dir=sys.argv[2],
                           cache_min_bytes=0)
while True:
    try:
        report = next(steps)
    except StopIteration as stop:
        run = stop.value
        break
    now = time.perf_counter()
    stages.setdefault(report.stage, [now, now])[1] = now
print(json.dumps({"seconds": time.perf_counter() - start, "bytes": run.corpus_info["bytes"],
                  "stages": {k: b - a for k, (a, b) in stages.items()},
                  "tokens": sum(run.corpus_info["tokens"].values()),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_corpus(source: Path, path: Path, size_mb: int) -> None:
    block = source.read_bytes()
    with open(path, "wb") as f:
        for _ in range(max(1, size_mb * 2**20 // len(block))):
            f.write(block)


def run_child(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage, not the maximum over all children
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            sys.exit(f"{' '.join(command[:4])} … failed:\n{err.read()[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=SHIPPED, help="text to repeat into the corpus")
    parser.add_argument("--throughput-mb", type=int, default=100)
    parser.add_argument("--size-mb", type=int, default=1000, help="corpus size for the training run (0: skip)")
    parser.add_argument("--level", default="char", choices=["char", "byte", "subword"])
    parser.add_argument("--steps", type=int, default=200, help="training steps on the large corpus")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed afterwards)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        if args.throughput_mb:
            path = tmp / "throughput.txt"
            make_corpus(args.text, path, args.throughput_mb)
            _, _, out = run_child([sys.executable, "-c", PREPARE, str(path), str(tmp / "cache-throughput"), args.level])
            r = json.loads(out)
            mb = r["bytes"] / 1e6
            passes = ", ".join(f"{name} {mb / s:,.0f} MB/s" for name, s in r["stages"].items() if s > 0)
            print(f"{args.level} tokenisation of {mb:,.0f} MB: {r['seconds']:.2f} s = {mb / r['seconds']:,.0f} MB/s "
                  f"overall ({passes}); {r['tokens']:,} tokens; peak RSS {r['peak_mb']:,.0f} MB")
            path.unlink()
        if args.size_mb:
            path = tmp / "big.txt"
            make_corpus(args.text, path, args.size_mb)
            size = path.stat().st_size / 1e6
            train = [sys.executable, "-m", "charlm", "train", str(path), "--level", args.level, "--cache-dir",
                     str(tmp / "cache"), "--max-steps", str(args.steps), "--eval-every", str(args.steps + 1),
                     "--val-fraction", "0.0005", "--hidden", "128", "--embed", "32", "--layers", "1",
                     "--batch-size", "64", "--seq-len", "128", "--precision", "fp32", "--force"]
            for label, out in (("tokenise + train", "run1"), ("reuse cache + train", "run2")):
                seconds, peak, _ = run_child([*train, "--out", str(tmp / out)])
                print(f"{label} on a {size:,.0f} MB corpus ({args.steps} steps, batch 64 x 128, final eval on "
                      f"{size * 0.0005:,.1f} MB): {seconds:.1f} s, peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
