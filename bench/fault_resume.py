"""Kill a training run with SIGKILL at random moments, resume it each time, and compare with an uninterrupted run.

Reports how many kills landed (up to --kills: fewer when a resumed run finishes
before its kill comes), the step each resume restarted from, and whether the
final training state (weights, optimizer moments, RNG, hidden state) and the
final validation loss equal those of a run that was never interrupted.

    python bench/fault_resume.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

ARGS = ["--save-every", "25", "--eval-every", "150", "--hidden", "64", "--embed", "16", "--batch-size", "16",
        "--seq-len", "32", "--dropout", "0.1", "--deterministic"]


def charlm(*args) -> list[str]:
    return [sys.executable, "-m", "charlm", *map(str, args)]


def saved_step(run: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(run / "last.safetensors"), "pt") as f:
            return json.loads(f.metadata()["progress"])["step"]
    except Exception:  # not written yet
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--corpus", default="shakespeare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600, help="steps of the run (killed and resumed)")
    args = parser.parse_args()
    run_args = ["--max-steps", str(args.steps), *ARGS]
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        straight, crashed = Path(tmp) / "straight", Path(tmp) / "crashed"
        start = time.perf_counter()
        subprocess.run(charlm("train", args.corpus, "--out", straight, *run_args), check=True, capture_output=True)
        straight_seconds = time.perf_counter() - start

        kills, redone = 0, []
        command = charlm("train", args.corpus, "--out", crashed, *run_args)
        while True:
            before = saved_step(crashed)
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if kills < args.kills:
                # anywhere from start-up (imports, data, loading) to half a run: about a third of the
                # uninterrupted run's time is start-up, so a shorter range kills every resume before it saves
                time.sleep(rng.uniform(0.5, max(straight_seconds / 2, 1.0)))
            if kills < args.kills and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                after = saved_step(crashed)
                redone.append(after)
                print(f"kill {kills:2d}: saved state at step {after} (was {before})")
                if (crashed / "last.safetensors").exists():
                    command = charlm("train", "--resume", crashed)
                else:  # killed before its first save: nothing to resume, so it starts again
                    command = charlm("train", args.corpus, "--out", crashed, "--force", *run_args)
                continue
            if proc.wait() != 0:
                sys.exit("the final resume failed")
            break

        a, b = load_file(straight / "last.safetensors"), load_file(crashed / "last.safetensors")
        identical = a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

        def final_val(run):
            lines = (run / "metrics.jsonl").read_text().splitlines()
            return [json.loads(x)["loss"] for x in lines if json.loads(x)["type"] == "val"][-1]

        print(f"\n{kills} SIGKILLs at random moments, each followed by --resume")
        print(f"final state bit-identical to the uninterrupted run: {identical}")
        print(f"final val loss: uninterrupted {final_val(straight):.6f}, killed and resumed {final_val(crashed):.6f}")
        sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
