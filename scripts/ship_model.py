"""Copy a finished run into checkpoints/ as a shipped model: best weights only, stored in half precision.

    python scripts/ship_model.py runs/base checkpoints/base --out-name runs/base

The shipped folder holds config.json, tokenizer.json, metrics.jsonl and model.safetensors (no
last.safetensors: the optimizer state only resumes training). The weights are stored as float16 (or
--dtype bfloat16), half the bytes of float32; charlm loads them back as float32. config.json gains a
"shipped" section: the stored precision, what the rounding cost on the run's own validation split
(scored before and after, with the same settings), the run's figures on each shipped corpus
(characters it never saw scored as <unk>; tests/test_pretrained.py checks them), and this command.
``--out-name`` replaces the recorded command's --out, a folder of the machine that trained it, with one
a user's clone can have; corpus files inside the repository are recorded relative to its root.

Run from the repository root. The destination must not exist (or pass --force).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from charlm import checkpoint
from charlm.corpus import shipped_corpora
from charlm.errors import CharlmError

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def score(run: Path, *text: str) -> dict:
    """`charlm eval RUN [--text FILE] --json`: loss and bits per character."""
    result = subprocess.run([sys.executable, "-m", "charlm", "eval", str(run), *text, "--json"],
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"charlm eval {run} {' '.join(text)} failed: {result.stderr.strip()}")
    figures = json.loads(result.stdout)
    return {"loss": round(figures["loss"], 6), "bpc": round(figures["bpc"], 6)}


def with_out(command: str, out_name: str) -> str:
    words = shlex.split(command)
    for flag in ("--out", "-o"):
        if flag in words:
            words[words.index(flag) + 1] = out_name
    return shlex.join(words)


def relative_inputs(corpus: dict) -> dict:
    """The corpus record with inputs inside this repository as paths relative to its root, which a user's
    clone has (a run records absolute paths, so that it resumes from any folder)."""
    root = Path.cwd().resolve()

    def relative(item: str) -> str:
        path = Path(item)
        return str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else item

    return {**corpus, **{key: [relative(item) for item in corpus[key]] for key in ("inputs", "val_inputs")
                         if corpus.get(key)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--out-name", required=True, help="the --out to record in the training command")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if args.dest.exists() and not args.force:
        sys.exit(f"{args.dest} exists: pass --force to replace it")
    try:
        ck = checkpoint.load(args.run)
    except CharlmError as e:
        sys.exit(f"error: {e}")
    info = dict(ck.info)
    info["command"] = with_out(info["command"], args.out_name)
    info["corpus"] = relative_inputs(info["corpus"])
    with tempfile.TemporaryDirectory(dir=args.dest.parent) as tmp:
        staged = Path(tmp) / args.dest.name
        staged.mkdir()
        for name in (checkpoint.TOKENIZER_FILE, checkpoint.METRICS_FILE):
            shutil.copy2(ck.run_dir / name, staged / name)
        checkpoint.save_weights(staged, ck.model, ck.weights, DTYPES[args.dtype])
        checkpoint.write_json(staged / checkpoint.CONFIG_FILE, info)
        before, after = score(ck.run_dir), score(staged)
        # the header's figures are the shipped weights' own, so `charlm eval` reproduces what report shows
        summary = {**ck.weights, "val_loss": after["loss"], "val_bpc": after["bpc"],
                   "val_perplexity": math.exp(after["loss"]), "stored_as": args.dtype}
        checkpoint.save_weights(staged, ck.model, summary, DTYPES[args.dtype])
        info["shipped"] = {
            "weights_dtype": args.dtype,
            "val_split": {"float32_weights": before, "stored_weights": after},
            "shipped_corpora": {name: score(staged, "--text", str(path), "--unknown", "unk")
                                for name, path in shipped_corpora().items() if path.stat().st_size > 1000},
            # as run from a clone where the run is at --out-name (not this machine's path to it)
            "command": shlex.join(["python", "scripts/ship_model.py", args.out_name, str(args.dest), "--out-name",
                                   args.out_name, "--dtype", args.dtype]),
        }
        checkpoint.write_json(staged / checkpoint.CONFIG_FILE, info)
        old = Path(tmp) / "replaced"
        if args.dest.exists():
            args.dest.rename(old)  # the shipped model stays whole until the new one takes its name
        staged.rename(args.dest)
    print(json.dumps(info["shipped"], indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
