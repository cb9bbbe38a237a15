"""The machine side of a run: device choice, seeding, precision and allocator tuning.

Called once from the CLI; the chosen device and dtype are passed down as arguments.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import random
import time

import numpy as np
import torch

from charlm.errors import DeviceError

DEVICES = ("auto", "cpu", "cuda", "mps")


def select_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is not available is an error."""
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise DeviceError("--device cuda was asked for but CUDA is not available: use --device cpu or auto")
    if name == "mps" and not mps:
        raise DeviceError("--device mps was asked for but MPS is not available: use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@functools.lru_cache(maxsize=None)
def cpu_bf16_is_faster(min_speedup: float = 1.25, repeats: int = 7) -> bool:
    """Time bf16 and float32 matrix products (about 0.1 s) and say whether bf16 wins clearly.

    CPU flags are not enough: on some machines that report AVX512-BF16, bf16
    matrix products run slower than float32 ones. The two
    are timed in alternation and the fastest of each is compared, so a busy
    machine slows both rather than tipping the choice.
    """
    generator = torch.Generator().manual_seed(0)  # leave the global RNG untouched (exact resume depends on it)
    a32, b32 = torch.randn(512, 1024, generator=generator), torch.randn(1024, 1024, generator=generator)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    for i in range(repeats + 1):
        for dtype, (a, b) in ((torch.float32, (a32, b32)), (torch.bfloat16, (a16, b16))):
            start = time.perf_counter()
            a @ b
            if i:  # the first round warms up
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16] >= min_speedup


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for 'auto' | 'bf16' | 'fp16' | 'fp32' on this device, or None for plain float32.

    'auto' takes bf16 on a CUDA GPU that supports it and fp16 (trained with loss
    scaling) on one that does not; on CPU it takes bf16 only when a quick
    measurement shows bf16 matrix products clearly faster than float32. fp16 is a
    GPU format: a model trained in fp16 runs in float32 elsewhere.
    """
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16 if device.type == "cuda" else None
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (precision == "bf16" or cpu_bf16_is_faster()):
        return torch.bfloat16
    return None


_PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn 'auto' into the concrete 'bf16', 'fp16' or 'fp32' for this device, to record in the run's
    config (a resumed run must not decide differently)."""
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError(f"--precision fp16 is for CUDA GPUs (torch's CPU LSTM kernels lack it): "
                          f"use bf16 or fp32 on {device.type}")
    return _PRECISION_NAMES[autocast_dtype(precision, device)]


@contextlib.contextmanager
def reproducible_kernels(enabled: bool):
    """While enabled, use kernels whose results do not vary from one process to the next.

    torch's fused oneDNN RNN kernels, multi-threaded, give slightly different
    gradients in two processes given the same inputs, so two identical runs (or a
    run and its resume) drift apart in the last bits. With oneDNN off the plain ATen
    kernels are bit-reproducible on CPU, at a lower training throughput.
    """
    previous = torch.backends.mkldnn.enabled
    if enabled:
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op when dtype is None (weights stay float32 either way)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_ticks(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """The kernel's counters in /proc/stat for ``cpus``: cpu → (all time, idle time), in clock ticks."""
    rows = {}
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                rows[int(name[3:])] = (sum(ticks), ticks[3] + ticks[4])
    return rows


def busy_cpus(interval: float = 0.2, ticks=cpu_ticks, own_cpu_time=time.process_time) -> tuple[int, float] | None:
    """(CPUs this process may run on, how many of them other processes keep busy), measured over ``interval``
    seconds while this thread sleeps: the CPUs' busy time (``ticks``) less the CPU time this process's other
    threads used meanwhile (``own_cpu_time``), which may still spin after a step. None where there is no
    /proc/stat."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        before, own_before, start = ticks(allowed), own_cpu_time(), time.monotonic()
        time.sleep(interval)
        after, own, elapsed = ticks(allowed), own_cpu_time() - own_before, time.monotonic() - start
    except (OSError, ValueError):
        return None
    busy = -own / max(elapsed, 1e-9)
    for cpu in after.keys() & before.keys():
        total, idle = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        if total > 0:
            busy += 1.0 - idle / total
    return len(allowed), max(busy, 0.0)  # tick counts are coarse: a little too much subtracted reads as 0


def fit_threads_to_free_cpus(work: str, most: int | None = None) -> str | None:
    """Run ``work`` (a name for the note) with as many threads as there are CPUs free now, up to ``most``
    (default: the threads it has); returns a note when that changed the thread count.

    torch starts one thread per core. When other processes keep some of those
    cores busy, a thread that waits for one stalls every parallel operation of
    the step, so fewer threads than cores run faster then. An explicit
    OMP_NUM_THREADS is left alone.
    """
    threads = torch.get_num_threads()
    most = threads if most is None else most
    if most == 1 or os.environ.get("OMP_NUM_THREADS"):
        return None
    measured = busy_cpus()
    if measured is None:
        return None
    cpus, busy = measured
    free = min(most, max(1, int(cpus - busy + 0.5)))
    if free == threads:
        return None
    torch.set_num_threads(free)
    return (f"{work} with {free} of {most} threads: other processes keep {busy:.1f} of {cpus} CPUs busy "
            "(set OMP_NUM_THREADS to choose)")


class ThreadFitter:
    """Keeps a CPU run's thread count fitted to the CPUs other processes leave free, as they come and go.

    ``start`` fits it once. After that ``observe`` takes each reported step rate:
    a rate below half the best seen at the current thread count means load has
    arrived, and while the run has fewer threads than it started with, load may
    have left; either way the CPUs are measured again (0.2 s, at most once every
    ``RECHECK_S`` seconds). An explicit OMP_NUM_THREADS turns it off (fit_threads_to_free_cpus
    leaves it alone).
    """

    SLOW = 0.5
    RECHECK_S = 30.0

    def __init__(self, work: str, clock=time.monotonic):
        self.work = work
        self.clock = clock
        self.most = torch.get_num_threads()
        self.best: dict[int, float] = {}  # best step rate seen at each thread count
        self.checked_at = clock()

    def start(self) -> str | None:
        return fit_threads_to_free_cpus(self.work, self.most)

    def observe(self, tokens_per_s: float) -> str | None:
        """Take a step rate (training steps only, no evaluation inside); returns a note when the count changed."""
        threads = torch.get_num_threads()
        best = self.best[threads] = max(self.best.get(threads, 0.0), tokens_per_s)
        if tokens_per_s >= self.SLOW * best and threads == self.most:
            return None
        if self.clock() - self.checked_at < self.RECHECK_S:
            return None
        self.checked_at = self.clock()
        return fit_threads_to_free_cpus(self.work, self.most)

    def restore(self) -> None:
        """Back to the thread count it started with (for work that ends before the process does)."""
        torch.set_num_threads(self.most)


def tune_allocator() -> None:
    """Stop glibc from returning large activation buffers to the OS after every step.

    Above glibc's mmap threshold each step maps, faults and zeroes fresh pages;
    raising the mmap and trim thresholds keeps them in the heap, which saves that
    work on every step. A no-op where glibc is not the allocator.
    """
    libc_name = ctypes.util.find_library("c")
    if not libc_name or os.name != "posix":
        return
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1 << 30)
