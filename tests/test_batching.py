import tracemalloc

import numpy as np
import pytest
import torch

from charlm.batching import TBPTTBatches, eval_windows, fit_to_corpus, layout

ALPHABET = np.arange(26)  # a..z as 0..25


def letters(t: torch.Tensor) -> list[str]:
    return ["".join(chr(ord("a") + int(i)) for i in row) for row in t]


def test_hand_worked_alphabet_example():
    # The picture in batching.py's docstring: B = 4 streams of L = 6, T = 2.
    batches = TBPTTBatches(ALPHABET, batch_size=4, seq_len=2)
    assert batches.layout.stream_len == 6
    assert len(batches) == 3
    x, y = batches.window(0)
    assert letters(x) == ["ab", "gh", "mn", "st"]
    assert letters(y) == ["bc", "hi", "no", "tu"]
    x, y = batches.window(1)
    assert letters(x) == ["cd", "ij", "op", "uv"]
    x, y = batches.window(2)
    assert letters(x) == ["ef", "kl", "qr", "wx"]
    assert letters(y) == ["fg", "lm", "rs", "xy"]


def test_windows_continue_each_stream():
    batches = TBPTTBatches(np.arange(1000), batch_size=5, seq_len=7)
    rows = torch.cat([x for x, _ in batches], dim=1)  # (B, steps * T)
    for b in range(5):
        start = batches.layout.starts[b]
        assert rows[b].tolist() == list(range(start, start + rows.shape[1]))


def test_offset_shifts_every_stream():
    lay = layout(26, 4, offset=1)
    assert lay.starts.tolist() == [1, 7, 13, 19] and lay.stream_len == 6


def test_eval_windows_score_every_target_once():
    ids = np.arange(1, 1001)
    warm, windows = eval_windows(ids, batch_size=3, seq_len=64, warmup=16, min_stream_len=10)
    targets = torch.cat([y for _, y in windows], dim=1).flatten()
    scored = targets[targets != -100].tolist()
    assert sorted(scored) == list(range(2, 1001))
    # streams 1 and 2 are warmed up on the 16 ids just before their start
    assert warm.shape == (2, 16)
    assert warm[0, -1].item() + 1 == torch.cat([x for x, _ in eval_windows(ids, 3, 64, 16, 10)[1]], 1)[1, 0].item()


def test_fit_to_corpus_shrinks_with_warnings():
    assert fit_to_corpus(10_000, 32, 64) == (32, 64, [])
    batch, seq, warnings = fit_to_corpus(100, 32, 64)
    assert (batch, seq) == (1, 64) and len(warnings) == 1
    batch, seq, warnings = fit_to_corpus(7, 32, 64)
    assert (batch, seq) == (1, 6) and len(warnings) == 2


def eager_eval_windows(ids, batch_size, seq_len, warmup=32, min_stream_len=256):
    """The eager version eval_windows replaced: pads a full int64 copy, then reshapes it (B, L)."""
    n_targets = len(ids) - 1
    batch_size = max(1, min(batch_size, n_targets // min_stream_len))
    stream_len = -(-n_targets // batch_size)
    padded = np.zeros(batch_size * stream_len + 1, dtype=np.int64)
    padded[: len(ids)] = ids
    targets = np.full(batch_size * stream_len, -100, dtype=np.int64)
    targets[:n_targets] = ids[1:]
    x_all = padded[:-1].reshape(batch_size, stream_len)
    y_all = targets.reshape(batch_size, stream_len)
    width = min(warmup, stream_len)
    starts = np.arange(1, batch_size, dtype=np.int64) * stream_len
    warm = padded[starts[:, None] - width + np.arange(width)] if width and batch_size > 1 else None
    return warm, [(x_all[:, i:i + seq_len], y_all[:, i:i + seq_len]) for i in range(0, stream_len, seq_len)]


@pytest.mark.parametrize("n, batch, seq_len, warmup, min_len", [
    (1000, 3, 64, 16, 10), (1001, 4, 7, 5, 10), (2, 8, 16, 4, 256), (777, 1, 50, 128, 256), (5000, 32, 100, 128, 50),
])
def test_lazy_eval_windows_match_the_eager_reference(n, batch, seq_len, warmup, min_len):
    ids = (np.arange(n) * 7 % 251).astype(np.uint8)
    warm, windows = eval_windows(ids, batch, seq_len, warmup, min_len)
    ref_warm, ref_windows = eager_eval_windows(ids, batch, seq_len, warmup, min_len)
    assert (warm is None) == (ref_warm is None)
    if warm is not None:
        assert warm.dtype == torch.int64 and np.array_equal(warm.numpy(), ref_warm)
    windows = list(windows)
    assert len(windows) == len(ref_windows)
    for (x, y), (rx, ry) in zip(windows, ref_windows):
        assert x.dtype == y.dtype == torch.int64
        assert np.array_equal(x.numpy(), rx) and np.array_equal(y.numpy(), ry)


def test_windows_read_a_memmap_without_copying_it(tmp_path):
    path = tmp_path / "ids.bin"
    np.arange(20_000_000, dtype=np.uint32).astype(np.uint8).tofile(path)
    ids = np.memmap(path, dtype=np.uint8, mode="r")
    tracemalloc.start()
    _, windows = eval_windows(ids, batch_size=64, seq_len=256)
    for _ in zip(range(20), windows):
        pass
    batches = TBPTTBatches(ids, batch_size=64, seq_len=256)
    for i in range(20):
        batches.window(i)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000  # a 20 MB array, read 64 x 256 ids at a time (int64 copies of 160 MB before)
