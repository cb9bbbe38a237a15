"""ids → (x, y) windows for stateful truncated BPTT.

The id sequence is read as B parallel streams; stream b starts at
``offset + b * L``. Each step takes the next ``seq_len`` (T) tokens of every
stream as input and the same positions shifted by one as target, so row b of
window i+1 continues row b of window i and the hidden state can be carried
across windows. For the alphabet with B = 4 and T = 2 (L = (26 - 1) // 4 = 6)::

    stream 0: a b c d e f | g      window 0: x = [[a b]   y = [[b c]
    stream 1: g h i j k l | m                     [g h]        [h i]
    stream 2: m n o p q r | s                     [m n]        [n o]
    stream 3: s t u v w x | y                     [s t]]       [t u]]
                                   window 1: x = [[c d] [i j] [o p] [u v]], ...

Windows are gathered straight from the 1-D array with fancy indexing, so the
array may be a numpy memmap far larger than memory: only B × (T + 1) ids are
read per step. Pages of a memmap that the process has read count toward its
resident memory until released, so every RELEASE_EVERY windows they are handed
back to the kernel (``release_pages``): they stay in the page cache, and the
resident memory of a run stays bounded whatever the corpus size.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np
import torch

RELEASE_EVERY = 16  # windows between hand-backs of a memmap's pages


def release_pages(ids) -> None:
    """Drop a numpy memmap's pages from this process's resident memory (no-op for other arrays).

    madvise(MADV_DONTNEED) on a read-only file mapping only unmaps the pages: the
    data stays in the file and the page cache, and the next read faults it back in.
    """
    mapping = getattr(ids, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise"):
        mapping.madvise(mmap.MADV_DONTNEED)


@dataclass(frozen=True)
class Layout:
    """Where the B streams start and how many inputs each holds."""

    starts: np.ndarray  # (B,) int64
    stream_len: int  # L: inputs per stream (each also has a target one position later)


def layout(n_tokens: int, batch_size: int, offset: int = 0) -> Layout:
    """Split ``n_tokens - offset`` ids into ``batch_size`` contiguous streams of L inputs each."""
    stream_len = (n_tokens - offset - 1) // batch_size
    starts = offset + np.arange(batch_size, dtype=np.int64) * stream_len
    return Layout(starts=starts, stream_len=stream_len)


class TBPTTBatches:
    """Full (B, T) training windows over one epoch; the tail shorter than T is left for a later offset.

    Inputs ``x`` and targets ``y`` are int64 tensors of shape (B, T). ``rows`` keeps a block of
    the B streams (one process's share in distributed training, charlm/distributed.py): its
    windows are those rows of the full windows.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, offset: int = 0, rows: slice = slice(None)):
        self.ids = ids
        self.seq_len = seq_len
        self.layout = layout(len(ids), batch_size, offset)
        self._starts = self.layout.starts[rows]  # (B,) or this process's (B/W,)
        self._steps = np.arange(seq_len + 1, dtype=np.int64)  # (T+1,)
        self._reads = 0

    def __len__(self) -> int:
        return max(self.layout.stream_len // self.seq_len, 0)

    def window(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window i: x = stream[:, iT : iT+T], y = stream[:, iT+1 : iT+T+1]."""
        index = self._starts[:, None] + i * self.seq_len + self._steps  # (B, T+1)
        chunk = torch.from_numpy(np.asarray(self.ids[index], dtype=np.int64))  # (B, T+1)
        self._reads += 1
        if self._reads % RELEASE_EVERY == 0:
            release_pages(self.ids)
        return chunk[:, :-1], chunk[:, 1:]

    def __iter__(self):
        for i in range(len(self)):
            yield self.window(i)


def eval_windows(ids: np.ndarray, batch_size: int, seq_len: int, warmup: int = 32, min_stream_len: int = 256):
    """Cover every target of ``ids`` exactly once with B parallel streams; returns (warm, windows).

    Streams are L = ceil((N - 1) / B) long, and B is lowered so that L >= min_stream_len.
    A stream that starts cold would score its first characters with no context, so each
    stream b > 0 is first run over the ``warmup`` ids just before its start, unscored:
    ``warm`` is that (B - 1, W) int64 tensor (None when W = 0 or B = 1); stream 0 really
    starts at the beginning of the text, with a zero state. ``windows`` yields int64
    (x, y) of shape (B, <=T); positions past the end have input 0 and target -100
    (ignored by cross-entropy).

    Windows are gathered from ``ids`` one at a time, so a memmap is never copied whole::

        stream b, window i:  x = ids[b*L + i*T : … + T]      y = ids[b*L + i*T + 1 : … + T + 1]
    """
    n_targets = len(ids) - 1
    batch_size = max(1, min(batch_size, n_targets // min_stream_len))
    stream_len = -(-n_targets // batch_size)  # ceil
    starts = np.arange(batch_size, dtype=np.int64) * stream_len  # (B,)
    width = min(warmup, stream_len)
    warm = None
    if width and batch_size > 1:
        index = starts[1:, None] - width + np.arange(width)  # (B-1, W)
        warm = torch.from_numpy(np.asarray(ids[index], dtype=np.int64))

    def windows():
        for i in range(0, stream_len, seq_len):
            pos = starts[:, None] + i + np.arange(min(seq_len, stream_len - i))  # (B, T) input positions
            x = np.asarray(ids[np.minimum(pos, n_targets)], dtype=np.int64)  # (B, T)
            y = np.asarray(ids[np.minimum(pos + 1, n_targets)], dtype=np.int64)  # (B, T)
            x[pos > n_targets] = 0
            y[pos >= n_targets] = -100
            if (i // seq_len + 1) % RELEASE_EVERY == 0:
                release_pages(ids)
            yield torch.from_numpy(x), torch.from_numpy(y)

    return warm, windows()


def fit_to_corpus(n_tokens: int, batch_size: int, seq_len: int) -> tuple[int, int, list[str]]:
    """Shrink batch size, then seq_len, until at least one full window fits in ``n_tokens``.

    Returns (batch_size, seq_len, warnings). Needs at least 2 tokens.
    """
    warnings = []
    if n_tokens - 1 < batch_size * seq_len:
        new_batch = max(1, (n_tokens - 1) // seq_len)
        if new_batch != batch_size:
            warnings.append(f"training text is short ({n_tokens:,} tokens): batch size lowered from {batch_size} to "
                            f"{new_batch}")
            batch_size = new_batch
    if n_tokens - 1 < batch_size * seq_len:
        new_len = n_tokens - 1
        warnings.append(f"training text is short ({n_tokens:,} tokens): seq_len lowered from {seq_len} to {new_len}")
        seq_len = new_len
    return batch_size, seq_len, warnings
