import numpy as np
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
