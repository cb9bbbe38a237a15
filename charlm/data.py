"""Corpus → tokenizer → token ids: the data half of a run, shared by train, resume and eval.

Three streaming passes over the corpus keep memory bounded whatever its size::

    1. scan    count the characters and hash the text          → where train | test | val start
    2. fit     fit the tokenizer on the training part only     (skipped when a tokenizer is given, or cached)
    3. encode  tokenize each part, chunk by chunk, into a token file per part

    text   [ train ............................. | test ..... | val ...... ]   cut by characters
    ids      train.bin                              test.bin     val.bin         each part tokenized on its own

The split is by characters of the text as read (before any normalisation), so
char, byte and subword runs on the same corpus hold out the same validation text.

A corpus of ``cache_min_bytes`` or more is tokenized into a token cache
(tokencache.py) keyed by the corpus hash, the split and the tokenizer, and its
parts come back as read-only numpy memmaps; the next run with the same corpus
and tokenizer reuses them. A smaller corpus is tokenized into a throwaway
folder and loaded into memory.

``prepare_steps`` yields ``ReadProgress`` reports and returns ``RunData``
(``drain`` runs it without looking at them). Nothing here prints: warnings and
notes come back as strings for the CLI to show.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generator, Iterator

import numpy as np

from charlm import corpus as corpus_mod
from charlm import tokencache
from charlm.corpus import Chunk, Source
from charlm.errors import CorpusError
from charlm.tokenizers import Tokenizer, TokenizerSpec
from charlm.tokenizers.char import CharFitter
from charlm.tokenizers.text import describe_chars

CACHE_MIN_BYTES = 32 << 20  # smaller corpora tokenize in about a second: no cache
MAX_UNSEEN_SHOWN = 1000


@dataclass(frozen=True)
class ReadProgress:
    """How far a pass has read: ``done`` of ``total`` input bytes (total None when unknown)."""

    stage: str  # 'scanning', 'reading training text', 'fitting the … tokenizer', 'tokenizing'
    done: int
    total: int | None


@dataclass
class RunData:
    """A run's tokenizer and the ids of each part of its corpus."""

    tokenizer: Tokenizer
    train_ids: np.ndarray  # (N_train,) in memory, or a read-only memmap for a cached corpus
    val_ids: np.ndarray | None  # (N_val,) or None when there is no validation text
    val_chars: int  # characters the validation targets (val_ids[1:]) stand for, for bits per character
    corpus_info: dict  # recorded in config.json, so resume and eval can read the same split again
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. 'reusing token cache …'
    test_ids: np.ndarray | None = None
    test_chars: int = 0
    train_chars: int = 0
    added_chars: str = ""  # characters of the training text a parent tokenizer lacked, now in the vocabulary


@dataclass(frozen=True)
class Scan:
    characters: int
    bytes: int
    sha256: str


def drain(steps: Generator):
    """Run a generator of progress reports (ReadProgress, …) to its end and return its value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


# ----- the three passes -------------------------------------------------------------------------------------


class _Worker:
    """One background thread for hashing and writing, which release the GIL, so they overlap with decoding
    and tokenizing on the main thread. At most one job waits, so memory stays at two chunks."""

    def __enter__(self):
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending = None
        return self

    def run(self, fn, *args) -> None:
        if self._pending is not None:
            self._pending.result()  # re-raises the job's error, if any
        self._pending = self._pool.submit(fn, *args)

    def __exit__(self, *exc):
        try:
            if self._pending is not None and exc[0] is None:
                self._pending.result()
        finally:
            self._pool.shutdown(wait=True)


def _store(digest, data, writer: tokencache.TokenWriter, part: str, ids: np.ndarray) -> None:
    digest.update(data)
    writer.write(part, ids)


def _scan(source: Source, fitter: CharFitter | None = None) -> Generator[ReadProgress, None, Scan]:
    """Count and hash the text; a ``fitter`` also sees every chunk with its position (char vocabulary)."""
    digest, characters, size = hashlib.sha256(), 0, 0
    with _Worker() as worker:
        for chunk in corpus_mod.stream(source):
            worker.run(digest.update, chunk.data)
            if fitter is not None:
                fitter.add(chunk.text, characters)
            characters += len(chunk.text)
            size += len(chunk.data)
            yield ReadProgress("scanning", chunk.done, chunk.total)
    return Scan(characters, size, digest.hexdigest())


def _pieces(layout: list[tuple[Source, list[tuple[str, int]]]]) -> Iterator[tuple[str, str, bytes, Chunk]]:
    """(part, text, UTF-8 bytes, chunk) along the sources, each chunk cut where a part ends.

    ``layout`` lists, per source, its parts and their sizes in characters, e.g.
    [(corpus, [('train', 900), ('test', 0), ('val', 100)])].
    """
    for source, parts in layout:
        parts = [(name, size) for name, size in parts if size > 0]
        index, left = 0, parts[0][1] if parts else 0
        for chunk in corpus_mod.stream(source):
            text, data = chunk.text, chunk.data
            while text and index < len(parts):
                if len(text) <= left:
                    yield parts[index][0], text, data, chunk
                    left -= len(text)
                    break
                head, text = text[:left], text[left:]
                yield parts[index][0], head, head.encode("utf-8", errors="surrogatepass"), chunk
                data = text.encode("utf-8", errors="surrogatepass")
                index += 1
                left = parts[index][1] if index < len(parts) else 0
            if left == 0 and index < len(parts):
                index += 1
                left = parts[index][1] if index < len(parts) else 0


def _fit(layout, spec: TokenizerSpec, expected_bytes: int) -> Generator[ReadProgress, None, object]:
    """Fit a tokenizer on the 'train' part only, stopping the read where it ends."""
    fitter = spec.fitter(expected_bytes)
    for part, text, _, chunk in _pieces(layout):
        if part != "train":
            break
        fitter.add(text)
        yield ReadProgress("reading training text", chunk.done, chunk.total)
    yield ReadProgress(f"fitting the {spec.level} tokenizer", 0, None)  # sentencepiece can take minutes here
    return fitter.finish()


def _encode(layout, tokenizer, folder: Path) -> Generator[ReadProgress, None, dict]:
    """Tokenize every part into ``folder``; returns the meta dict (tokens, characters, hashes per part).

    Training text must be fully known to the tokenizer; unseen characters elsewhere become <unk>.
    A part's ``target_characters``, the denominator of bits per character, counts the characters
    of the text as read, less those of its first token (never a target): the same text gives the
    same count at every level and under every normalisation, so bpc compares fairly.
    """
    writer = tokencache.TokenWriter(folder, tokenizer.dtype)
    digests = {part: hashlib.sha256() for part in tokencache.PARTS}
    characters = dict.fromkeys(tokencache.PARTS, 0)
    first = {}  # each part's first id, whose characters are never a target
    unseen: set[str] = set()
    try:
        with _Worker() as worker:
            for part, text, data, chunk in _pieces(layout):
                ids = tokenizer.encode(text, unknown="error" if part == "train" else "unk")
                worker.run(_store, digests[part], data, writer, part, ids)
                if (part != "train" and tokenizer.unk_id is not None and len(unseen) < MAX_UNSEEN_SHOWN
                        and (ids == tokenizer.unk_id).any()):
                    unseen |= tokenizer.unknown_chars(text)
                characters[part] += len(text)
                if part not in first and len(ids):
                    first[part] = ids[:1]
                yield ReadProgress("tokenizing", chunk.done, chunk.total)
    finally:
        writer.close()
    meta = {
        "format": tokencache.FORMAT,
        "dtype": tokenizer.dtype.name,
        "tokenizer_sha256": tokenizer.fingerprint(),
        "parts": {part: {
            "tokens": writer.tokens[part],
            "characters": characters[part],
            "target_characters": characters[part] - (tokenizer.count_chars(first[part]) if part in first else 0),
            "sha256": digests[part].hexdigest() if characters[part] else None,
        } for part in tokencache.PARTS},
        "unseen": "".join(sorted(unseen)),
    }
    tokencache.write_meta(folder, meta)
    return meta


# ----- a run's data -----------------------------------------------------------------------------------------


def prepare_steps(source: Source | str, val_fraction: float, test_fraction: float = 0.0,
                  val_source: Source | str | None = None, tokenizer=None, spec: TokenizerSpec | None = None,
                  cache_dir: Path | None = None, cache_min_bytes: int = CACHE_MIN_BYTES,
                  check_against: dict | None = None, parent: Tokenizer | None = None
                  ) -> Generator[ReadProgress, None, RunData]:
    """Scan, split, fit the tokenizer on the training text only (unless ``tokenizer`` is given), encode.

    ``spec`` says which tokenizer to fit (default: char level). ``parent`` is a tokenizer to start from
    (fine-tuning a run): at char level the characters of the training text it lacks are added to it (the
    new ones in ``RunData.added_chars``); at the other levels it is used as it is. ``cache_dir`` None
    turns the token cache off. ``check_against`` is a recorded corpus_info: a
    corpus whose text hash differs from it is refused before any tokenising.
    Validation characters unseen in training are mapped to <unk> with a warning,
    so they cost the model (as they should) instead of stopping the run.
    """
    source = source if isinstance(source, Source) else Source((source,))
    if parent is not None and parent.kind != "char":
        tokenizer = parent  # nothing can be unknown to a byte or subword tokenizer: it is used as it is
    elif parent is not None:
        spec = TokenizerSpec(level="char", normalize=parent.normalize)  # the characters of the training text
    spec = spec or TokenizerSpec()
    if isinstance(val_source, str):
        val_source = Source((val_source,), source.glob, source.encoding_errors, source.hf_split, source.text_column)

    # 1. scan; the char vocabulary of raw text is collected on the way, so that level needs no fitting pass
    scan_fitter = CharFitter() if tokenizer is None and spec.level == "char" and spec.normalize == "none" else None
    scan = yield from _scan(source, scan_fitter)
    if check_against and check_against.get("sha256") not in (None, scan.sha256):
        raise CorpusError(f"the corpus {source.description} has changed since the run was recorded (its text hash "
                          "differs): restore it to resume or evaluate the run, or evaluate other text with --text FILE")
    val_scan = (yield from _scan(val_source)) if val_source is not None else None
    if val_scan is None:
        n_train, n_test, n_val = corpus_mod.split_sizes(scan.characters, val_fraction, test_fraction)
        layout = [(source, [("train", n_train), ("test", n_test), ("val", n_val)])]
    else:
        n_train, n_test, _ = corpus_mod.split_sizes(scan.characters, 0.0, test_fraction)
        n_val = val_scan.characters
        layout = [(source, [("train", n_train), ("test", n_test)]), (val_source, [("val", n_val)])]
    total_bytes = scan.bytes + (val_scan.bytes if val_scan else 0)
    cache_dir = Path(cache_dir) if cache_dir is not None and total_bytes >= cache_min_bytes else None
    corpus_key = {"corpus": scan.sha256, "val_corpus": val_scan.sha256 if val_scan else None,
                  "split": [n_train, n_test, n_val]}
    notes = []

    # 2. fit
    if scan_fitter is not None:
        tokenizer = scan_fitter.finish(before=n_train)
    elif tokenizer is None:
        train_bytes = scan.bytes * n_train // max(scan.characters, 1)
        fit_key = tokencache.key(**corpus_key, spec=spec.to_dict())
        tokenizer = yield from _fitted(layout, spec, train_bytes, cache_dir, fit_key, notes)
    added = ""
    if parent is not None and parent.kind == "char":
        tokenizer, added = parent.grown_by(tokenizer)

    # 3. encode, or reuse the token files of an earlier run
    folder = None
    if cache_dir is not None:
        folder = cache_dir / f"tokens-{tokencache.key(**corpus_key, tokenizer=tokenizer.fingerprint())}"
    meta = tokencache.read_meta(folder)
    if meta is not None:
        notes.append(f"reusing token cache {folder} (delete it to tokenize again)")
    else:
        with tokencache.building(folder) as tmp:
            meta = yield from _encode(layout, tokenizer, tmp)
            if folder is None:  # no cache: the throwaway files are read into memory
                parts = tokencache.open_parts(tmp, meta, in_memory=True)
        if folder is not None:
            notes.append(f"tokenized {total_bytes / 1e6:,.1f} MB into token cache {folder}")
    if folder is not None:
        parts = tokencache.open_parts(folder, meta, in_memory=False)

    has_val = meta["parts"]["val"]["tokens"] >= 2
    warnings = []
    if has_val and meta["unseen"]:
        warnings.append(f"validation text has {len(meta['unseen'])} character(s) not in the training text, scored "
                        f"as <unk>: {describe_chars(meta['unseen'])}")
    if not has_val and (val_fraction > 0 or val_source is not None):
        warnings.append("validation split is empty (corpus too short): training without validation; "
                        "pass --val FILE or a longer corpus")
    chars = {part: meta["parts"][part]["target_characters"] for part in tokencache.PARTS}
    return RunData(
        tokenizer=tokenizer,
        train_ids=parts["train"],
        val_ids=parts["val"] if has_val else None,
        val_chars=chars["val"] if has_val else 0,
        corpus_info=_corpus_info(source, val_source, scan, meta, has_val, folder),
        warnings=warnings,
        notes=notes,
        test_ids=parts["test"] if n_test else None,
        test_chars=chars["test"],
        train_chars=chars["train"],
        added_chars=added,
    )


def _fitted(layout, spec: TokenizerSpec, train_bytes: int, cache_dir: Path | None, fit_key: str,
            notes: list[str]) -> Generator[ReadProgress, None, object]:
    """A tokenizer fitted to ``spec`` on the training part: from the cache when it was fitted before."""
    if not spec.needs_fit:
        return spec.fitter().finish()
    tokenizer = tokencache.load_fit(cache_dir, fit_key) if cache_dir is not None else None
    if tokenizer is not None:
        notes.append(f"reusing the {spec.level} tokenizer fitted on this training text before "
                     f"({cache_dir}/fit-{fit_key}.json)")
    else:
        tokenizer = yield from _fit(layout, spec, train_bytes)
        if cache_dir is not None:
            tokencache.save_fit(cache_dir, fit_key, tokenizer)
    if spec.level == "subword" and tokenizer.vocab_size < spec.vocab_size:
        notes.append(f"the training text gave {tokenizer.vocab_size:,} subword pieces, fewer than the "
                     f"--vocab-size {spec.vocab_size:,} asked for")
    return tokenizer


def _corpus_info(source: Source, val_source: Source | None, scan: Scan, meta: dict, has_val: bool,
                 folder: Path | None) -> dict:
    """What config.json records about the corpus: where it came from, its hash, and each part's size and hash."""
    parts = meta["parts"]
    return {
        "source": source.description,  # as the user gave it; the inputs below are absolute paths
        **source.absolute().to_dict(),
        "files": corpus_mod.count_inputs(source),
        "characters": scan.characters,
        "bytes": scan.bytes,
        "sha256": scan.sha256,
        "train_characters": parts["train"]["characters"],
        "train_sha256": parts["train"]["sha256"],
        "val_source": val_source.description if val_source is not None else None,
        "val_inputs": list(val_source.absolute().inputs) if val_source is not None else None,
        "val_characters": parts["val"]["characters"] if has_val else 0,
        "val_sha256": parts["val"]["sha256"] if has_val else None,
        "test_characters": parts["test"]["characters"],
        "test_sha256": parts["test"]["sha256"],
        "tokens": {part: parts[part]["tokens"] for part in tokencache.PARTS},
        "token_cache": str(Path(folder).resolve()) if folder is not None else None,
    }


def recorded_sources(corpus_info: dict) -> tuple[Source, Source | None]:
    """The corpus and validation sources a run recorded in its corpus_info."""
    source = Source.from_dict(corpus_info)
    val_inputs = corpus_info.get("val_inputs")
    if not val_inputs and corpus_info.get("val_source"):  # recorded before several inputs
        val_inputs = [corpus_info["val_source"]]
    val_source = None if not val_inputs else Source(tuple(val_inputs), source.glob, source.encoding_errors,
                                                     source.hf_split, source.text_column)
    return source, val_source


def recorded_cache_dir(corpus_info: dict) -> Path | None:
    """The token cache folder a run used (None when it tokenized in memory)."""
    return Path(corpus_info["token_cache"]).parent if corpus_info.get("token_cache") else None


def recorded_split_steps(corpus_info: dict, train_config: dict, split_name: str, tokenizer
                         ) -> Generator[ReadProgress, None, tuple[np.ndarray, int]]:
    """Read a run's corpus again and return the ids of its 'val', 'test' or 'train' part and the characters
    their targets stand for, checked against the hashes recorded at training time. A run that used a
    token cache reads it again (or rebuilds it there)."""
    if not corpus_info.get("source") and not corpus_info.get("inputs"):
        raise CorpusError("the checkpoint does not record its corpus: pass a text to evaluate on with --text FILE")
    source, val_source = recorded_sources(corpus_info)
    try:
        run = yield from prepare_steps(source, train_config["val_fraction"], train_config["test_fraction"], val_source,
                                       tokenizer=tokenizer, cache_dir=recorded_cache_dir(corpus_info),
                                       cache_min_bytes=0, check_against=corpus_info)
    except CorpusError as e:
        raise CorpusError(f"cannot re-read the run's corpus ({e}); "
                          "pass a text to evaluate on with --text FILE") from None
    ids = {"train": run.train_ids, "val": run.val_ids, "test": run.test_ids}[split_name]
    chars = {"train": run.train_chars, "val": run.val_chars, "test": run.test_chars}[split_name]
    recorded = corpus_info.get(f"{split_name}_sha256")
    if recorded is None or ids is None or len(ids) < 2:
        raise CorpusError(f"the run has no {split_name} split: pass a text to evaluate on with --text FILE")
    if run.corpus_info[f"{split_name}_sha256"] != recorded:
        raise CorpusError(f"{source.description} has changed since training (its {split_name} split differs): "
                          "pass the text to evaluate on explicitly with --text FILE")
    return ids, chars
