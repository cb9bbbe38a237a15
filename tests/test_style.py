"""The code style the project keeps (ruff, configured in pyproject.toml), checked with the tests so CI runs it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -c constraints.txt -e '.[test]' brings it")
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_installed_with_the_tests():
    """The test extra brings ruff, so the check above runs wherever the README's test command does."""
    from importlib.metadata import requires

    assert any(r.startswith("ruff") and 'extra == "test"' in r for r in requires("charlm") or []), sys.executable
