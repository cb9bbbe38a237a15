"""The truncated-BPTT training loop, as a generator of reports.

``Trainer.run()`` yields a StepReport every few steps, an EvalReport after
each validation pass and an EventReport when it recovers from a bad step. It
does no file I/O and no printing: the CLI renders the reports and decides when
to save, reading what a checkpoint needs from ``Trainer.progress`` and the
trainer's model, optimizer and carried hidden state.

Under torchrun each process runs its own Trainer over its block of the streams
(charlm/distributed.py); DistributedDataParallel averages the gradients, and the
few decisions that depend on one process's view (the loss, the clock, a stop
request, an evaluation only rank 0 runs) are agreed through small collectives,
so every rank's Progress stays identical.

One step::

    x, y = window i of the epoch          (B, T) each; row b continues row b of window i-1
    logits, h = model(x, h)               h carried from the previous window
    loss = cross_entropy(logits, y)       mean nats per token
    loss.backward(); clip; optimizer.step()
    h = h.detach()                        truncate backprop at the window boundary
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from charlm import distributed
from charlm.batching import TBPTTBatches
from charlm.config import TrainConfig
from charlm.distributed import SINGLE_PROCESS, World
from charlm.errors import CharlmError
from charlm.evaluate import EvalResult, evaluate
from charlm.model import RNNLM, State, detach_state
from charlm.runtime import autocast, reproducible_kernels

LOG_EVERY = 10  # steps between StepReports (the loss is read from the device this often)
SNAPSHOT_EVERY = 100  # good steps between in-memory snapshots to roll back to
BAD_STREAK_FOR_ROLLBACK = 3  # consecutive bad steps that trigger a rollback to the last snapshot
MAX_ROLLBACKS = 4  # rollbacks tolerated in a run before giving up
# a loss above EXPLODED times the worse of ln(vocab size) (guessing) and the run's first loss counts as exploding:
# three times worse than where training started (a run started from another model may start far above guessing)
EXPLODED = 3.0
DRIFT = 0.1  # nats: training and validation loss both this far above their level at the best evaluation = drifting


class TrainingDiverged(CharlmError):
    """The loss kept coming out non-finite."""


@dataclass
class Progress:
    """Counters that, with the model, optimizer, hidden state and RNG states, make a run resumable."""

    step: int = 0
    epoch: int = 0
    window: int = 0  # next window index inside the epoch
    elapsed: float = 0.0  # seconds of training so far, evaluation included
    tokens: int = 0
    best_val_loss: float = math.inf
    best_step: int = 0
    train_loss_at_best: float = math.inf  # the last logged training loss when best_val_loss was reached
    drift_warned: bool = False
    evals_since_best: int = 0
    lr_scale: float = 1.0  # halved after each bad (non-finite or exploding) step
    start_loss: float = 0.0  # the first finite training loss (0: none yet), the scale of an exploding one
    grad_scaler: dict = field(default_factory=dict)  # fp16 loss-scaling state (GradScaler.state_dict())
    bad_steps: int = 0
    bad_streak: int = 0
    rollbacks: int = 0
    last_eval_seconds: float = 0.0
    eval_seconds: float = 0.0  # of ``elapsed``, the time spent evaluating
    done: bool = False
    stop_reason: str = ""
    rng: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Progress":
        return cls(**data)


@dataclass(frozen=True)
class StepReport:
    step: int
    epoch: float  # fractional epoch
    loss: float  # mean train loss over the last LOG_EVERY steps, nats per token
    lr: float
    grad_norm: float  # mean global gradient norm before clipping, over the same steps
    grad_norm_max: float
    tokens_per_s: float
    elapsed: float
    progress: float  # fraction of the run's horizon (0..1)


@dataclass(frozen=True)
class EvalReport:
    step: int
    epoch: float
    result: EvalResult
    improved: bool
    best_val_loss: float
    elapsed: float
    final: bool = False


@dataclass(frozen=True)
class SaveRequest:
    """Every ``save_every`` steps: the caller should write the resumable state now."""

    step: int


@dataclass(frozen=True)
class EventReport:
    step: int
    kind: str  # 'bad_step', 'rollback' or 'drift'
    message: str


def drift_message(p: Progress, train_loss: float | None, val_loss: float, lr: float) -> str | None:
    """A warning when training drifts away: the training loss, not only the validation loss, has risen DRIFT
    above its level at the best evaluation. That is not overfitting (training loss keeps falling) but what a
    learning rate too high for the model does: the loss climbs while the gradient norm grows."""
    if p.drift_warned or train_loss is None or p.best_val_loss == math.inf:
        return None
    if train_loss < p.train_loss_at_best + DRIFT or val_loss < p.best_val_loss + DRIFT:
        return None
    return (f"training is drifting away: since the best evaluation (step {p.best_step:,}) the training loss rose "
            f"from {p.train_loss_at_best:.3f} to {train_loss:.3f} and the validation loss from {p.best_val_loss:.3f} "
            f"to {val_loss:.3f}; the best weights stay in model.safetensors; lower --lr (now {lr:g}) for this model")


def lr_at(progress: float, step: int, config: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay from lr to lr * min_lr_ratio over the horizon."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.lr * config.min_lr_ratio
    p = min(max(progress, 0.0), 1.0)
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * p))


def make_optimizer(model: torch.nn.Module, config: TrainConfig, groups: list[dict] | None = None
                   ) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not biases), or plain SGD. ``groups`` gives AdamW's
    parameter groups instead (each with its own weight decay), as a classifier's layer-wise rates need."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    if groups is None:
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))


def horizon_fraction(config: TrainConfig, p: "Progress", steps_per_epoch: int, eval_reserve: float) -> float:
    """How far through the run it is: the largest of the step, epoch and time fractions. ``eval_reserve``
    seconds are kept for the final evaluation inside a time budget."""
    fractions = []
    if config.max_steps is not None:
        fractions.append(p.step / config.max_steps)
    if config.epochs is not None:
        fractions.append((p.epoch + p.window / steps_per_epoch) / config.epochs)
    if config.time_budget is not None:
        fractions.append(p.elapsed / max(config.time_budget - eval_reserve, 1e-9))
    return max(fractions)


def reached_horizon(config: TrainConfig, p: "Progress", steps_per_epoch: int, eval_reserve: float) -> bool:
    """Whether the run has reached its step, epoch or time limit (keeping ``eval_reserve`` seconds)."""
    return ((config.max_steps is not None and p.step >= config.max_steps)
            or (config.epochs is not None and p.epoch + p.window / steps_per_epoch >= config.epochs - 1e-12)
            or (config.time_budget is not None and p.elapsed + eval_reserve >= config.time_budget))


def capture_rng() -> dict:
    """Python and numpy RNG states as JSON-able values (torch's goes with the tensors)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "numpy": {"keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
    }


def restore_rng(rng: dict) -> None:
    if not rng:
        return
    random.setstate((3, tuple(rng["python"]), None))
    n = rng["numpy"]
    np.random.set_state(("MT19937", np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


class Trainer:
    """Owns the model, optimizer and carried state of one run; ``run()`` trains and yields reports."""

    def __init__(
        self,
        model: RNNLM,
        train_ids: np.ndarray,
        val_ids: np.ndarray | None,
        config: TrainConfig,
        device: torch.device,
        amp_dtype: torch.dtype | None = None,
        val_chars: int | None = None,
        save_every: int | None = None,
        world: World = SINGLE_PROCESS,
    ):
        if not config.has_horizon:
            raise ValueError("TrainConfig needs epochs, max_steps or time_budget")
        world.check_batch_size(config.batch_size)
        self.model = model.to(device)
        self.world = world
        self.train_ids = train_ids
        self.val_ids = val_ids if val_ids is not None and len(val_ids) >= 2 else None
        self.val_chars = val_chars
        self.config = config
        self.device = device
        self.amp_dtype = amp_dtype
        self.save_every = save_every
        self._stop_reason: str | None = None
        self.optimizer = make_optimizer(model, config)
        self._train_model = self._wrap(self.model)  # what the training forward runs
        # fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.progress = Progress()
        self._train_rate = 0.0  # tokens/s over the last StepReport's steps (0 until the first after step 1)
        self._train_loss: float | None = None  # the last StepReport's training loss
        self.hidden: State | None = None
        self._snapshot: tuple[dict, dict] | None = None  # (model, optimizer) state at the last good point
        self._guess_loss = math.log(max(model.vocab_size, 2))
        self.steps_per_epoch = len(self._batches(0))
        if self.steps_per_epoch == 0:
            raise CharlmError("training text is too short for one window: lower --batch-size or --seq-len")

    def _wrap(self, model: RNNLM) -> torch.nn.Module:
        """DistributedDataParallel under torchrun, then torch.compile when asked for."""
        if self.world.is_distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.config.compile:
            model = torch.compile(model)
        return model

    def restore(self, progress: dict, optimizer_state: dict, hidden: State | None,
                rngs: dict[int, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """Continue a run from its saved state (checkpoint.load_training_state, after the weights were loaded):
        counters, optimizer moments, the carried hidden state of all B streams and every generator's state.
        A rank the saved run did not have keeps its seeded generator."""
        self.optimizer.load_state_dict(optimizer_state)
        self.progress = Progress.from_dict(progress)
        self.set_hidden(hidden)
        restore_rng(self.progress.rng)
        if self.world.rank in rngs:
            torch_rng, cuda_rng = rngs[self.world.rank]
            torch.set_rng_state(torch_rng)
            if cuda_rng is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda_rng)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (safe to call from a signal handler)."""
        self._stop_reason = reason

    # ----- data ---------------------------------------------------------------------------------------------

    def _batches(self, epoch: int) -> TBPTTBatches:
        """Epoch 0 starts at offset 0; later epochs shift all streams by a seeded offset in [0, T),
        so window boundaries move and the tail left out of one epoch is seen in another."""
        c = self.config
        offset = 0 if epoch == 0 else int(np.random.default_rng([c.seed, epoch]).integers(c.seq_len))
        rows = self.world.rows(c.batch_size)
        batches = TBPTTBatches(self.train_ids, c.batch_size, c.seq_len, offset, rows)
        return batches if len(batches) or offset == 0 else TBPTTBatches(self.train_ids, c.batch_size, c.seq_len, 0,
                                                                        rows)

    def _to_device(self, window: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Start copying a window to the device. On CUDA it goes through pinned memory without blocking,
        so the copy of window i+1, fetched while step i runs, does not stall the host."""
        if self.device.type != "cuda":
            return window
        return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in window)

    # ----- schedule -----------------------------------------------------------------------------------------

    def horizon_fraction(self) -> float:
        return horizon_fraction(self.config, self.progress, self.steps_per_epoch, self._eval_reserve())

    def _eval_reserve(self) -> float:
        """Seconds to keep for the final evaluation: the last one's duration, or before any, an estimate
        from the training speed (a forward pass costs about a third of forward + backward; take half).
        The speed is the last StepReport's, never the first step's: that one includes warm-up and, with
        --compile, the compilation, which would make the estimate absurd."""
        p = self.progress
        if self.val_ids is None:
            return 0.0
        if p.last_eval_seconds:
            return p.last_eval_seconds
        return len(self.val_ids) / self._train_rate / 2 if self._train_rate else 0.0

    # ----- one step -----------------------------------------------------------------------------------------

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One optimizer step on window (x, y), already on the device; returns the loss (averaged over
        the ranks) and the gradient norm before clipping, or None for a bad step (non-finite or
        exploding loss or gradient), which is not applied.

        With fp16 loss scaling, an overflowing gradient is the scaler's business, not a bad step: it
        skips the update and lowers the scale."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.amp_dtype):
            logits, hidden = self._train_model(x, self.hidden)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DDP averages the gradients over the ranks here
        self.scaler.unscale_(self.optimizer)
        clip = self.config.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)  # the norm before clipping
        loss = distributed.mean(self.world, loss.detach())  # every rank takes the same decision below
        finite_grads = torch.isfinite(norm) or self.scaler.is_enabled()
        p = self.progress
        if not p.start_loss and torch.isfinite(loss):
            p.start_loss = float(loss)
        if not (torch.isfinite(loss) and finite_grads and loss < EXPLODED * max(self._guess_loss, p.start_loss)):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.hidden = detach_state(hidden)
        return loss, norm.detach()

    def _agree(self) -> str | None:
        """The stop request to act on after this step, if any. Distributed, every rank takes rank 0's
        clock (time budgets and the LR schedule follow it) and stops when any rank was asked to."""
        reason = self._stop_reason  # read once: a signal handler may set it at any moment
        if not self.world.is_distributed:
            return reason
        p = self.progress
        elapsed, stops = distributed.total(
            self.world, [p.elapsed if self.world.is_main else 0.0, float(reason is not None)], self.device)
        p.elapsed = elapsed
        return reason or ("a stop request to another process" if stops else None)

    def resumable_progress(self) -> dict:
        """Progress with the RNG and loss-scaling states, as a checkpoint stores it."""
        self.progress.rng = capture_rng()
        self.progress.grad_scaler = self.scaler.state_dict() if self.scaler.is_enabled() else {}
        return self.progress.to_dict()

    def gather_hidden(self) -> State | None:
        """The carried state of all B streams (collective under torchrun: every rank must call it)."""
        if self.hidden is None or not self.world.is_distributed:
            return self.hidden
        if isinstance(self.hidden, tuple):
            return tuple(distributed.gather_streams(self.world, s) for s in self.hidden)
        return distributed.gather_streams(self.world, self.hidden)

    def set_hidden(self, full: State | None) -> None:
        """Carry on from the state of all B streams (as saved), keeping this rank's block."""
        if full is None:
            self.hidden = None
            return
        rows = self.world.rows(self.config.batch_size)
        parts = full if isinstance(full, tuple) else (full,)
        parts = tuple(s[:, rows].to(self.device).contiguous() for s in parts)
        self.hidden = parts if isinstance(full, tuple) else parts[0]

    def _take_snapshot(self) -> None:
        """Keep an in-memory copy of the model and optimizer to roll back to after repeated bad steps."""
        self._snapshot = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))

    def _on_bad_step(self) -> EventReport:
        """Skip the step and halve the learning rate; after a streak of bad steps roll back to the last
        snapshot; after MAX_ROLLBACKS rollbacks give up with TrainingDiverged."""
        p = self.progress
        p.bad_steps += 1
        p.bad_streak += 1
        p.lr_scale *= 0.5
        self.hidden = None  # the state that produced a bad loss is not worth carrying
        if p.bad_streak < BAD_STREAK_FOR_ROLLBACK:
            return EventReport(p.step, "bad_step", f"non-finite or exploding loss at step {p.step}: "
                                                   f"step skipped, learning rate scaled to {p.lr_scale:g}x")
        if p.rollbacks >= MAX_ROLLBACKS or self._snapshot is None:
            raise TrainingDiverged(
                f"training diverged: {p.bad_steps} bad steps and {p.rollbacks} rollbacks by step {p.step}; "
                "lower --lr, keep --clip on, or check the corpus"
            )
        model_state, optimizer_state = self._snapshot
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        p.rollbacks += 1
        p.bad_streak = 0
        return EventReport(p.step, "rollback", f"{BAD_STREAK_FOR_ROLLBACK} bad steps in a row at step {p.step}: "
                                               "rolled back to the last good state, learning rate scaled to "
                                               f"{p.lr_scale:g}x")

    # ----- evaluation ---------------------------------------------------------------------------------------

    def evaluate(self) -> EvalResult:
        return evaluate(
            self.model, self.val_ids, self.val_chars, self.config.eval_batch_size,
            seq_len=256, device=self.device, amp_dtype=self.amp_dtype,
        )

    def _eval_reports(self, final: bool) -> list[EvalReport | EventReport]:
        """Evaluate: the EvalReport, and an EventReport when training drifts away (drift_message). Rank 0
        evaluates; the others wait for its result so they keep the same best and patience."""
        p = self.progress
        result = distributed.broadcast(self.world, self.evaluate() if self.world.is_main else None)
        improved = result.loss < p.best_val_loss
        drift = None if improved else drift_message(p, self._train_loss, result.loss, self.config.lr)
        if improved:
            p.best_val_loss, p.best_step, p.evals_since_best = result.loss, p.step, 0
            p.train_loss_at_best = self._train_loss if self._train_loss is not None else math.inf
        else:
            p.evals_since_best += 1
        p.drift_warned = p.drift_warned or drift is not None
        p.last_eval_seconds = result.seconds
        p.eval_seconds += result.seconds
        p.elapsed += result.seconds
        report = EvalReport(p.step, self._epoch_float(), result, improved, p.best_val_loss, p.elapsed, final)
        return [report] if drift is None else [report, EventReport(p.step, "drift", drift)]

    def _epoch_float(self) -> float:
        return self.progress.epoch + self.progress.window / self.steps_per_epoch

    # ----- the loop -----------------------------------------------------------------------------------------

    def run(self) -> Iterator[StepReport | EvalReport | EventReport | SaveRequest]:
        """Train until the horizon, early stopping or divergence, then yield a final EvalReport if there is
        validation text. After ``request_stop`` it returns right after the current step, with
        ``progress.done`` still False so the run can be resumed. Safe to call after restoring a Progress:
        it continues from that window."""
        with reproducible_kernels(self.config.deterministic):
            yield from self._loop()

    def _loop(self) -> Iterator[StepReport | EvalReport | EventReport | SaveRequest]:
        c, p = self.config, self.progress
        self.model.train()
        if p.grad_scaler:
            self.scaler.load_state_dict(p.grad_scaler)
        # sums since the last StepReport, kept on the device (reading them waits for the device)
        sums = torch.zeros(3, device=self.device)  # loss, grad norm, max grad norm
        count, tokens_since, t_since = 0, 0, time.perf_counter()
        t_last = time.perf_counter()
        evaluated_at = -1
        self._take_snapshot()
        while not p.done:
            batches = self._batches(p.epoch)
            upcoming = self._to_device(batches.window(p.window)) if p.window < len(batches) else None
            while p.window < len(batches) and not p.done:
                lr = lr_at(self.horizon_fraction(), p.step, c) * p.lr_scale
                x, y = upcoming
                if p.window + 1 < len(batches):
                    upcoming = self._to_device(batches.window(p.window + 1))
                result = self._train_step(x, y, lr)
                p.window += 1
                now = time.perf_counter()
                p.elapsed += now - t_last
                t_last = now
                stop = self._agree()
                if result is None:  # skipped: nothing to count or log, but the run may still be over
                    yield self._on_bad_step()
                    if self._reached_horizon():
                        p.done, p.stop_reason = True, "horizon"
                    elif stop is not None:
                        p.stop_reason = stop
                        return
                    continue
                loss, norm = result
                p.step += 1
                p.bad_streak = 0
                if p.step % SNAPSHOT_EVERY == 0:
                    self._take_snapshot()
                tokens = x.numel() * self.world.size
                p.tokens += tokens
                tokens_since += tokens
                sums[:2] += torch.stack([loss, norm])
                sums[2] = torch.maximum(sums[2], norm)
                count += 1
                if p.step % LOG_EVERY == 0 or p.step == 1:
                    rate = tokens_since / max(now - t_since, 1e-9)
                    if p.step > 1:
                        self._train_rate = rate
                    loss_sum, norm_sum, norm_max = sums.tolist()
                    self._train_loss = loss_sum / count
                    yield StepReport(p.step, self._epoch_float(), self._train_loss, lr, norm_sum / count, norm_max,
                                     rate, p.elapsed, min(self.horizon_fraction(), 1.0))
                    sums.zero_()
                    count, tokens_since, t_since = 0, 0, time.perf_counter()
                if self._reached_horizon():
                    p.done, p.stop_reason = True, "horizon"
                elif self.val_ids is not None and p.step % c.eval_every == 0:
                    reports = self._eval_reports(final=False)
                    evaluated_at = p.step
                    t_last = time.perf_counter()
                    if c.patience is not None and p.evals_since_best >= c.patience:
                        p.done, p.stop_reason = True, f"no improvement in {c.patience} evaluations"
                    yield from reports
                    tokens_since, t_since = 0, time.perf_counter()  # the rate counts training steps only
                if self.save_every and p.step % self.save_every == 0 and not p.done:
                    yield SaveRequest(p.step)
                    tokens_since, t_since = 0, time.perf_counter()
                if stop is not None and not p.done:
                    p.stop_reason = stop
                    return
            if p.window >= len(batches):
                p.epoch, p.window, self.hidden = p.epoch + 1, 0, None  # reset state at epoch boundaries
        if self.val_ids is not None and evaluated_at != p.step:
            yield from self._eval_reports(final=True)

    def _reached_horizon(self) -> bool:
        return reached_horizon(self.config, self.progress, self.steps_per_epoch, self._eval_reserve())
