"""Soak: train for a long stretch on a large corpus and watch memory and checkpoint write times.

Builds a corpus of --size-mb megabytes (the shipped Shakespeare repeated) in a
temporary folder, trains the default model on it for --minutes with a resumable
checkpoint every --save-every steps, samples the training process's resident
memory (VmRSS) every second, and prints memory over time (it should stay flat),
the growth between the first and last quarter, and checkpoint write times.

    python bench/soak.py --size-mb 1000 --minutes 30
    python bench/soak.py --size-mb 100 --minutes 3        # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charlm.corpus import shipped_corpora


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def build_corpus(path: Path, size_mb: int) -> None:
    block = shipped_corpora()["shakespeare"].read_bytes()
    with open(path, "wb") as f:
        written = 0
        while written < size_mb * 1_000_000:
            f.write(block)
            written += len(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--save-every", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus, run = Path(tmp) / "big.txt", Path(tmp) / "run"
        build_corpus(corpus, args.size_mb)
        command = [sys.executable, "-m", "charlm", "train", str(corpus), "--out", str(run),
                   "--time-budget", f"{args.minutes * 60:g}s", "--save-every", str(args.save_every),
                   "--eval-every", "1000000", "--val-fraction", "0.001"]
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = []
        while proc.poll() is None:
            value = rss_mb(proc.pid)
            if value is not None:
                samples.append((time.perf_counter() - start, value))
            time.sleep(1.0)
        if proc.returncode != 0:
            sys.exit(f"training failed with exit code {proc.returncode}: {' '.join(command)}")
        saves = [r["seconds"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                 if r["type"] == "save"]
    print(f"corpus {args.size_mb} MB, {args.minutes:g} min of training, {len(samples)} memory samples")
    print("  time_s   rss_mb")
    for t, value in samples[:: max(len(samples) // 12, 1)]:
        print(f"  {t:6.0f}  {value:7.0f}")
    quarter = max(len(samples) // 4, 1)
    first = statistics.median(v for _, v in samples[:quarter])
    last = statistics.median(v for _, v in samples[-quarter:])
    print(f"peak RSS {max(v for _, v in samples):.0f} MB; median RSS first quarter {first:.0f} MB, "
          f"last quarter {last:.0f} MB (growth {last - first:+.0f} MB)")
    if saves:
        print(f"{len(saves)} checkpoint writes: median {statistics.median(saves) * 1000:.0f} ms, "
              f"max {max(saves) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
