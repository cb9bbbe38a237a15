"""Text from tables through Hugging Face ``datasets``: hub datasets (hf:NAME[:CONFIG]) and local json/jsonl/csv/parquet.

``iter_texts`` yields the ``text_column`` of every row, in order, keeping the
line breaks inside each value (``corpus.stream`` joins the rows with a newline).
Rows are read in batches from the dataset's memory-mapped Arrow files, so a
dataset larger than memory streams.

A hub name needs the network. Before asking ``datasets`` (which retries for
tens of seconds when offline), charlm checks in under PROBE_SECONDS that the
hub answers at all, and otherwise fails with one line that says how to use a
local file instead. With HF_HUB_OFFLINE=1 (or HF_DATASETS_OFFLINE=1) the probe is
skipped and only datasets already in the local cache load.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from charlm.errors import CorpusError

HUB_PREFIX = "hf:"
TABLE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
PROBE_SECONDS = 3.0
BATCH_ROWS = 1000


def is_hub_name(item: str) -> bool:
    return str(item).startswith(HUB_PREFIX)


def is_table_file(path: Path) -> bool:
    """A json, jsonl, csv or parquet file (optionally .gz), read as a table rather than as plain text."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in TABLE_FORMATS


def parse_hub_name(item: str) -> tuple[str, str | None]:
    """'hf:wikitext:wikitext-2-raw-v1' → ('wikitext', 'wikitext-2-raw-v1'); 'hf:user/data' → ('user/data', None)."""
    name, _, config = item[len(HUB_PREFIX):].partition(":")
    if not name:
        raise CorpusError(f"{item!r} names no dataset: write hf:NAME or hf:NAME:CONFIG, "
                          "e.g. hf:wikitext:wikitext-2-raw-v1")
    return name, config or None


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = PROBE_SECONDS) -> str | None:
    """None when a TCP connection to the hub (HF_ENDPOINT, default huggingface.co) opens within ``timeout``
    seconds, else the reason. Runs in a thread, because a name lookup can block far longer than a socket timeout."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    outcome: list[str | None] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port}: {e.strerror or e}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}: no answer in {timeout:g} s"


@contextlib.contextmanager
def _quiet_datasets():
    """datasets draws progress bars and logs its errors on stderr; charlm's library code prints nothing (a failure
    becomes one CorpusError, which carries the reason)."""
    import datasets

    was_disabled = datasets.utils.logging.is_progress_bar_enabled() is False
    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield datasets
    finally:
        datasets.logging.set_verbosity(verbosity)
        if not was_disabled:
            datasets.enable_progress_bars()


def load(item: str | Path, split: str = "train", encoding_errors: str = "strict"):
    """The ``datasets.Dataset`` for a hub name or a local table file (one split). A local csv or json file
    that is not valid UTF-8 is a CorpusError naming the first bad byte; with ``encoding_errors`` replace or
    ignore, a decoded copy of it is loaded instead."""
    if is_hub_name(item):
        name, config = parse_hub_name(item)
        if not _offline():
            reason = hub_reachable()
            if reason is not None:
                raise CorpusError(f"the Hugging Face hub is unreachable ({reason}), so dataset {name} cannot be "
                                  "downloaded: download it where there is network and pass the local file instead "
                                  "(a .jsonl, .csv or .parquet file with the same columns), or set HF_HUB_OFFLINE=1 "
                                  "to use a copy already in the datasets cache")
        args, kwargs, label = (name, config), {"split": split}, f"dataset {name}"
        with _quiet_datasets() as datasets:
            return _load(datasets, args, kwargs, label, "check the name, --split, and that the dataset is in the "
                                                       "local datasets cache when offline")
    path = Path(item)
    fmt = TABLE_FORMATS[[s.lower() for s in path.suffixes if s.lower() != ".gz"][-1]]
    with tempfile.TemporaryDirectory(prefix="charlm-table-") as folder, _quiet_datasets() as datasets:
        data_file = path if fmt == "parquet" else _utf8(path, encoding_errors, Path(folder) / f"table.{fmt}")
        return _load(datasets, (fmt,), {"data_files": str(data_file), "split": "train"}, str(path),
                     f"check that it is a {fmt} file with a header row" if fmt == "csv" else
                     f"check that it is a {fmt} file")


def _load(datasets, args: tuple, kwargs: dict, label: str, fix: str):
    """datasets.load_dataset, any failure turned into one CorpusError that ends in ``fix``."""
    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as e:  # datasets raises many types (DatasetNotFoundError, ValueError, ArrowInvalid …)
        reason = e
        while reason.__cause__ is not None:  # DatasetGenerationError wraps the reason, e.g. a JSON parse error
            reason = reason.__cause__
        if "corresponds to no data" in str(reason) or type(reason).__name__ == "EmptyDataError":
            raise CorpusError(f"{label} has no rows: pass a table with a header and at least one row") from None
        raise CorpusError(f"cannot load {label} ({type(reason).__name__}: {_first_line(reason)}): {fix}") from None


def _utf8(path: Path, encoding_errors: str, copy: Path) -> Path:
    """``path`` when it is valid UTF-8 (strict: a CorpusError at the first bad byte, from corpus.decoded);
    with replace or ignore, a decoded UTF-8 copy of it written to ``copy`` (also decompressed)."""
    from charlm import corpus

    if encoding_errors == "strict":
        for _ in corpus.decoded(path, "strict"):  # reading it through is the check
            pass
        return path
    with open(copy, "w", encoding="utf-8", errors="surrogatepass", newline="") as out:
        for text in corpus.decoded(path, encoding_errors):
            out.write(text)
    return copy


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def iter_texts(item: str | Path, split: str = "train", text_column: str = "text",
               encoding_errors: str = "strict") -> Iterator[str]:
    """The ``text_column`` value of every row, in order (empty values included, None skipped)."""
    dataset = load(item, split, encoding_errors)
    if text_column not in dataset.column_names:
        raise CorpusError(f"{item} has no column {text_column!r} (columns: {', '.join(dataset.column_names)}): "
                          "pass --text-column NAME")
    rows = dataset.select_columns([text_column])
    for batch in rows.iter(batch_size=BATCH_ROWS):
        for value in batch[text_column]:
            if value is None:
                continue
            if not isinstance(value, str):
                raise CorpusError(f"column {text_column!r} of {item} holds {type(value).__name__}, not text: "
                                  "pass --text-column with a text column")
            yield value
