"""Every example in every `--help` and in the README runs as written from a fresh clone.

Each command's examples run in order, in a folder laid out like a fresh clone
(corpora/ and the shipped models in checkpoints/), so an example may use what
an earlier one of the same help made. Budgets shrink so that they train for
seconds: --time-budget becomes 1s, --epochs becomes 3 steps, diagnose memory
trains 3 steps per gap. A pipe from printf feeds the command's input; a
redirect to a file is dropped; `--line` runs in a pseudo-terminal; torchrun
runs as a process.
"""

import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from charlm.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RUNS = [p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").exists()]


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under ``group``, itself first: (), ('train',), ('diagnose',), ('diagnose', 'memory'), …"""
    paths = [path] if not path else []
    for name, command in sorted(group.commands.items()):
        paths.append((*path, name))
        if isinstance(command, click.Group):
            paths += commands(command, (*path, name))
    return paths


def examples(text: str) -> list[str]:
    """The example lines after 'Examples:' in a --help text, continuation lines (ending in '\\') joined."""
    lines, joined = text.split("Examples:", 1)[1].splitlines() if "Examples:" in text else [], []
    for line in lines:
        line = line.strip()
        if not line:
            if joined:
                break
            continue
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1].rstrip() + " " + line
        else:
            joined.append(line)
    return joined


def readme_examples() -> list[str]:
    """The commands of the README's sh and console blocks (a chain split at &&; installs left out)."""
    found, block = [], None
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = line[3:] if block is None else None
            continue
        if block not in ("sh", "console") or not line.strip() or line.startswith("#"):
            continue
        if block == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        for part in line.split("&&"):
            part = part.strip()
            if part.startswith(("charlm ", "printf ", "torchrun ")):
                found.append(part)
    return found


@pytest.fixture
def clone(tmp_path, monkeypatch):
    """A folder laid out like a fresh clone, as the working directory."""
    (tmp_path / "corpora").symlink_to(ROOT / "corpora")
    (tmp_path / "checkpoints").mkdir()
    for name in SHIPPED_RUNS:
        (tmp_path / "checkpoints" / name).symlink_to(ROOT / "checkpoints" / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARLM_HISTORY", "")
    return tmp_path


def shrunk(words: list[str]) -> list[str]:
    """The same command with a budget that trains for seconds."""
    out, i = [], 0
    while i < len(words):
        word = words[i]
        if word == "--time-budget":
            out += [word, "1s"]
            i += 2
        elif word == "--epochs":
            out += ["--max-steps", "3"]
            i += 2
        elif word == "--steps" and words[:3] == ["charlm", "diagnose", "memory"]:
            out += [word, "3"]
            i += 2
        else:
            out.append(word)
            i += 1
    if words[:3] == ["charlm", "diagnose", "memory"] and "--steps" not in words:
        out += ["--steps", "3"]
    return out


def run_example(line: str, invoke, clone: Path) -> None:
    """Run one example line as a user would; fail with the line and its output when it does not succeed."""
    input_text = None
    if line.startswith("printf ") and "|" in line:
        printed, line = line.split("|", 1)
        input_text = subprocess.run(["bash", "-c", printed], capture_output=True, text=True, check=True).stdout
        line = line.strip()
    words = shrunk(shlex.split(line.split(" #")[0]))  # a trailing comment is not part of the command
    if ">" in words:
        words = words[:words.index(">")]
    if words[0] == "torchrun":
        result = subprocess.run(words, cwd=clone, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        return
    assert words[0] == "charlm", line
    if words[1] == "repl" and "--line" in words:
        pexpect = pytest.importorskip("pexpect")
        child = pexpect.spawn(sys.executable, ["-m", "charlm", *words[1:]], cwd=str(clone), encoding="utf-8",
                              timeout=60, env={"TERM": "dumb", "CHARLM_HISTORY": "", "PATH": "/usr/bin:/bin"})
        child.expect("»")
        child.sendline(":quit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, f"{line}\n{child.before}"
        return
    result = invoke(*words[1:], input=input_text if input_text is not None else ":quit\n")
    assert result.exit_code == 0, f"{line}\n{result.output}"


@pytest.mark.parametrize("path", commands(), ids=lambda path: " ".join(path) or "charlm")
def test_help_examples_run_as_written(path, invoke, clone):
    text = invoke(*path, "--help").stdout
    lines = examples(text)
    assert lines, f"charlm {' '.join(path)} --help has no examples"
    for line in lines:
        run_example(line, invoke, clone)


def test_readme_examples_run_as_written(invoke, clone):
    lines = readme_examples()
    assert any(line.startswith("charlm train") for line in lines) and any("sample" in line for line in lines)
    for line in lines:
        run_example(line, invoke, clone)


def test_the_examples_are_found():
    """The extraction above sees what a reader sees: joined continuation lines, comments, pipes and chains."""
    text = "Usage: x\n\nExamples:\n  charlm a --x 1 \\\n      --y 2\n  charlm b   # note\n\n  not this\n"
    assert examples(text) == ["charlm a --x 1 --y 2", "charlm b   # note"]
    assert shrunk(["charlm", "train", "--time-budget", "5m", "--epochs", "10"]) == [
        "charlm", "train", "--time-budget", "1s", "--max-steps", "3"]
    assert shrunk(["charlm", "diagnose", "memory"]) == ["charlm", "diagnose", "memory", "--steps", "3"]
    readme = readme_examples()
    assert readme[0].startswith("charlm train --time-budget 60s") and readme[1].startswith("charlm sample")
