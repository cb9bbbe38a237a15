"""The machine side of a run: device choice, seeding, precision and allocator tuning.

Called once from the CLI; the chosen device and dtype are passed down as arguments.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random

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


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for 'auto' | 'bf16' | 'fp32' on this device, or None for plain float32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (precision == "bf16" or cpu_supports_bf16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype``, or a no-op when dtype is None (weights stay float32 either way)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def tune_allocator() -> None:
    """Stop glibc from returning large activation buffers to the OS after every step.

    Above glibc's mmap threshold each step maps, faults and zeroes fresh pages;
    raising the mmap and trim thresholds keeps them in the heap. On the 2-core
    benchmark machine this doubled LSTM training throughput at batch 64 x seq 128
    (docs/performance.md). A no-op where glibc is not the allocator.
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
