"""Training throughput of `charlm train` with 1 and 2 processes (torchrun, gloo) on CPU, and on a GPU
when there is one: tokens/s and model FLOP utilisation for the default and a large model.

Every figure comes from real runs of the command line, read back from the runs' metrics.jsonl
(median tokens/s of the logged steps after the first, so start-up and compilation are left out).
All processes together get the same CPU threads in each CPU configuration, so the comparison is
of how the work is split, not of how much hardware it gets:

- 1 process with T threads (the whole machine, torch's intra-op threads);
- 2 processes with T/2 threads each (DistributedDataParallel over gloo, batch split in two);
- 1 process with --compile (torch.compile), to see whether it helps on this machine.

MFU on the GPU counts 6 × matmul parameters × tokens per second against the GPU's bf16 matrix
product ceiling measured here (not a datasheet figure).

    python bench/distributed.py [--corpus ../shared/corpora/tinyshakespeare.txt] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from throughput import matmul_ceiling, matmul_params

from charlm.config import ModelConfig

VOCAB = 65
LARGE = ["--layers", "3", "--hidden", "1024", "--embed", "256"]


def tokens_per_s(command: list[str], out: Path, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command + ["--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if r["type"] == "train" and r["step"] > 10]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="../shared/corpora/tinyshakespeare.txt")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                        help="CPU threads in all, per configuration")
    args = parser.parse_args()
    corpus = args.corpus if Path(args.corpus).exists() else "shakespeare"
    train = [sys.executable, "-m", "charlm", "train", corpus, "--max-steps", str(args.steps),
             "--eval-every", str(10 * args.steps), "--val-fraction", "0.1"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "charlm", "train", *train[4:]]
    print(f"corpus {corpus}, {args.steps} steps of the default model (LSTM 2x256, batch 32 x seq 64), "
          f"{args.threads} CPU threads per configuration")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = tokens_per_s(train + ["--device", "cpu"], tmp / "one", args.threads)
        two = tokens_per_s(torchrun + ["--device", "cpu"], tmp / "two", max(args.threads // 2, 1))
        compiled = tokens_per_s(train + ["--device", "cpu", "--compile"], tmp / "compiled", args.threads)
        print(f"cpu  1 process  x {args.threads} threads : {one:10,.0f} tokens/s")
        print(f"cpu  2 processes x {max(args.threads // 2, 1)} threads : {two:10,.0f} tokens/s  "
              f"(ratio to 1 process {two / one:.2f})")
        print(f"cpu  1 process, --compile  : {compiled:10,.0f} tokens/s  (ratio to eager {compiled / one:.2f})")
        if not torch.cuda.is_available():
            print("no CUDA GPU here: GPU figures skipped")
            return
        ceiling = matmul_ceiling(torch.bfloat16, 8192, 8192, 8192) * 1e9  # FLOP/s
        print(f"gpu  {torch.cuda.get_device_name()}: bf16 matmul ceiling {ceiling / 1e12:.0f} TFLOP/s")
        for name, extra, config in (("default", [], ModelConfig()),
                                    ("large 3x1024", LARGE, ModelConfig(num_layers=3, hidden_size=1024,
                                                                        embed_size=256))):
            for batch in ("32", "256"):
                rate = tokens_per_s(train + ["--device", "cuda", "--batch-size", batch, *extra],
                                    tmp / f"gpu-{name}-{batch}".replace(" ", ""), args.threads)
                mfu = rate * 6 * matmul_params(config, VOCAB) / ceiling
                print(f"gpu  {name:13s} batch {batch:>3s}: {rate:12,.0f} tokens/s  MFU {100 * mfu:5.1f}%")


if __name__ == "__main__":
    main()
