"""Many-to-one: a recurrent encoder reads a text, a linear head names its class.

    ids (B, L), left-padded  ─► encoder (embedding + RNN layers of model.RNNLM, no decoder)
                                read in windows of T tokens, the state carried from one to the next
                             ─► pooled over the text: the last output (the course's return_sequences=False),
                                the mean, the max, or [last, max, mean] (ULMFiT's concat pooling)
      (--bidirectional)      ─► a second encoder reads each text from its end; the two are joined
                             ─► dropout ─► Linear ─► logits (B, C)

Texts are left-padded so that every text of a batch ends in the last window;
a batch holds texts of similar length (bucketed), so padding stays short. The
state of a row whose text begins in a later window is zeroed at each window
boundary until then; the pads of the window a text begins in are read (a
short, fixed prefix, the same whatever batch the text is in) but never pooled.
Only a batch's
last ``grad_windows`` windows keep their graph (ULMFiT's BPT3C): earlier
windows run without gradients, so memory does not grow with a text's length.

``ClassifierTrainer.run()`` yields reports as train.Trainer does; the command
(cli/classify.py) renders them and writes the run folder. ``evaluate`` gives
accuracy, macro-F1, a per-class table and the confusion matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from charlm.config import ClassifierConfig, ModelConfig, TrainConfig
from charlm.model import RNNLM, State, detach_state
from charlm.runtime import autocast, reproducible_kernels
from charlm.train import (
    LOG_EVERY,
    Progress,
    StepReport,
    capture_rng,
    horizon_fraction,
    lr_at,
    make_optimizer,
    reached_horizon,
    restore_rng,
)

PAD_ID = 0  # padding reads as the tokenizer's id 0 (<unk> at char and subword level)
BUCKET = 50  # batches whose texts are sorted by length together, for short padding


def encoder(config: ModelConfig, vocab_size: int) -> RNNLM:
    """The language model's embedding and recurrent layers, without its decoder."""
    lm = RNNLM(config, vocab_size)
    del lm.decoder
    return lm


class TextClassifier(nn.Module):
    """Encoder(s), pooling and a linear head over ``labels``."""

    def __init__(self, config: ModelConfig, vocab_size: int, n_classes: int, clf: ClassifierConfig):
        super().__init__()
        self.config, self.clf = config, clf
        self.encoder = encoder(config, vocab_size)
        self.backward_encoder = encoder(config, vocab_size) if clf.bidirectional else None
        features = config.hidden_size * (3 if clf.pooling == "concat" else 1) * (2 if clf.bidirectional else 1)
        self.drop = nn.Dropout(clf.head_dropout)
        self.head = nn.Linear(features, n_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
        """ids (B, L) left-padded, L a multiple of ``window``; lengths (B,) → logits (B, C)."""
        features = [self._read(self.encoder, ids, lengths, window)]
        if self.backward_encoder is not None:
            features.append(self._read(self.backward_encoder, reverse_texts(ids, lengths), lengths, window))
        return self.head(self.drop(torch.cat(features, dim=-1)))  # (B, C)

    def _read(self, encoder: RNNLM, ids: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
        """One direction: the pooled outputs (B, H) or (B, 3H) of reading ids window by window."""
        batch, length = ids.shape
        n_windows = length // window
        first_grad = max(n_windows - self.clf.grad_windows, 0)
        starts = length - lengths  # (B,) where each text begins
        positions = torch.arange(length, device=ids.device)
        real = positions[None, :] >= starts[:, None]  # (B, L)
        total = ids.new_zeros(batch, self.config.hidden_size, dtype=torch.float32)
        peak = torch.full_like(total, -math.inf)
        state: State | None = None
        out = None
        for w in range(n_windows):
            cut = slice(w * window, (w + 1) * window)
            if state is not None:  # a text that has not begun yet keeps a zero state
                begun = (starts < w * window).float()[None, :, None]  # (1, B, 1)
                state = tuple(s * begun for s in state) if isinstance(state, tuple) else state * begun
            with torch.set_grad_enabled(torch.is_grad_enabled() and w >= first_grad):
                out, state = encoder.encode(ids[:, cut], state)  # (B, T, H)
                out = out.float()
                mask = real[:, cut, None]  # (B, T, 1)
                total = total + (out * mask).sum(dim=1)
                peak = torch.maximum(peak, out.masked_fill(~mask, -math.inf).amax(dim=1))
            if w < first_grad:
                state = detach_state(state)
        last = out[:, -1]  # (B, H): every text ends at the last position
        mean = total / lengths[:, None].clamp_min(1)
        return {"last": last, "mean": mean, "max": peak, "concat": torch.cat([last, peak, mean], dim=-1)}[
            self.clf.pooling]


def encode_texts(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Each text as ids; a character the tokenizer never saw reads as <unk> (a classifier's input, not a
    prediction target, so it is no error)."""
    return [tokenizer.encode(text, unknown="unk" if tokenizer.unk_id is not None else "error") for text in texts]


def reverse_texts(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each left-padded row's text read from its end, still left-padded: [p p a b c] → [p p c b a]."""
    batch, length = ids.shape
    positions = torch.arange(length, device=ids.device)[None, :].expand(batch, -1)  # (B, L)
    starts = (length - lengths)[:, None]
    source = torch.where(positions >= starts, length - 1 - (positions - starts), positions)
    return ids.gather(1, source)


def batch_tensors(texts: list[np.ndarray], window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts as ids → (B, L) int64 left-padded to a multiple of ``window``, and their lengths (B,)."""
    lengths = torch.tensor([max(len(t), 1) for t in texts])
    length = int(math.ceil(int(lengths.max()) / window) * window)
    ids = torch.full((len(texts), length), PAD_ID, dtype=torch.long)
    for row, t in enumerate(texts):
        if len(t):
            ids[row, length - len(t):] = torch.from_numpy(np.asarray(t, dtype=np.int64))
    return ids, lengths


def bucketed(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of indices in a random order, each of texts of similar length: a random permutation cut into
    chunks of BUCKET batches, each chunk sorted by length and cut into batches, the batches shuffled."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * BUCKET):
        chunk = order[start:start + batch_size * BUCKET]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ----- evaluation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyResult:
    """How well a classifier names the classes of a set of examples."""

    loss: float  # mean cross-entropy, nats
    accuracy: float
    macro_f1: float
    labels: list[str]
    per_class: list[dict]  # label, precision, recall, f1, support
    confusion: list[list[int]]  # confusion[true][predicted]
    examples: int
    seconds: float

    def to_dict(self) -> dict:
        return {"loss": self.loss, "accuracy": self.accuracy, "macro_f1": self.macro_f1, "examples": self.examples,
                "per_class": self.per_class, "confusion": self.confusion, "labels": self.labels,
                "texts_per_s": self.examples / self.seconds if self.seconds > 0 else math.inf}


def scores(labels: list[str], truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float, list[dict], list]:
    """Accuracy, macro-F1 (the mean F1 of the classes that occur in ``truth``), per-class figures and the
    confusion matrix."""
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = []
    for c, label in enumerate(labels):
        tp = confusion[c, c]
        precision = tp / confusion[:, c].sum() if confusion[:, c].sum() else 0.0
        recall = tp / confusion[c].sum() if confusion[c].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"label": label, "precision": float(precision), "recall": float(recall), "f1": float(f1),
                          "support": int(confusion[c].sum())})
    accuracy = float(np.trace(confusion) / max(confusion.sum(), 1))
    present = [row for row in per_class if row["support"]]
    macro_f1 = float(np.mean([row["f1"] for row in present])) if present else 0.0
    return accuracy, macro_f1, per_class, confusion.tolist()


@torch.inference_mode()
def predict(model: TextClassifier, texts: list[np.ndarray], window: int, batch_size: int = 64,
            device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Class probabilities (N, C) of every text, read in batches of similar length."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    probs = torch.empty(len(texts), model.head.out_features)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids, lengths = batch_tensors([texts[i] for i in rows], window)
            with autocast(device, amp_dtype):
                logits = model(ids.to(device), lengths.to(device), window)
            probs[torch.from_numpy(rows)] = torch.softmax(logits.float(), dim=-1).cpu()
    finally:
        model.train(was_training)
    return probs


def evaluate(model: TextClassifier, texts: list[np.ndarray], targets: np.ndarray, labels: list[str], window: int,
             batch_size: int = 64, device: torch.device | str = "cpu",
             amp_dtype: torch.dtype | None = None) -> ClassifyResult:
    """The classifier's figures on ``texts`` with true classes ``targets`` (N,) (indices into ``labels``)."""
    start = time.perf_counter()
    probs = predict(model, texts, window, batch_size, device, amp_dtype)  # (N, C)
    targets = np.asarray(targets, dtype=np.int64)
    loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), torch.from_numpy(targets)))
    accuracy, macro_f1, per_class, confusion = scores(labels, targets, probs.argmax(dim=1).numpy())
    return ClassifyResult(loss, accuracy, macro_f1, labels, per_class, confusion, len(texts),
                          time.perf_counter() - start)


# ----- training ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyEvalReport:
    step: int
    epoch: float
    result: ClassifyResult
    improved: bool
    elapsed: float
    final: bool = False


def param_groups(model: TextClassifier, train: TrainConfig, clf: ClassifierConfig) -> list[dict]:
    """AdamW groups: the head at the full rate, each encoder layer down (and the embedding below them) at the
    rate divided by ``clf.discriminative`` once more (ULMFiT's discriminative fine-tuning; 1 = one rate).
    Weight decay on matrices only. Each group is named by its depth below the head (0 = the head)."""
    encoders = [e for e in (model.encoder, model.backward_encoder) if e is not None]
    depth_of: dict[int, int] = {id(p): 0 for p in [*model.head.parameters()]}
    n_layers = model.config.num_layers
    for enc in encoders:
        for i, layer in enumerate(enc.layers):
            for p in layer.parameters():
                depth_of[id(p)] = n_layers - i
        for p in enc.parameters():
            depth_of.setdefault(id(p), n_layers + 1)  # the embedding
    groups: dict[tuple[int, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((depth_of.get(id(p), 0), p.dim() >= 2), []).append(p)
    return [{"params": params, "depth": depth, "lr_scale": clf.discriminative ** -depth,
             "weight_decay": train.weight_decay if matrix else 0.0}
            for (depth, matrix), params in sorted(groups.items())]


class ClassifierTrainer:
    """Trains a TextClassifier on tokenized texts; ``run()`` yields StepReport and ClassifyEvalReport."""

    def __init__(self, model: TextClassifier, train_texts: list[np.ndarray], train_y: np.ndarray,
                 val_texts: list[np.ndarray], val_y: np.ndarray, labels: list[str], config: TrainConfig,
                 clf: ClassifierConfig, device: torch.device, amp_dtype: torch.dtype | None = None):
        if not config.has_horizon:
            raise ValueError("TrainConfig needs epochs, max_steps or time_budget")
        self.model = model.to(device)
        self.train_texts, self.train_y = train_texts, np.asarray(train_y, dtype=np.int64)
        self.val_texts, self.val_y = val_texts, np.asarray(val_y, dtype=np.int64)
        self.labels, self.config, self.clf = labels, config, clf
        self.device, self.amp_dtype = device, amp_dtype
        self.optimizer = make_optimizer(model, config, param_groups(model, config, clf))
        # fp16 needs loss scaling to keep small gradients from flushing to zero; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.progress = Progress()
        self.lengths = np.array([len(t) for t in train_texts])
        self.steps_per_epoch = len(self._batches(0))
        self._stop_reason: str | None = None
        self._eval_seconds_estimate = 0.0

    def request_stop(self, reason: str) -> None:
        self._stop_reason = reason

    def restore(self, progress: dict, optimizer_state: dict, rngs: dict) -> None:
        """Continue from a saved state (checkpoint.load_training_state, after the weights were loaded)."""
        self.optimizer.load_state_dict(optimizer_state)
        self.progress = Progress.from_dict(progress)
        if self.progress.grad_scaler:
            self.scaler.load_state_dict(self.progress.grad_scaler)
        restore_rng(self.progress.rng)
        if 0 in rngs:
            torch_rng, cuda_rng = rngs[0]
            torch.set_rng_state(torch_rng)
            if cuda_rng is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda_rng)

    def resumable_progress(self) -> dict:
        """Progress with the RNG and loss-scaling states, as a checkpoint stores it."""
        self.progress.rng = capture_rng()
        self.progress.grad_scaler = self.scaler.state_dict() if self.scaler.is_enabled() else {}
        return self.progress.to_dict()

    def _batches(self, epoch: int) -> list[np.ndarray]:
        return bucketed(self.lengths, self.config.batch_size, np.random.default_rng([self.config.seed, epoch]))

    def horizon_fraction(self) -> float:
        return horizon_fraction(self.config, self.progress, self.steps_per_epoch, self._reserve())

    def _reserve(self) -> float:
        """Seconds kept for the final evaluation: the last one's, or an estimate before any."""
        return self.progress.last_eval_seconds or self._eval_seconds_estimate

    def _reached_horizon(self) -> bool:
        return reached_horizon(self.config, self.progress, self.steps_per_epoch, self._reserve())

    def _trainable_depth(self) -> int | None:
        """With gradual unfreezing, the deepest group that trains now (deeper ones are frozen): the head
        (depth 0) alone in the first stage, one encoder layer more at each next stage, all in the last.
        None: everything trains."""
        if not self.clf.gradual_unfreeze:
            return None
        stages = self.model.config.num_layers + 2  # head; each layer from the top; the embedding
        return min(int(self.horizon_fraction() * stages), stages - 1)

    def _train_step(self, rows: np.ndarray, lr: float) -> tuple[float, float, int] | None:
        """One optimizer step on the texts ``rows``; returns the loss, the gradient norm before clipping and
        the tokens read, or None for a non-finite step (not applied). A frozen group (gradual unfreezing)
        gets no gradient, so it neither moves nor counts in the clipped norm."""
        trainable = self._trainable_depth()
        for group in self.optimizer.param_groups:
            frozen = trainable is not None and group.get("depth", 0) > trainable
            group["lr"] = lr * group.get("lr_scale", 1.0)
            for param in group["params"]:
                param.requires_grad_(not frozen)
        ids, lengths = batch_tensors([self.train_texts[i] for i in rows], self.config.seq_len)
        y = torch.from_numpy(self.train_y[rows]).to(self.device)
        with autocast(self.device, self.amp_dtype):
            logits = self.model(ids.to(self.device), lengths.to(self.device), self.config.seq_len)
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [q for q in self.model.parameters() if q.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip or math.inf)
        if not (torch.isfinite(loss) and (torch.isfinite(norm) or self.scaler.is_enabled())):
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
            return None
        self.scaler.step(self.optimizer)  # a frozen parameter has no gradient: AdamW leaves it as it is
        self.scaler.update()
        return float(loss.detach()), float(norm), int(lengths.sum())

    def evaluate(self) -> ClassifyResult:
        return evaluate(self.model, self.val_texts, self.val_y, self.labels, self.config.seq_len,
                        self.config.eval_batch_size, self.device, self.amp_dtype)

    def _eval_report(self, final: bool) -> ClassifyEvalReport:
        p = self.progress
        result = self.evaluate()
        improved = result.loss < p.best_val_loss
        if improved:
            p.best_val_loss, p.best_step, p.evals_since_best = result.loss, p.step, 0
        else:
            p.evals_since_best += 1
        p.last_eval_seconds = result.seconds
        p.eval_seconds += result.seconds
        p.elapsed += result.seconds
        return ClassifyEvalReport(p.step, p.epoch + p.window / self.steps_per_epoch, result, improved, p.elapsed,
                                  final)

    def run(self) -> Iterator[StepReport | ClassifyEvalReport]:
        """Train until the horizon or early stopping, then a final evaluation; after ``request_stop`` it returns
        right after the current step with ``progress.done`` False, so the run can be resumed."""
        with reproducible_kernels(self.config.deterministic):
            yield from self._loop()

    def _loop(self) -> Iterator[StepReport | ClassifyEvalReport]:
        c, p = self.config, self.progress
        self.model.train()
        self._eval_seconds_estimate = len(self.val_texts) / 200  # until the first evaluation is timed
        loss_sum, norms, tokens_since, t_since, t_last = 0.0, [], 0, time.perf_counter(), time.perf_counter()
        evaluated_at = -1
        while not p.done:
            batches = self._batches(p.epoch)
            while p.window < len(batches) and not p.done:
                lr = lr_at(self.horizon_fraction(), p.step, c) * p.lr_scale
                result = self._train_step(batches[p.window], lr)
                p.window += 1
                now = time.perf_counter()
                p.elapsed += now - t_last
                t_last = now
                if result is not None:
                    p.step += 1
                    loss_sum += result[0]
                    norms.append(result[1])
                    tokens_since += result[2]
                    p.tokens += result[2]
                else:
                    p.bad_steps += 1
                if p.step and p.step % LOG_EVERY == 0 and norms:
                    rate = tokens_since / max(now - t_since, 1e-9)
                    yield StepReport(p.step, p.epoch + p.window / self.steps_per_epoch, loss_sum / len(norms), lr,
                                     sum(norms) / len(norms), max(norms), rate, p.elapsed,
                                     min(self.horizon_fraction(), 1.0))
                    loss_sum, norms, tokens_since, t_since = 0.0, [], 0, time.perf_counter()
                if self._reached_horizon():
                    p.done, p.stop_reason = True, "horizon"
                elif p.step and p.step % c.eval_every == 0 and evaluated_at != p.step:
                    evaluated_at = p.step
                    report = self._eval_report(final=False)
                    t_last = t_since = time.perf_counter()
                    if c.patience is not None and p.evals_since_best >= c.patience:
                        p.done, p.stop_reason = True, f"no improvement in {c.patience} evaluations"
                    yield report
                stop = self._stop_reason
                if stop is not None and not p.done:
                    p.stop_reason = stop
                    return
            if p.window >= len(batches):
                p.epoch, p.window = p.epoch + 1, 0
        if evaluated_at != p.step:
            yield self._eval_report(final=True)
