"""Text in: files, folders, compressed files, shipped corpora and Hugging Face datasets, read in chunks.

A ``Source`` names one or more inputs, read in order and joined with a newline::

    my.txt  notes.txt.gz          a file; gzip, bz2 and xz are decompressed on the fly
    books/                        a folder: its files matching --glob (*.txt), recursively, sorted
    shakespeare                   a corpus shipped with charlm (corpora/)
    data.jsonl  data.parquet      a table (json, jsonl, csv, parquet) read through `datasets`: its --text-column
    hf:wikitext:wikitext-2-raw-v1 a Hugging Face hub dataset NAME[:CONFIG], its --split and --text-column

``stream`` yields the text in chunks of about CHUNK_BYTES that end just after a
line break, so memory stays bounded whatever the corpus size and a chunk never
cuts a line that a tokenizer or Unicode normalisation would read differently
whole. ``load_text`` joins the chunks into one ``str`` for small texts.

``split_sizes`` cuts the text contiguously into train, test and
validation *characters* before any tokenisation or batching (torch-rnn's order,
not char-rnn's), so no validation character is ever seen in training.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import importlib.resources
import lzma
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator, NamedTuple

from charlm.errors import CorpusError

ENCODING_ERRORS = ("strict", "replace", "ignore")
CHUNK_BYTES = 4 << 20
NUL = b"\x00"
_OPENERS = {".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"), ".bz2": bz2.BZ2File, ".xz": lzma.LZMAFile}


@dataclass(frozen=True)
class Source:
    """Where a corpus comes from and how to read it; stored in config.json so a run can read it again."""

    inputs: tuple[str, ...]  # files, folders, shipped names, table files, hf:NAME[:CONFIG]
    glob: str = "*.txt"  # which files of a folder to read
    encoding_errors: str = "strict"
    hf_split: str = "train"  # for Hugging Face datasets
    text_column: str = "text"  # for datasets and table files

    def __post_init__(self):
        if isinstance(self.inputs, str):
            object.__setattr__(self, "inputs", (self.inputs,))
        if not self.inputs:
            raise CorpusError("no corpus given: pass a file, a folder, a shipped corpus name or hf:NAME")
        if self.encoding_errors not in ENCODING_ERRORS:
            raise CorpusError(f"unknown --encoding-errors {self.encoding_errors!r}: "
                              f"choose {', '.join(ENCODING_ERRORS)}")

    @property
    def description(self) -> str:
        return " + ".join(self.inputs)

    def to_dict(self) -> dict:
        return {**asdict(self), "inputs": list(self.inputs)}

    def absolute(self) -> "Source":
        """The same source with local files and folders as absolute paths (shipped names and hf: stay), so that
        a run recorded from one folder can be resumed or evaluated from another."""
        def absolute(name: str) -> str:
            path = Path(name).expanduser()
            return str(path.resolve()) if path.exists() and not name.startswith("hf:") else name

        return replace(self, inputs=tuple(absolute(name) for name in self.inputs))

    @classmethod
    def from_dict(cls, data: dict) -> "Source":
        """Read ``to_dict`` output back; also a bare {'source': path} from checkpoints before several inputs."""
        if "inputs" not in data:
            return cls((data["source"],), encoding_errors=data.get("encoding_errors", "strict"))
        return cls(tuple(data["inputs"]), data.get("glob", "*.txt"), data.get("encoding_errors", "strict"),
                   data.get("hf_split", "train"), data.get("text_column", "text"))


class Chunk(NamedTuple):
    """A piece of corpus text, its UTF-8 bytes, and how far through the input the reader is."""

    text: str
    data: bytes | memoryview  # text.encode('utf-8'), for hashing without encoding again
    done: int  # input bytes read so far (compressed size for compressed files, text size for datasets)
    total: int | None  # input bytes in all, when known


@dataclass(frozen=True)
class Corpus:
    """Loaded text and where it came from."""

    text: str
    source: str
    files: int = 1


# ----- finding the inputs -----------------------------------------------------------------------------------


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


def _plan(source: Source) -> list[str | Path]:
    """Every input to read, in order: Paths for files, 'hf:…' strings for hub datasets. Fails fast on a bad one."""
    from charlm import hub

    plan: list[str | Path] = []
    for item in source.inputs:
        if hub.is_hub_name(item):
            plan.append(item)
        else:
            plan += resolve(item, source.glob)[0]
    return plan


def count_inputs(source: Source) -> int:
    """How many files and datasets the source reads."""
    return len(_plan(source))


# ----- reading ----------------------------------------------------------------------------------------------


def _open(path: Path):
    """(text-of-bytes reader, raw file): the raw file's position tells how much of the input is read."""
    raw = open(path, "rb")
    opener = _OPENERS.get(path.suffix.lower())
    return (opener(raw) if opener else raw), raw


def _last_char_start(buf: bytes) -> int:
    """Where to cut ``buf`` so no UTF-8 character is split: before its last character, unless that is ASCII."""
    i = len(buf) - 1
    while i > len(buf) - 4 and buf[i] & 0xC0 == 0x80:  # continuation bytes 0b10xxxxxx
        i -= 1
    return i if buf[i] >= 0xC0 else len(buf)


def _file_chunks(path: Path, encoding_errors: str, chunk_bytes: int) -> Iterator[tuple[str, bytes, int]]:
    """(text, UTF-8 bytes, raw bytes read) for one file, in chunks ending after a line break.

    A line longer than 4 × chunk_bytes is cut at a character boundary instead.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors=encoding_errors)
    offset, carry = 0, b""  # offset: decompressed bytes before ``carry``
    try:
        reader, raw = _open(path)
        with raw, reader:
            while True:
                block = reader.read(chunk_bytes)
                final = not block
                if NUL in block:
                    at = offset + len(carry) + block.index(NUL)
                    raise CorpusError(f"{path} looks binary (NUL byte at offset {at}): pass a UTF-8 text file")
                end = block.rfind(b"\n") + 1
                if final:
                    piece, carry = carry, b""
                elif end:  # cut after the block's last line break (one copy at most)
                    piece = b"".join((carry, memoryview(block)[:end])) if carry else memoryview(block)[:end]
                    carry = block[end:]
                elif len(carry) + len(block) < 4 * chunk_bytes:  # no line break yet: read on
                    carry += block
                    continue
                else:  # a very long line
                    buf = carry + block
                    cut = _last_char_start(buf)
                    piece, carry = buf[:cut], buf[cut:]
                try:
                    text = decoder.decode(piece, final)
                except UnicodeDecodeError as e:
                    raise CorpusError(f"{path} is not valid UTF-8 (bad byte at offset {offset + e.start}): convert it "
                                      "to UTF-8, or pass --encoding-errors replace|ignore") from None
                data = piece if encoding_errors == "strict" else text.encode("utf-8", errors="surrogatepass")
                offset += len(piece)
                if text:
                    yield text, data, raw.tell()
                if final:
                    return
    except PermissionError:
        raise CorpusError(f"cannot read {path}: permission denied; check the file's permissions") from None
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise CorpusError(f"cannot read {path}: {e}; check that the file is complete") from None


def _dataset_chunks(item: str | Path, source: Source, chunk_bytes: int) -> Iterator[tuple[str, bytes, int]]:
    """(text, UTF-8 bytes, text bytes so far) for a dataset: its rows joined with newlines, in chunks."""
    from charlm import hub

    rows, size, done = [], 0, 0
    for row in hub.iter_texts(item, source.hf_split, source.text_column, source.encoding_errors):
        if size >= chunk_bytes:
            text = "\n".join(rows) + "\n"
            data = text.encode("utf-8", errors="surrogatepass")
            done += len(data)
            yield text, data, done
            rows, size = [], 0
        rows.append(row)
        size += len(row)
    text = "\n".join(rows)
    data = text.encode("utf-8", errors="surrogatepass")
    yield text, data, done + len(data)


def decoded(path: Path, encoding_errors: str = "strict") -> Iterator[str]:
    """The text of one file (decompressed), in chunks ending after a line break; a CorpusError at the first
    byte that is not UTF-8 under ``encoding_errors`` strict."""
    for text, _, _ in _file_chunks(Path(path), encoding_errors, CHUNK_BYTES):
        yield text


def stream(source: Source | str, chunk_bytes: int | None = None) -> Iterator[Chunk]:
    """The corpus text in chunks of about ``chunk_bytes`` (default CHUNK_BYTES); inputs are joined with a
    newline. Refuses empty or whitespace-only text.

    Line endings are kept exactly as written (no newline translation), so the
    model sees the files' own characters.
    """
    from charlm import hub

    chunk_bytes = chunk_bytes or CHUNK_BYTES
    source = source if isinstance(source, Source) else Source((source,))
    plan = _plan(source)
    total = sum(p.stat().st_size for p in plan if isinstance(p, Path) and not hub.is_table_file(p)) or None
    before, has_text, has_chars = 0, False, False
    for i, item in enumerate(plan):
        if i:
            yield Chunk("\n", b"\n", before, total)
        is_table = not isinstance(item, Path) or hub.is_table_file(item)
        parts = (_dataset_chunks(item, source, chunk_bytes) if is_table
                 else _file_chunks(item, source.encoding_errors, chunk_bytes))
        read = 0
        for text, data, read in parts:
            has_chars = has_chars or bool(text)
            has_text = has_text or (bool(text) and not text.isspace())
            yield Chunk(text, data, before + read, total)
        before += read
    if not has_chars:
        raise CorpusError(f"corpus {source.description} is empty: pass a file with some text in it")
    if not has_text:
        raise CorpusError(f"corpus {source.description} holds only whitespace: pass a file with some text in it")


def read_file(path: Path, encoding_errors: str = "strict") -> str:
    """Read one UTF-8 file (gzip, bz2 and xz decompressed on the fly), rejecting binary data."""
    if encoding_errors not in ENCODING_ERRORS:
        raise CorpusError(f"unknown --encoding-errors {encoding_errors!r}: choose {', '.join(ENCODING_ERRORS)}")
    return "".join(text for text, _, _ in _file_chunks(Path(path), encoding_errors, CHUNK_BYTES))


def load_text(source: Source | str, encoding_errors: str = "strict", glob: str = "*.txt") -> Corpus:
    """The whole corpus as one ``str`` (for small texts; ``stream`` reads large ones in chunks)."""
    if not isinstance(source, Source):
        source = Source((source,), glob=glob, encoding_errors=encoding_errors)
    text = "".join(chunk.text for chunk in stream(source))
    return Corpus(text=text, source=source.description, files=count_inputs(source))


# ----- splitting --------------------------------------------------------------------------------------------


def split_sizes(n_chars: int, val_fraction: float = 0.1, test_fraction: float = 0.0) -> tuple[int, int, int]:
    """Characters of (train, test, val) for a text of ``n_chars``: train first, then test, then the last
    ``val_fraction`` (nanoGPT's convention, so figures compare with published ones)."""
    n_val = int(n_chars * val_fraction)
    n_test = int(n_chars * test_fraction)
    n_train = n_chars - n_val - n_test
    if n_train < 2 and n_val + n_test == 0:
        raise CorpusError(f"the corpus has {n_chars} character(s) and training needs at least 2: pass a longer corpus")
    if n_train < 2:
        raise CorpusError(f"only {n_train} character(s) left for training: lower --val-fraction or use a longer corpus")
    return n_train, n_test, n_val
