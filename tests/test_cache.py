"""Token cache: reuse, invalidation, memmaps, and bounded memory for a corpus larger than a set limit."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from charlm.tokenizers import TokenizerSpec

from conftest import prepare

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(2000))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def prepare_cached(path, cache_dir, **kwargs):
    return prepare(str(path), 0.1, cache_dir=cache_dir, cache_min_bytes=0, **kwargs)


def test_second_run_reuses_the_token_files(text_file, tmp_path):
    first = prepare_cached(text_file, tmp_path / "cache")
    assert any("tokenized" in note for note in first.notes)
    assert isinstance(first.train_ids, np.memmap) and first.train_ids.dtype == np.uint8
    again = prepare_cached(text_file, tmp_path / "cache")
    assert any("reusing token cache" in note for note in again.notes)
    assert np.array_equal(again.train_ids, first.train_ids) and np.array_equal(again.val_ids, first.val_ids)
    assert again.corpus_info == first.corpus_info and again.val_chars == first.val_chars
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 1 and folders[0].startswith("tokens-")


def test_a_changed_corpus_or_tokenizer_builds_new_files(text_file, tmp_path):
    cache = tmp_path / "cache"
    base = prepare_cached(text_file, cache)
    text_file.write_text(TEXT.replace("lazy", "busy"), encoding="utf-8")
    changed = prepare_cached(text_file, cache)
    assert any("tokenized" in note for note in changed.notes)
    assert changed.corpus_info["token_cache"] != base.corpus_info["token_cache"]
    as_bytes = prepare_cached(text_file, cache, spec=TokenizerSpec(level="byte"))
    folders = {run.corpus_info["token_cache"] for run in (base, changed, as_bytes)}
    assert len(folders) == 3 and len(list(cache.glob("tokens-*"))) == 3


def test_damaged_token_files_are_rebuilt(text_file, tmp_path):
    run = prepare_cached(text_file, tmp_path / "cache")
    folder = tmp_path / "cache" / run.corpus_info["token_cache"].rsplit("/", 1)[1]
    with open(folder / "train.bin", "r+b") as f:
        f.truncate(10)
    again = prepare_cached(text_file, tmp_path / "cache")
    assert any("tokenized" in note for note in again.notes)
    assert np.array_equal(again.train_ids, run.tokenizer.encode(TEXT[:len(run.train_ids)]))


def test_fitted_subword_model_is_reused(text_file, tmp_path):
    spec = TokenizerSpec(level="subword", vocab_size=400)
    first = prepare_cached(text_file, tmp_path / "cache", spec=spec)
    again = prepare_cached(text_file, tmp_path / "cache", spec=spec)
    assert any("reusing the subword tokenizer" in note for note in again.notes)
    assert again.tokenizer.fingerprint() == first.tokenizer.fingerprint()


def test_small_corpora_stay_in_memory(text_file, tmp_path):
    run = prepare(str(text_file), 0.1, cache_dir=tmp_path / "cache")  # default threshold: 32 MB
    assert not isinstance(run.train_ids, np.memmap) and run.corpus_info["token_cache"] is None
    assert not (tmp_path / "cache").exists()


def test_cli_says_when_it_reuses_the_cache_and_eval_reads_it(invoke, text_file, tmp_path):
    args = ["train", str(text_file), "--cache-dir", str(tmp_path / "cache"), "--hidden", "8", "--embed", "4",
            "--layers", "1", "--batch-size", "2", "--seq-len", "8", "--max-steps", "3", "--eval-every", "2",
            "--precision", "fp32"]
    first = invoke(*args, "--out", str(tmp_path / "a"))
    second = invoke(*args, "--out", str(tmp_path / "b"))
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    assert "into token cache" in first.stderr and "reusing token cache" in second.stderr
    info = json.loads((tmp_path / "b" / "config.json").read_text())
    assert info["corpus"]["token_cache"].startswith(str(tmp_path / "cache"))
    evaluated = invoke("eval", str(tmp_path / "b"), "--json")
    assert evaluated.exit_code == 0, evaluated.output


RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    from charlm import data
    from charlm.batching import TBPTTBatches, eval_windows

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    baseline = peak_mb()
    run = data.drain(data.prepare_steps(sys.argv[1], 0.01, cache_dir=sys.argv[2], cache_min_bytes=0))
    for offset in (0, 1_000_003, 77_777_777):  # three epochs' starting windows, as training reads them
        batches = TBPTTBatches(run.train_ids, batch_size=32, seq_len=128, offset=offset)
        for i in range(100):
            x, y = batches.window(i)
    _, windows = eval_windows(run.val_ids, 32, 256)
    for _ in windows:
        pass
    print(baseline, peak_mb(), len(run.train_ids), type(run.train_ids).__name__)
""")


def test_a_corpus_larger_than_the_memory_limit_streams(tmp_path):
    """Tokenize and batch a 256 MB corpus within 128 MB of memory above the interpreter's own."""
    corpus_mb, limit_mb = 256, 128
    path = tmp_path / "big.txt"
    block = (TEXT * 4).encode()
    with open(path, "wb") as f:
        for _ in range(corpus_mb * 2**20 // len(block)):
            f.write(block)
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path), str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    baseline, peak, n_train, kind = out.stdout.split()
    assert kind == "memmap" and int(n_train) > 0.98 * corpus_mb * 2**20 * 0.99
    assert float(peak) - float(baseline) < limit_mb < corpus_mb
