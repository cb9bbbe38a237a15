"""The house rules that keep the data flow one-way, checked on the source (docs/design.md):

- only charlm/cli/ imports click, rich or prompt_toolkit, and only it prints;
- nothing below the command line imports charlm.cli;
- the tokenizers import no torch (they work on numpy arrays).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "charlm"
SCREEN = ("click", "rich", "prompt_toolkit")


def library_modules() -> list[Path]:
    """Every module of the package outside charlm/cli/ (and __main__.py, which only calls the CLI)."""
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "cli" not in p.relative_to(PACKAGE).parts[:1] and p.name != "__main__.py")


def imported(tree: ast.AST) -> set[str]:
    """Every module name an import statement anywhere in ``tree`` names (top level or inside a function)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def writes_to_the_screen(tree: ast.AST) -> list[int]:
    """Lines that call print() or write to sys.stdout / sys.stderr."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "print":
            lines.append(node.lineno)
        elif (isinstance(f, ast.Attribute) and f.attr in ("write", "writelines") and isinstance(f.value, ast.Attribute)
              and f.value.attr in ("stdout", "stderr") and isinstance(f.value.value,
                                                                      ast.Name) and f.value.value.id == "sys"):
            lines.append(node.lineno)
    return lines


def test_the_library_is_found():
    names = {p.relative_to(PACKAGE).as_posix() for p in library_modules()}
    assert {"model.py", "train.py", "tokenizers/char.py", "explore/units.py"} <= names
    assert not any(name.startswith("cli/") for name in names)


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_only_the_command_line_imports_screen_libraries_or_prints(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    screen = sorted(name for name in imported(tree) if name.split(".")[0] in SCREEN)
    assert not screen, f"{path.name} imports {screen}: only charlm/cli/ may; return values and let the CLI render"
    assert not any(name == "charlm.cli" or name.startswith("charlm.cli.") for name in imported(tree)), \
        f"{path.name} imports charlm.cli: imports point down, from the command line to the library"
    assert not writes_to_the_screen(tree), f"{path.name} prints (lines {writes_to_the_screen(tree)}): return the text"


@pytest.mark.parametrize("path", sorted((PACKAGE / "tokenizers").glob("*.py")), ids=lambda p: p.name)
def test_tokenizers_need_no_torch(path):
    names = imported(ast.parse(path.read_text(encoding="utf-8")))
    assert not any(name.split(".")[0] == "torch" for name in names), f"tokenizers/{path.name} imports torch"


def test_the_checks_catch_what_they_look_for():
    """The rules above fail on the code they forbid (so a passing run means something)."""
    tree = ast.parse("def f():\n    from rich.console import Console\n    import click\n    print('x')\n"
                     "    sys.stderr.write('y')\n    sys.stdout.flush()\n    from charlm.cli import console\n")
    assert {"rich.console", "click", "charlm.cli"} <= imported(tree)
    assert writes_to_the_screen(tree) == [4, 5]
