"""Several processes training one model with torch.distributed, as launched by torchrun.

torchrun starts one process per device and tells each its place through
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
charlm reads them, joins the process group (gloo on CPU, nccl on CUDA), and the
trainer wraps the model in DistributedDataParallel, which averages the gradients
across processes during backward.

How the batch is shared: the B contiguous TBPTT streams of the single-process
run are dealt out in blocks, rank r taking streams [r·B/W, (r+1)·B/W)::

    single process, B = 4          two processes, B/2 = 2 each
    stream 0: a b c d e f          rank 0: streams 0, 1
    stream 1: g h i j k l
    stream 2: m n o p q r          rank 1: streams 2, 3
    stream 3: s t u v w x

Each rank carries the hidden state of its own streams. The union of the ranks'
windows is exactly the single-process batch, and each rank's loss is a mean over
B/W streams, so the averaged gradient is the single-process gradient.

Rank 0 alone evaluates, logs and writes files. What every rank must agree on to
take the same decision at the same step (the run folder, evaluation results, the
clock of a time budget, a stop request) travels through the small collectives
below. Without torchrun ``World()`` is a single process and they are no-ops.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from charlm.errors import ConfigError, DeviceError

# How long a rank waits for the others at a collective before giving up (rank 0 evaluating a large
# validation split, or tokenizing a large corpus while the others wait, must fit inside it).
TIMEOUT = timedelta(minutes=30)

_joined_group = False  # whether this process has joined a process group (see end_process)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # index of this process on its machine, and of its GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    def rows(self, batch_size: int) -> slice:
        """This rank's block of the B streams."""
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise ConfigError(f"--batch-size {batch_size} does not split evenly over {self.size} processes: "
                              f"pick a multiple of {self.size}")


SINGLE_PROCESS = World()  # a run without torchrun


def from_environment() -> World:
    """The World torchrun described in the environment, or a single process when not launched by it."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return SINGLE_PROCESS
    try:
        rank, size, local_rank = (int(os.environ.get(name, "0")) for name in names)
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers: launch charlm with torchrun") from None
    if not 0 <= rank < size:
        raise ConfigError(f"RANK {rank} is outside WORLD_SIZE {size}: launch charlm with torchrun")
    return World(rank, size, local_rank)


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group; returns this rank's device (cuda:LOCAL_RANK on GPUs)."""
    if not world.is_distributed:
        return device
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} GPUs here: "
                              "lower --nproc_per_node to the number of GPUs")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise DeviceError(f"distributed training runs on cpu or cuda, not {device.type}: pass --device cpu or cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    global _joined_group
    _joined_group = True
    return device


def main_first(world: World, build: Callable[[], Any], read: Callable[[Any], Any]) -> Any:
    """Rank 0 runs ``build()``; then every other rank runs ``read(what rank 0 built)``; each returns its own.

    This is how a run starts under torchrun: rank 0 prepares the corpus and writes the run folder, the others
    read that folder, so every rank has the same tokenizer and configs. ``build`` must return something
    picklable and not None. When it fails on rank 0, the other ranks leave with exit status 1 and rank 0
    raises its error (the one that gets reported).
    """
    built = None
    if world.is_main:
        try:
            built = build()
        except BaseException:
            broadcast(world, None)  # tell the other ranks to leave
            raise
    shared = broadcast(world, built)
    if shared is None:
        raise SystemExit(1)
    return built if world.is_main else read(shared)


def stop(world: World, finished: bool = False) -> None:
    """Leave the process group. After a run that ``finished`` normally, every rank first waits for the
    others (a barrier), so none tears its connections down while another may still talk to it. After an
    error there is no barrier: the other ranks may never arrive."""
    if world.is_distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def end_process(code: int) -> None:
    """In a process that joined a process group, exit now with ``code``, skipping C++'s teardown; else return.

    Once DistributedDataParallel has been built, gloo's worker threads outlive
    ``destroy_process_group`` (torch 2.13) and still run when the process exits;
    on a loaded machine some exits then abort inside C++'s teardown, after Python
    has finished ("terminate called without an active exception", SIGABRT), and
    torchrun reports a finished run as failed. By the time a command returns every file is written,
    so run Python's exit handlers, flush, and leave without that teardown.
    """
    if not _joined_group:
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (any picklable value)."""
    if not world.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, obj: Any) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not world.is_distributed:
        return [obj]
    boxes = [None] * world.size
    dist.all_gather_object(boxes, obj)
    return boxes


def mean(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over the ranks."""
    if not world.is_distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / world.size


def total(world: World, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums of a few numbers over the ranks."""
    if not world.is_distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_streams(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """Put the ranks' blocks of streams back together: (layers, B/W, H) on each → (layers, B, H)."""
    if not world.is_distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=1)
