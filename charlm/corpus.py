"""Text in: a file, a folder of files, a compressed file, or a corpus shipped with charlm.

``load_text`` returns one ``str``; ``split`` cuts it contiguously into train,
validation and test text *before* any tokenisation or batching (torch-rnn's
order, not char-rnn's), so no validation character is ever seen in training.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.resources
import lzma
from dataclasses import dataclass
from pathlib import Path

from charlm.errors import CorpusError

ENCODING_ERRORS = ("strict", "replace", "ignore")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass(frozen=True)
class Corpus:
    """Loaded text and where it came from (a path or a shipped corpus name)."""

    text: str
    source: str
    files: int = 1


def shipped_corpora() -> dict[str, Path]:
    """Names of the corpora in the package's ``corpora`` folder, e.g. {'shakespeare': …/shakespeare.txt}."""
    root = importlib.resources.files("charlm.corpora")
    return {p.name[:-4]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".txt")}


def resolve(source: str, glob: str = "*.txt") -> tuple[list[Path], str]:
    """Turn a path or shipped name into a list of files to read, plus a description of the source."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path], str(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob(glob) if p.is_file())
        if not files:
            raise CorpusError(f"folder {source} has no files matching {glob!r}: add text files or pass --glob")
        return files, str(path)
    shipped = shipped_corpora()
    if source in shipped:
        return [shipped[source]], source
    if path.exists():
        raise CorpusError(f"{source} is neither a regular file nor a folder: pass a text file")
    names = ", ".join(sorted(shipped)) or "none"
    raise CorpusError(f"no file, folder or shipped corpus named {source!r}: check the path (shipped corpora: {names})")


def read_file(path: Path, encoding_errors: str = "strict") -> str:
    """Read one UTF-8 file (gzip, bz2 and xz decompressed on the fly), rejecting binary data.

    Line endings are kept exactly as written (no newline translation), so the
    model sees the file's own characters.
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise CorpusError(f"unknown --encoding-errors {encoding_errors!r}: choose {', '.join(ENCODING_ERRORS)}")
    opener = _OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except PermissionError:
        raise CorpusError(f"cannot read {path}: permission denied; check the file's permissions") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise CorpusError(f"cannot read {path}: {e}; check that the file is complete") from None
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise CorpusError(f"{path} looks binary (NUL byte at offset {offset}): pass a UTF-8 text file")
    try:
        return data.decode("utf-8", errors=encoding_errors)
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{path} is not valid UTF-8 (bad byte at offset {e.start}): convert it to UTF-8, "
            "or pass --encoding-errors replace|ignore"
        ) from None


def load_text(source: str, encoding_errors: str = "strict", glob: str = "*.txt") -> Corpus:
    """Load a corpus by path (file or folder) or shipped name; refuse empty or whitespace-only text.

    A folder's files are read in sorted order and joined with a newline.
    """
    files, description = resolve(source, glob)
    text = "\n".join(read_file(p, encoding_errors) for p in files)
    if not text:
        raise CorpusError(f"corpus {description} is empty: pass a file with some text in it")
    if text.isspace():
        raise CorpusError(f"corpus {description} holds only whitespace: pass a file with some text in it")
    return Corpus(text=text, source=description, files=len(files))


def split(text: str, val_fraction: float = 0.1, test_fraction: float = 0.0) -> tuple[str, str, str]:
    """Cut text contiguously into (train, val, test): train first, then test, then the last val_fraction.

    The last 10% as validation is nanoGPT's convention, so figures compare with
    published ones. A fraction of 0 gives an empty string for that part.
    """
    n = len(text)
    n_val = int(n * val_fraction)
    n_test = int(n * test_fraction)
    n_train = n - n_val - n_test
    if n_train < 2:
        raise CorpusError(f"only {n_train} characters left for training: lower --val-fraction or use a longer corpus")
    return text[:n_train], text[n - n_val:] if n_val else "", text[n_train:n_train + n_test]
