"""The bodies of the commands: wire the library together and render its results.

cli.py parses options and calls one function here; this module builds the
objects, consumes the trainer's reports, decides when to save, and draws
progress and tables through console.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from charlm import checkpoint, console, data, distributed, runtime
from charlm.batching import fit_to_corpus
from charlm.config import ModelConfig, SampleConfig, TrainConfig
from charlm.corpus import Source
from charlm.display import for_terminal
from charlm.distributed import World
from charlm.errors import CharlmError, CheckpointError, CorpusError, TokenizerError
from charlm.evaluate import default_dynamic_lr, evaluate_dynamic, evaluate_steps
from charlm.model import RNNLM
from charlm.sampling import generate
from charlm.tokenizer import EXTRA_TOKENS, TokenizerSpec, continuation_text, skipped_chars
from charlm.train import EvalReport, EventReport, Progress, SaveRequest, StepReport, Trainer, restore_rng

EXIT_INTERRUPTED = 130


@dataclass
class TrainSetup:
    run_dir: Path
    trainer: Trainer
    info: dict  # config.json
    saved_best: float = math.inf  # validation loss of model.safetensors, which only a lower one replaces


# ----- train ------------------------------------------------------------------------------------------------


def _check_out_dir(out: Path, force: bool) -> None:
    """Refuse to write into a folder holding another run (or other files) unless --force. Removes nothing:
    a run being replaced stays whole until the new one is ready to be written (_clear_old_run)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CheckpointError(f"--out {out} is a file: pick a folder name")
    if checkpoint.is_run_dir(out):
        if force:
            return
        if not any((out / name).exists() for name in (checkpoint.LAST_FILE, checkpoint.MODEL_FILE)):
            raise CheckpointError(f"{out} holds a run that stopped before it saved anything: replace it with --force")
        raise CheckpointError(f"{out} already holds a run: continue it with --resume {out}, or replace it with --force")
    elif any(out.iterdir()) and not force:
        raise CheckpointError(f"--out {out} is not empty: pick a new folder, or pass --force to write into it")


def _clear_old_run(out: Path) -> None:
    """With --force: remove the files of the run being replaced (other files in the folder stay)."""
    if out.is_dir() and checkpoint.is_run_dir(out):
        for name in checkpoint.RUN_FILES:
            (out / name).unlink(missing_ok=True)


def start_world(device_name: str) -> tuple[World, torch.device]:
    """This process's place among torchrun's processes (a single one without torchrun) and its device.
    Only rank 0 prints: the other ranks' consoles are muted."""
    world = distributed.from_environment()
    device = distributed.start(world, runtime.select_device(device_name))
    if not world.is_main:
        console.out.quiet = console.err.quiet = True
    return world, device


class _OtherRankFailed(SystemExit):
    """Rank 0 could not set the run up and reports why; the other ranks leave quietly."""

    def __init__(self):
        super().__init__(1)


def new_setup(source: Source, out: Path, force: bool, model_config: ModelConfig, train_config: TrainConfig,
              val_source: str | None, spec: TokenizerSpec, cache_dir: Path | None, cache_min_bytes: int,
              device_name: str, command: str) -> TrainSetup:
    """Prepare the data, create the run folder and build the trainer. Under torchrun, rank 0 prepares
    and creates; the others then read its run folder, so every rank has the same tokenizer and configs."""
    world, device = start_world(device_name)
    parts = None
    if world.is_main:
        try:
            parts = _create_run(source, out, force, model_config, train_config, val_source, spec, cache_dir,
                                cache_min_bytes, device, command, world)
        except BaseException:
            distributed.broadcast(world, None)  # tell the other ranks to leave
            raise
    run_dir = distributed.broadcast(world, out if parts else None)
    if run_dir is None:
        raise _OtherRankFailed()
    if not world.is_main:
        parts = _read_run(run_dir)
    runtime.seed_everything(parts.train_config.seed)
    return TrainSetup(run_dir, _make_trainer(parts, device, world), parts.info)


@dataclass
class _RunParts:
    """What a run folder holds before training starts, and its corpus tokenized."""

    info: dict  # config.json
    tokenizer: object
    data: data.RunData
    model_config: ModelConfig
    train_config: TrainConfig


def _create_run(source: Source, out: Path, force: bool, model_config: ModelConfig, train_config: TrainConfig,
                val_source: str | None, spec: TokenizerSpec, cache_dir: Path | None, cache_min_bytes: int,
                device: torch.device, command: str, world: World) -> _RunParts:
    _check_out_dir(out, force)  # before the slow work: a refused run costs no time
    run = prepare_with_progress(data.prepare_steps(source, train_config.val_fraction, train_config.test_fraction,
                                                   val_source, spec=spec, cache_dir=cache_dir,
                                                   cache_min_bytes=cache_min_bytes))
    for message in run.notes:
        console.info(message)
    for message in run.warnings:
        console.warn(message)
    batch_size, seq_len, warnings = fit_to_corpus(len(run.train_ids), train_config.batch_size, train_config.seq_len)
    for message in warnings:
        console.warn(message)
    train_config = dataclasses.replace(train_config, batch_size=batch_size, seq_len=seq_len,
                                       precision=runtime.resolve_precision(train_config.precision, device))
    world.check_batch_size(batch_size)
    _check_out_dir(out, force)  # again: the folder may have changed while the corpus was read
    _clear_old_run(out)
    info = checkpoint.create_run(out, run.tokenizer, model_config, train_config, run.corpus_info, command)
    return _RunParts(info, run.tokenizer, run, model_config, train_config)


def _read_run(run_dir: Path) -> _RunParts:
    """A run folder's config and tokenizer, and its corpus prepared again with that tokenizer."""
    info = checkpoint.read_config(run_dir)
    tokenizer = checkpoint.load_tokenizer(run_dir, info)
    model_config, train_config = ModelConfig.from_dict(info["model"]), TrainConfig.from_dict(info["train"])
    corpus_info = info["corpus"]
    source, val_source = data.recorded_sources(corpus_info)
    run = prepare_with_progress(data.prepare_steps(source, train_config.val_fraction, train_config.test_fraction,
                                                   val_source, tokenizer=tokenizer,
                                                   cache_dir=data.recorded_cache_dir(corpus_info), cache_min_bytes=0,
                                                   check_against=corpus_info))
    if run.corpus_info["train_sha256"] != corpus_info["train_sha256"]:
        raise CorpusError(f"the corpus {corpus_info['source']} changed since the run started: restore it to resume")
    return _RunParts(info, tokenizer, run, model_config, train_config)


def _make_trainer(parts: _RunParts, device: torch.device, world: World) -> Trainer:
    """The model and trainer of a run (collective under torchrun: DistributedDataParallel syncs the weights)."""
    runtime.tune_allocator()
    model = RNNLM(parts.model_config, parts.tokenizer.vocab_size)
    if world.rank:  # dropout masks differ between ranks, as they differ between rows of one batch
        torch.manual_seed(parts.train_config.seed + world.rank)
    c, run = parts.train_config, parts.data
    return Trainer(model, run.train_ids, run.val_ids, c, device, runtime.autocast_dtype(c.precision, device),
                   run.val_chars, world=world)


def resume_setup(run_dir: Path, device_name: str) -> TrainSetup:
    """Rebuild a run from its folder: same corpus split, tokenizer, configs, weights, optimizer, RNG and state.
    Under torchrun every rank does so and takes its own block of the saved hidden state and its own RNG."""
    world, device = start_world(device_name)
    checkpoint.read_config(run_dir)  # cheap checks first
    if not (run_dir / checkpoint.LAST_FILE).exists():
        raise CheckpointError(f"{run_dir} has no {checkpoint.LAST_FILE}: the run saved no resumable state yet; start it again with --force")
    parts = _read_run(run_dir)
    world.check_batch_size(parts.train_config.batch_size)
    trainer = _make_trainer(parts, device, world)
    state = checkpoint.load_training_state(run_dir, trainer.model)
    trainer.optimizer.load_state_dict(state.optimizer_state)
    trainer.progress = Progress.from_dict(state.progress)
    trainer.set_hidden(state.hidden)
    restore_rng(trainer.progress.rng)
    if world.rank in state.rngs:  # a rank the saved run did not have keeps its seeded generator
        torch_rng, cuda_rng = state.rngs[world.rank]
        torch.set_rng_state(torch_rng)
        if cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(cuda_rng)
    if trainer.progress.done:
        raise CheckpointError(f"the run in {run_dir} already finished ({trainer.progress.stop_reason}): nothing to resume")
    if world.is_main:
        checkpoint.truncate_metrics(run_dir, trainer.progress.step)
    console.info(f"resuming {run_dir} at step {trainer.progress.step:,} (epoch {trainer.progress.epoch})")
    # With --save-every, an evaluation may have written better weights after the last save: the replayed
    # steps must not replace them with worse ones (the training state's own best is left as it was saved).
    saved = checkpoint.read_weights_summary(run_dir).get("val_loss")
    return TrainSetup(run_dir, trainer, parts.info, saved if saved is not None else math.inf)


def _drive_with_bar(steps, make_bar, show):
    """Run a generator of progress reports to its end and return its value, calling ``show(bar, report)`` for
    each report on the bar ``make_bar()`` draws on stderr. No bar when stderr is not a terminal (logs and
    tests stay clean)."""
    if not console.err.is_terminal:
        return data.drain(steps)
    with make_bar() as bar:
        while True:
            try:
                report = next(steps)
            except StopIteration as stop:
                return stop.value
            show(bar, report)


def prepare_with_progress(steps):
    """Drive a generator of data.ReadProgress reports with a bar per stage (MB read, MB/s); returns its value."""
    tasks = {}

    def show(bar, report: data.ReadProgress) -> None:
        if report.stage not in tasks:
            tasks[report.stage] = bar.add_task(report.stage, total=report.total)
        bar.update(tasks[report.stage], completed=report.done, total=report.total)

    return _drive_with_bar(steps, console.transfer_progress, show)


def _save_state(setup: TrainSetup) -> dict:
    """Write last.safetensors; returns the save's record for metrics.jsonl. Under torchrun every rank must
    call this at the same step: the ranks' hidden states and RNG states are gathered, and rank 0 writes them."""
    t = setup.trainer
    start = time.perf_counter()
    hidden = t.gather_hidden()
    cuda = t.device.type == "cuda"
    rngs = distributed.gather(t.world, (torch.get_rng_state(), torch.cuda.get_rng_state(t.device) if cuda else None))
    if t.world.is_main:
        checkpoint.save_training_state(setup.run_dir, t.model, t.optimizer, hidden, t.resumable_progress(), rngs)
    return {"type": "save", "step": t.progress.step, "seconds": time.perf_counter() - start}


class _StopOnSignal:
    """First Ctrl-C / SIGTERM: finish the step, save, exit non-zero. Second Ctrl-C: abort at once."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.count = 0
        self.previous = {}

    def handle(self, signum, frame):
        self.count += 1
        if self.count > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.trainer.request_stop(signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _resume_command(world: World, run_dir: Path) -> str:
    if world.is_distributed:
        return f"torchrun <the same launch options> -m charlm train --resume {run_dir}"
    return f"charlm train --resume {run_dir}"


def train_and_render(setup: TrainSetup, save_every: int | None = None) -> int:
    """Run the trainer with a live progress bar; save best weights and resumable state. Returns an exit code."""
    trainer, run_dir = setup.trainer, setup.run_dir
    trainer.save_every = save_every
    c, p = trainer.config, trainer.progress
    model = trainer.model
    main = trainer.world.is_main  # only rank 0 writes files (and prints: the others' consoles are muted)

    unlogged = False  # metrics.jsonl could not be written: the run stops and saves, and logs no more

    def log(record: dict) -> None:
        nonlocal unlogged
        if not main or unlogged:
            return
        try:
            checkpoint.append_metrics(run_dir, record)
        except CheckpointError as e:
            unlogged = True
            console.warn(f"{e}; stopping to save the run")
            trainer.request_stop("a failed write")

    # torchrun's processes share the cores by design; a single CPU process keeps its threads to the free CPUs
    threads = runtime.ThreadFitter("training") if trainer.device.type == "cpu" and not trainer.world.is_distributed else None

    def fit_threads(note: str | None) -> None:
        if note:
            console.info(note)
            log({"type": "event", "step": p.step, "kind": "threads", "message": note})

    fit_threads(threads.start() if threads else None)
    processes = f" × {trainer.world.size} processes" if trainer.world.is_distributed else ""
    m = model.config
    decay = console.weight_decay_clause(c.optimizer, c.weight_decay)
    console.info(
        f"[bold]{run_dir}[/]: {m.cell.upper()} {m.num_layers}×{m.hidden_size}, "
        f"{model.num_parameters():,} parameters, vocab {trainer.model.vocab_size}, "
        f"{len(trainer.train_ids):,} training tokens, batch {c.batch_size} × seq {c.seq_len}, "
        f"lr {c.lr:g}, {console.dropout_clause(m.dropout, m.dropout_kind, m.weight_drop)}, {decay}"
        f"device {trainer.device.type}{processes}, {c.precision}{', compiled' if c.compile else ''}"
    )
    last_step: StepReport | None = None
    bar = console.training_progress()
    fields = dict(step=p.step, loss="–", val="–", ppl="–", bpc="–", rate="–")
    try:
        with _StopOnSignal(trainer), bar:
            task = bar.add_task("train", total=1000, **fields)
            for report in trainer.run():
                if isinstance(report, StepReport):
                    last_step = report
                    fields.update(step=f"{report.step:,}", loss=console.fmt(report.loss, 3), rate=f"{report.tokens_per_s:,.0f}")
                    bar.update(task, completed=1000 * report.progress, **fields)
                    log({"type": "train", **dataclasses.asdict(report)})
                    fit_threads(threads.observe(report.tokens_per_s) if threads else None)
                elif isinstance(report, EvalReport):
                    r = report.result
                    fields.update(val=console.fmt(r.loss, 3), ppl=console.fmt(r.perplexity, 2), bpc=console.fmt(r.bpc, 3))
                    bar.update(task, **fields)
                    log({"type": "val", "step": report.step, "epoch": report.epoch, "elapsed": report.elapsed,
                         "improved": report.improved, **r.to_dict()})
                    if report.improved and r.loss < setup.saved_best and main:
                        setup.saved_best = r.loss
                        checkpoint.save_weights(run_dir, model, {"step": report.step, "val_loss": r.loss, "val_bpc": r.bpc,
                                                                 "val_perplexity": r.perplexity})
                    if not trainer.save_every:
                        log(_save_state(setup))
                elif isinstance(report, SaveRequest):
                    log(_save_state(setup))
                elif isinstance(report, EventReport):
                    console.warn(report.message)
                    log({"type": "event", "step": report.step, "kind": report.kind, "message": report.message})
            if not p.done:
                bar.update(task, **fields)
    except KeyboardInterrupt:
        console.err.print(f"aborted at once; the last saved checkpoint in {run_dir} is intact. "
                          f"Resume with: {_resume_command(trainer.world, run_dir)}")
        return EXIT_INTERRUPTED
    log(_save_state(setup))
    if main and (trainer.val_ids is None or p.best_val_loss == math.inf):
        # no validation text, or stopped before the first evaluation: the last weights are the ones to sample
        checkpoint.save_weights(run_dir, model, {"step": p.step, "train_loss": last_step.loss if last_step else None})
    if not p.done:
        console.err.print(f"stopped by {p.stop_reason} at step {p.step:,}; the run is saved. "
                          f"Resume with: {_resume_command(trainer.world, run_dir)}")
        return EXIT_INTERRUPTED
    _print_summary(setup, last_step)
    return 0


def _print_summary(setup: TrainSetup, last_step: StepReport | None) -> None:
    p = setup.trainer.progress
    rows = [
        ("run folder", str(setup.run_dir)),
        ("steps", f"{p.step:,}"),
        ("epochs", f"{p.epoch + p.window / setup.trainer.steps_per_epoch:.2f}"),
        ("time", f"{p.elapsed:.1f} s"),
        ("tokens/s, evaluations included", f"{p.tokens / p.elapsed:,.0f}" if p.elapsed else "–"),
        ("last train loss", console.fmt(last_step.loss if last_step else None)),
    ]
    best = checkpoint.read_weights_summary(setup.run_dir)  # model.safetensors: the weights sample and eval use
    if best.get("val_loss") is not None:
        from charlm import metrics

        rows += [
            ("best val loss (nats/token)", console.fmt(best["val_loss"])),
            ("best val perplexity", console.fmt(metrics.perplexity(best["val_loss"]), 3)),
            ("best val bpc", console.fmt(best.get("val_bpc"))),
            ("best at step", f"{best['step']:,}"),
        ]
    console.out.print(console.key_value_table("training finished", rows))
    console.err.print(f"sample it: charlm sample {setup.run_dir}")


# ----- eval -------------------------------------------------------------------------------------------------


def evaluate_checkpoint(run_dir: Path, text_source: Source | str | None, split_name: str, batch_size: int,
                        unknown: str, device_name: str, text: str | None = None, impl: str | None = None,
                        dynamic: bool = False, dynamic_lr: float | None = None) -> dict:
    """Score one checkpoint on ``text_source`` (or ``text`` already read from it), else on its own recorded
    split; returns a row: checkpoint, text, level, vocab_size, normalize and the evaluate() figures.

    With ``dynamic`` the figures are dynamic evaluation's (``dynamic_lr``, or the cell's default), and the
    row adds the static loss and bpc of the same text for comparison."""
    from charlm import corpus

    device = runtime.select_device(device_name)
    ck = checkpoint.load(run_dir, device, impl=impl)
    tok = ck.tokenizer
    if text_source is not None:
        source = text_source if isinstance(text_source, Source) else Source((text_source,))
        text = corpus.load_text(source).text if text is None else text
        ids, label = tok.encode(text, unknown=unknown), source.description
        label_detail, text_sha256 = label, None  # every checkpoint scores the same text
        if len(ids) < 2:
            raise TokenizerError("the text to evaluate has fewer than 2 tokens: pass a longer text")
        # the text's characters, less those --unknown skip dropped and the first token's
        dropped = skipped_chars(tok, text) if unknown == "skip" else 0
        n_chars = len(text) - dropped - tok.count_chars(ids[:1])
    else:
        steps = data.recorded_split_steps(ck.info["corpus"], ck.info["train"], split_name, tok)
        (ids, n_chars), label = prepare_with_progress(steps), f"its {split_name} split"
        source_name = ck.info["corpus"]["source"]
        source_name = Path(source_name).name if os.sep in source_name else source_name  # a file's name, or a corpus'
        label_detail = f"{split_name} split of {source_name}"  # how runs on different corpora are told apart
        text_sha256 = ck.info["corpus"].get(f"{split_name}_sha256")
    amp = runtime.autocast_dtype(ck.train_config.precision, device)
    result = _with_eval_progress(evaluate_steps(ck.model, ids, n_chars, batch_size, device=device, amp_dtype=amp),
                                 f"evaluating {run_dir}")
    row = {"checkpoint": str(run_dir), "text": label, "text_detail": label_detail, "text_sha256": text_sha256,
           "level": tok.kind, "vocab_size": tok.vocab_size, "normalize": getattr(tok, "normalize", "none")}
    if not dynamic:
        return {**row, **result.to_dict()}
    lr = dynamic_lr if dynamic_lr is not None else default_dynamic_lr(ck.model_config.cell)
    threads = runtime.ThreadFitter("dynamic evaluation") if device.type == "cpu" else None
    note = threads.start() if threads else None  # one long stream of small steps stalls worst on a busy CPU
    if note:
        console.info(note)
    try:
        adapted = _with_eval_progress(evaluate_dynamic(ck.model, ids, lr, n_chars, device=device),
                                      f"dynamic evaluation of {run_dir}")
    finally:
        if threads:
            threads.restore()
    return {**row, **adapted.to_dict(), "dynamic_lr": lr, "static_loss": result.loss, "static_bpc": result.bpc}


def _with_eval_progress(steps, what: str):
    """Drive an evaluation pass's generator with a bar (tokens scored, loss so far); returns its result."""
    def show(bar, report) -> None:
        if not bar.tasks:
            bar.add_task(what, total=report.total)
        bar.update(bar.task_ids[0], completed=report.tokens, description=(
            f"{what}: {report.tokens:,} of {report.total:,} tokens, loss so far {report.loss:.4f}"))

    return _drive_with_bar(steps, console.task_progress, show)


def evaluate_checkpoints(run_dirs: list[Path], text_source: Source | None, split_name: str, batch_size: int,
                         unknown: str, device_name: str, impl: str | None = None, dynamic: bool = False,
                         dynamic_lr: float | None = None) -> list[dict]:
    """Score several checkpoints, all on the same text (read once) or each on its own recorded split, so a
    char, byte and subword model compare in one table by bits per character."""
    from charlm import corpus

    text = corpus.load_text(text_source).text if text_source is not None else None
    rows = []
    for run_dir in run_dirs:
        try:
            rows.append(evaluate_checkpoint(run_dir, text_source, split_name, batch_size, unknown, device_name, text,
                                            impl, dynamic, dynamic_lr))
        except CharlmError as e:
            if len(run_dirs) == 1:
                raise
            raise type(e)(f"{run_dir}: {e}") from None  # say which of the checkpoints
    return rows


# ----- sample -----------------------------------------------------------------------------------------------


def default_prompt(tokenizer) -> str:
    """A newline when the vocabulary has one (text starts after a line break), else its first character."""
    return "\n" if "\n" in tokenizer.chars else tokenizer.chars[0]


def sample_and_print(run_dir: Path, prompt: str | None, length: int, config: SampleConfig, seed: int | None,
                     num_samples: int, stream: bool, unknown: str, device_name: str, impl: str | None = None) -> None:
    device = runtime.select_device(device_name)
    ck = checkpoint.load(run_dir, device, impl=impl)
    tok = ck.tokenizer
    prompt = default_prompt(tok) if prompt is None or prompt == "" else prompt
    ids = tok.encode(prompt, unknown=unknown)
    if len(ids) == 0:
        raise TokenizerError("the prompt has no known characters left: pass a prompt the model can read")
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
    generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids = torch.from_numpy(ids.astype("int64"))
    shown_prompt = "" if prompt == default_prompt(tok) else prompt
    # a few ids past --length, used only to finish a character or Hangul syllable the last one began
    steps = generate(ck.model, prompt_ids, length + EXTRA_TOKENS if length else 0, config, num_samples, device,
                     generator, tok.unk_id)
    to_terminal = sys.stdout.isatty()

    def write(text: str) -> None:  # to a terminal, control characters a model wrote are drawn, not obeyed
        sys.stdout.write(for_terminal(text) if to_terminal else text)

    try:
        if stream and num_samples == 1:
            first_sample = (next_ids[0] for next_ids in steps)
            for text in continuation_text(tok.incremental_decoder(), first_sample, length, shown_prompt):
                write(text)
                sys.stdout.flush()
            write("\n")
        else:
            columns = [next_ids.cpu() for next_ids in steps]
            samples = torch.stack(columns, dim=1).tolist() if columns else [[] for _ in range(num_samples)]
            for i, row in enumerate(samples):
                if i:
                    write("\n" + "─" * 40 + "\n")
                write("".join(continuation_text(tok.incremental_decoder(), row, length, shown_prompt)) + "\n")
    except BrokenPipeError:  # e.g. `charlm sample … | head`
        sys.stderr.close()
    sys.stdout.flush()


# ----- repl -------------------------------------------------------------------------------------------------


def run_repl(run_dir: Path, show_k: int, device_name: str, mode: str = "auto", sample_config: SampleConfig | None = None,
             seed: int = 0, unknown: str = "error", impl: str | None = None) -> int:
    """Open the REPL on a run folder; returns the number of refused inputs (piped input only)."""
    from charlm import repl

    mode = repl.choose_mode(mode)  # cheap checks first: --line with piped input is refused before loading
    device = runtime.select_device(device_name)
    ck = checkpoint.load(run_dir, device, impl=impl)
    return repl.run(ck.model, ck.tokenizer, device, show_k, name=str(ck.run_dir), mode=mode,
                    sample_config=sample_config, seed=seed, unknown=unknown)
