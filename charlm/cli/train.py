"""`charlm train`: read the corpus, set up the run folder, train with live progress, save as it goes.

The command parses its options into configs (config.resolve fills in what the
user left out from the preset table), then:

    new run    data.prepare_steps ─► checkpoint.create_run ─► RNNLM + Trainer
    --resume   the run folder's config and corpus ─► the same, then Trainer.restore(last.safetensors)

and drives ``Trainer.run()``, rendering its reports: a live bar on a terminal,
one plain line per evaluation in a log. It decides when to write
model.safetensors (a better validation loss), last.safetensors (each
evaluation, --save-every, a stop) and metrics.jsonl, and turns Ctrl-C or
SIGTERM into a saved, resumable stop.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from charlm.cli.options import (
    command_line,
    complete_corpus,
    complete_run,
    device_option,
    duration,
    encoding_errors_option,
    given,
)
from charlm.config import (
    CELLS,
    DROPOUT_KINDS,
    FINE_TUNE,
    IMPLS,
    OPTIMIZERS,
    PRECISIONS,
    ModelConfig,
    TrainConfig,
    preset_help,
    resolve,
)
from charlm.corpus import Source
from charlm.errors import CheckpointError, CorpusError
from charlm.tokenizers import LEVELS, NORMALIZATIONS, SUBWORD_MODELS, TokenizerSpec

DEFAULT_CORPUS = "shakespeare"
RESUME_OPTIONS = {"resume", "device", "save_every"}  # what `train --resume` may be given: the rest is the run's own
EXIT_INTERRUPTED = 130
MODEL, TRAIN, TOKENIZER = ModelConfig(), TrainConfig(), TokenizerSpec()


@click.command(epilog="""\b
Examples:
  charlm train hihello --cell rnn --embed 0 --hidden 8 --layers 1 --batch-size 1 --seq-len 6 --val-fraction 0 \\
      --max-steps 150 --lr 0.05 --warmup 0 --dropout 0 --out checkpoints/hihello
  charlm train shakespeare --time-budget 60s --out checkpoints/quickstart
  charlm train korean_bills --level subword --vocab-size 4000 --time-budget 2m --out runs/subword
  charlm train korean_bills --normalize nfd --time-budget 2m --out runs/jamo     # Hangul as jamo
  charlm train corpora/ --glob 'kolaw*.txt' --cell gru --layers 1 --hidden 128 --epochs 2 --out runs/folder
  charlm train kolaw_constitution --from base --time-budget 60s --out runs/law-ft     # fine-tune the base model
  torchrun --standalone --nproc_per_node 2 -m charlm train shakespeare --time-budget 1m --out runs/ddp
""")
@click.argument("corpus", nargs=-1, shell_complete=complete_corpus)
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Run folder (default: checkpoints/<corpus>-<cell>-<time>, with -<level> after <corpus> for byte and "
                   "subword runs).")
@click.option("--resume", type=click.Path(path_type=Path), shell_complete=complete_run,
              help="Continue the run in this folder exactly where it stopped, with its own corpus and settings.")
@click.option("--from", "parent_run", metavar="RUN", shell_complete=complete_run,
              help="Start from RUN's weights, tokenizer and architecture (a run folder, or a shipped model by name: "
                   "base): fine-tune it on CORPUS (default: RUN's own corpus, for more time on a finished run). "
                   f"Its weight decay, batch and --seq-len are the defaults; dropout {FINE_TUNE.dropout:g}, weight "
                   f"drop {FINE_TUNE.weight_drop:g}, and the peak --lr {FINE_TUNE.lr_fraction:g}x its own (its "
                   f"lineage's first, for a fine-tuned RUN), after {FINE_TUNE.warmup_steps} warm-up steps.")
@click.option("--force", is_flag=True, help="Replace an existing run in --out.")
@click.option("--val", "val_source", help="Validation text file (default: the last --val-fraction of the corpus).")
@click.option("--val-fraction", type=float, default=TRAIN.val_fraction, show_default=True,
              help="Last fraction of the corpus held out for validation.")
@click.option("--test-fraction", type=float, default=TRAIN.test_fraction, show_default=True,
              help="Fraction before the validation part held out as a test split.")
@click.option("--glob", default="*.txt", show_default=True,
              help="Which files of a CORPUS folder to read (recursively).")
@encoding_errors_option
@click.option("--split", "hf_split", default="train", show_default=True,
              help="Split of a Hugging Face dataset (hf:NAME[:CONFIG]).")
@click.option("--text-column", default="text", show_default=True,
              help="Column holding the text, for datasets and json/jsonl/csv/parquet files.")
@click.option("--level", type=click.Choice(LEVELS), default=TOKENIZER.level, show_default=True,
              help="Tokens: characters, UTF-8 bytes (256 symbols) or sentencepiece subwords.")
@click.option("--vocab-size", type=int, default=TOKENIZER.vocab_size, show_default=True,
              help="Subword vocabulary size (--level subword).")
@click.option("--sp-model", "model_type", type=click.Choice(SUBWORD_MODELS), default=TOKENIZER.model_type,
              show_default=True,
              help="Subword algorithm (--level subword).")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=TOKENIZER.normalize, show_default=True,
              help="Unicode normal form applied before tokenizing; nfd splits Hangul into jamo (samples are recomposed "
                   "to NFC).")
@click.option("--cache-dir", type=click.Path(path_type=Path),
              help="Keep token files here, for a corpus of any size (default: $CHARLM_CACHE_DIR or ~/.cache/charlm, "
                   "for corpora of 32 MB or more).")
@click.option("--no-cache", is_flag=True, help="Tokenize in memory, never into a token cache.")
@click.option("--cell", type=click.Choice(CELLS), default=None, help=f"Recurrent cell.  {preset_help('cell')}")
@click.option("--layers", "num_layers", type=int, default=MODEL.num_layers, show_default=True,
              help="Stacked recurrent layers.")
@click.option("--hidden", "hidden_size", type=int, default=None,
              help=f"Hidden units per layer; --embed's size with --tie-weights.  {preset_help('hidden_size')}")
@click.option("--embed", "embed_size", type=int, default=MODEL.embed_size, show_default=True,
              help="Embedding size; 0 = one-hot input.")
@click.option("--dropout", type=float, default=None,
              help=f"Dropout between layers and before the decoder.  {preset_help('dropout')}")
@click.option("--dropout-kind", type=click.Choice(DROPOUT_KINDS), default=MODEL.dropout_kind, show_default=True,
              help="standard: a fresh mask every time step; locked: one mask per sequence for the whole window "
                   "(cheaper on CPU).")
@click.option("--weight-drop", type=float, default=None,
              help="Weight drop (DropConnect): the share of the recurrent weights W_h zeroed at each training step, "
                   f"one mask for the whole batch.  {preset_help('weight_drop')}")
@click.option("--tie-weights", is_flag=True,
              help="Share the embedding and decoder matrices (needs --embed = --hidden).")
@click.option("--impl", type=click.Choice(IMPLS), default=MODEL.impl, show_default=True,
              help="fused: torch's kernels; reference: the course equations over an explicit time loop (same weights, "
                   "slower; docs/cells.md).")
@click.option("-b", "--batch-size", type=int, default=TRAIN.batch_size,
              help=f"Parallel streams per step.  [default: {TRAIN.batch_size}; --from: the parent's]")
@click.option("-t", "--seq-len", "--bptt", "seq_len", type=int, default=TRAIN.seq_len, show_default=True,
              help="Truncated BPTT length (tokens per window).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=TRAIN.optimizer, show_default=True)
@click.option("--lr", type=float, default=None,
              help="Peak learning rate.  [default: by --cell: 1e-2 for lstm, 3e-3 for gru and rnn]")
@click.option("--min-lr-ratio", type=float, default=TRAIN.min_lr_ratio, show_default=True,
              help="Cosine decay floor as a fraction of --lr.")
@click.option("--warmup", "warmup_steps", type=int, default=TRAIN.warmup_steps, show_default=True,
              help="Linear warmup steps.")
@click.option("--weight-decay", type=float, default=None,
              help="AdamW's decoupled weight decay on the weight matrices (--optimizer sgd has none).  "
                   f"{preset_help('weight_decay')}")
@click.option("--clip", "grad_clip", type=float, default=TRAIN.grad_clip, show_default=True,
              help="Max gradient norm (0 = off).")
@click.option("--epochs", type=float, help="Stop after this many passes over the training text.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--time-budget", callback=duration,
              help="Stop after this much wall-clock time of training and evaluation: 90s, 5m, 1.5h (a bare number is "
                   "seconds). Default 5m when no other limit is given.")
@click.option("--eval-every", type=int, default=TRAIN.eval_every, show_default=True,
              help="Steps between validation passes.")
@click.option("--patience", type=int, help="Stop after this many validation passes without improvement.")
@click.option("--save-every", type=click.IntRange(min=1),
              help="Also save the resumable state every N steps (default: at each validation pass).")
@click.option("--seed", type=int, default=TRAIN.seed, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=TRAIN.precision, show_default=True,
              help="auto uses bf16 autocast where the hardware has fast bf16, and fp16 with loss scaling on GPUs "
                   "without bf16.")
@click.option("--compile", is_flag=True,
              help="torch.compile the training forward pass (first steps are slower while it compiles).")
@click.option("--deterministic", is_flag=True,
              help="Bit-reproducible runs and resumes on CPU (slower: no oneDNN RNN kernels).")
@device_option
def train(corpus, out, resume, parent_run, force, val_source, glob, encoding_errors, hf_split, text_column, level,
          vocab_size, model_type, normalize, cache_dir, no_cache, save_every, device, **options):
    """Train a model on CORPUS: one or more text files (gzip, bz2 and xz too), folders, shipped corpus
    names, json/jsonl/csv/parquet files or Hugging Face datasets (hf:NAME[:CONFIG]). Without CORPUS it
    trains on the shipped shakespeare corpus; without --epochs, --max-steps or --time-budget, for 5 minutes.
    The options marked "by --time-budget" come from the preset table measured best for that budget
    (docs/performance.md); the 10-minute row held on a corpus of 34 M characters. The run's first line says
    what it got.

    The corpus is split contiguously by characters (the last 10% validates), a
    character, byte or subword vocabulary is built from the training part only,
    and the model is trained with stateful truncated BPTT. The run folder keeps
    the best and the last weights, the tokenizer, the configs and metrics.jsonl.
    A large corpus is tokenized once into a memory-mapped token cache that later
    runs reuse.
    """
    from charlm import data, distributed, tokencache, transfer

    started = time.monotonic()
    ctx = click.get_current_context()
    set_by_user = given(ctx)
    if resume is not None:
        ignored = [p for p in ctx.command.params if p.name in set_by_user - RESUME_OPTIONS]
        if corpus or ignored:
            dropped = ["CORPUS"] * bool(corpus) + [max(p.opts, key=len) for p in ignored if isinstance(p, click.Option)]
            raise click.UsageError(f"--resume continues a run with the corpus and settings it started with: drop "
                                   f"{', '.join(dropped)} (only --device and --save-every may change)")
        setup = _resumed_run(resume, device)
    else:
        if level != "subword" and set_by_user & {"vocab_size", "model_type"}:
            raise click.UsageError("--vocab-size and --sp-model apply to --level subword only")
        if no_cache and cache_dir is not None:
            raise click.UsageError("--cache-dir and --no-cache contradict each other: pass one")
        spec = TokenizerSpec(level=level, normalize=normalize, vocab_size=vocab_size, model_type=model_type)
        parent = _parent(parent_run, set_by_user, options, spec) if parent_run is not None else None
        source = Source(tuple(corpus) or (DEFAULT_CORPUS,), glob, encoding_errors, hf_split, text_column)
        if parent is not None and not corpus:  # more time for the parent, on its own corpus
            source, recorded_val = data.recorded_sources(parent.info["corpus"])
            val_source = val_source or recorded_val
        given_settings = {k: v for k, v in options.items() if k in set_by_user}
        model_config, train_config = resolve(given_settings, parent.configs() if parent is not None else None)
        if out is None:
            out = _default_out(source, parent.tokenizer.kind if parent else level, model_config.cell)
        if parent is not None:
            transfer.check_out(parent, out)
        cache_min_bytes = 0 if cache_dir is not None else data.CACHE_MIN_BYTES
        cache_dir = None if no_cache else (cache_dir or tokencache.default_dir())
        # more time on the parent's own corpus: only if it is still the text the parent recorded
        recorded = parent.info["corpus"] if parent is not None and not corpus else None
        setup = _new_run(source, out, force, model_config, train_config, val_source, spec, cache_dir,
                         cache_min_bytes, device, command_line(ctx), parent, recorded)
    finished = False
    try:
        code = _train_and_render(setup, save_every, started)
        finished = True
    finally:
        distributed.stop(setup.trainer.world, finished)
    if code:
        sys.exit(code)


def _parent(parent_run: str, set_by_user: set[str], options: dict, spec: TokenizerSpec):
    """The run --from names, loaded and checked against the options given (transfer.check_options)."""
    from charlm import transfer

    parent = transfer.load_parent(parent_run)
    given_options = {**options, "level": spec.level, "normalize": spec.normalize, "vocab_size": spec.vocab_size,
                     "model_type": spec.model_type}
    transfer.check_options(parent, {name: given_options[name] for name in set_by_user if name in given_options})
    return parent


def _default_out(source: Source, level: str, cell: str) -> Path:
    from charlm import checkpoint

    return checkpoint.default_run_dir(source.inputs[0], level, cell, datetime.now())


# ----- setting a run up -------------------------------------------------------------------------------------


@dataclass
class _Setup:
    run_dir: Path
    trainer: object  # train.Trainer
    info: dict  # config.json
    saved_best: float = math.inf  # validation loss of model.safetensors, which only a lower one replaces


@dataclass
class _RunParts:
    """What a run folder holds before training starts, and its corpus tokenized."""

    info: dict  # config.json
    run: object  # data.RunData
    model_config: ModelConfig
    train_config: TrainConfig


def _join(device_name: str):
    """This process's place among torchrun's processes (a single one without torchrun) and its device.
    Only rank 0 prints: the other ranks' consoles are muted."""
    from charlm import distributed, runtime
    from charlm.cli import console

    world = distributed.from_environment()
    device = distributed.start(world, runtime.select_device(device_name))
    if not world.is_main:
        console.out.quiet = console.err.quiet = True
    return world, device


def _new_run(source: Source, out: Path, force: bool, model_config: ModelConfig, train_config: TrainConfig,
             val_source: str | None, spec: TokenizerSpec, cache_dir: Path | None, cache_min_bytes: int,
             device_name: str, command: str, parent=None, check_against: dict | None = None) -> _Setup:
    """Prepare the data, create the run folder and build the trainer (rank 0 creates, the other ranks read).
    A ``parent`` (transfer.Parent) gives the tokenizer to start from and the weights to start with;
    ``check_against`` is a recorded corpus_info the corpus must still match."""
    from charlm import checkpoint, data, distributed, runtime
    from charlm.cli import console

    world, device = _join(device_name)

    def create() -> _RunParts:
        checkpoint.check_out_dir(out, force)  # before the slow work: a refused run costs no time
        run = read_with_progress(data.prepare_steps(source, train_config.val_fraction, train_config.test_fraction,
                                                    val_source, spec=spec, cache_dir=cache_dir,
                                                    cache_min_bytes=cache_min_bytes, check_against=check_against,
                                                    parent=parent.tokenizer if parent is not None else None))
        for message in run.notes:
            console.info(message)
        for message in run.warnings:
            console.warn(message)
        from charlm.batching import fit_to_corpus

        batch_size, seq_len, warnings = fit_to_corpus(len(run.train_ids), train_config.batch_size,
                                                      train_config.seq_len)
        for message in warnings:
            console.warn(message)
        config = dataclasses.replace(train_config, batch_size=batch_size, seq_len=seq_len,
                                     precision=runtime.resolve_precision(train_config.precision, device))
        world.check_batch_size(batch_size)
        checkpoint.check_out_dir(out, force)  # again: the folder may have changed while the corpus was read
        checkpoint.clear_old_run(out)
        lineage = parent.lineage() if parent is not None else None
        info = checkpoint.create_run(out, run.tokenizer, model_config, config, run.corpus_info, command, lineage)
        return _RunParts(info, run, model_config, config)

    parts = distributed.main_first(world, create, lambda _: _read_run(out))
    runtime.seed_everything(parts.train_config.seed)
    return _Setup(out, _make_trainer(parts, device, world, parent), parts.info)


def _start_from(parent, model, run) -> None:
    """Move the parent's weights into the new model, and say what the vocabulary gained."""
    from charlm import transfer
    from charlm.cli import console

    transfer.transplant(model, parent, run.tokenizer, run.train_ids)
    kept = {"char": "", "byte": " (bytes: nothing is ever unknown)",
            "subword": " (its sentencepiece model is kept; a character it has no piece for is spelled in "
                       "byte pieces)"}[parent.tokenizer.kind]
    added = f", {transfer.describe_added(run.added_chars)} added" if run.added_chars else ""
    console.info(f"starting from {parent.given} (step {parent.summary.get('step', '?')}): vocabulary "
                 f"{parent.tokenizer.vocab_size:,}{added}{kept}")


def _read_run(run_dir: Path) -> _RunParts:
    """A run folder's config and tokenizer, and its corpus prepared again with that tokenizer."""
    from charlm import checkpoint, data

    info = checkpoint.read_config(run_dir, checkpoint.LANGUAGE_MODEL)
    tokenizer = checkpoint.load_tokenizer(run_dir, info)
    model_config, train_config = ModelConfig.from_dict(info["model"]), TrainConfig.from_dict(info["train"])
    corpus_info = info["corpus"]
    source, val_source = data.recorded_sources(corpus_info)
    run = read_with_progress(data.prepare_steps(source, train_config.val_fraction, train_config.test_fraction,
                                                val_source, tokenizer=tokenizer,
                                                cache_dir=data.recorded_cache_dir(corpus_info), cache_min_bytes=0,
                                                check_against=corpus_info))
    if run.corpus_info["train_sha256"] != corpus_info["train_sha256"]:
        raise CorpusError(f"the corpus {corpus_info['source']} changed since the run started: restore it to resume")
    return _RunParts(info, run, model_config, train_config)


def _make_trainer(parts: _RunParts, device, world, parent=None):
    """The model and trainer of a run (collective under torchrun: DistributedDataParallel gives every rank
    rank 0's weights). A ``parent``'s weights go into the model before that, on rank 0."""
    import torch

    from charlm import runtime
    from charlm.model import RNNLM
    from charlm.train import Trainer

    runtime.tune_allocator()
    model = RNNLM(parts.model_config, parts.run.tokenizer.vocab_size)
    if parent is not None and world.is_main:
        _start_from(parent, model, parts.run)
    if world.rank:  # dropout masks differ between ranks, as they differ between rows of one batch
        torch.manual_seed(parts.train_config.seed + world.rank)
    c, run = parts.train_config, parts.run
    return Trainer(model, run.train_ids, run.val_ids, c, device, runtime.autocast_dtype(c.precision, device),
                   run.val_chars, world=world)


def _resumed_run(run_dir: Path, device_name: str) -> _Setup:
    """Rebuild a run from its folder: same corpus split, tokenizer, configs, weights, optimizer, RNG and state.
    Under torchrun every rank does so and takes its own block of the saved hidden state and its own RNG."""
    from charlm import checkpoint
    from charlm.cli import console

    world, device = _join(device_name)
    checkpoint.read_config(run_dir, checkpoint.LANGUAGE_MODEL)  # cheap checks first
    if not (run_dir / checkpoint.LAST_FILE).exists():
        raise CheckpointError(f"{run_dir} has no {checkpoint.LAST_FILE}: the run saved no resumable state yet; "
                              "start it again with --force")
    parts = _read_run(run_dir)
    world.check_batch_size(parts.train_config.batch_size)
    trainer = _make_trainer(parts, device, world)
    state = checkpoint.load_training_state(run_dir, trainer.model)
    trainer.restore(state.progress, state.optimizer_state, state.hidden, state.rngs)
    p = trainer.progress
    if p.done:
        raise CheckpointError(f"the run in {run_dir} already finished ({p.stop_reason}): nothing to resume")
    if world.is_main:
        checkpoint.truncate_metrics(run_dir, p.step)
    console.info(f"resuming {run_dir} at step {p.step:,} (epoch {p.epoch})")
    # With --save-every, an evaluation may have written better weights after the last save: the replayed
    # steps must not replace them with worse ones (the training state's own best is left as it was saved).
    saved = checkpoint.read_weights_summary(run_dir).get("val_loss")
    return _Setup(run_dir, trainer, parts.info, saved if saved is not None else math.inf)


def read_with_progress(steps):
    """Drive a generator of data.ReadProgress reports with a bar per stage (MB read, MB/s); returns its value."""
    from charlm.cli import console

    tasks = {}

    def show(bar, report) -> None:
        if report.stage not in tasks:
            tasks[report.stage] = bar.add_task(report.stage, total=report.total)
        bar.update(tasks[report.stage], completed=report.done, total=report.total)

    def line(report) -> str:
        done = f"{report.done / 1e6:,.1f} MB" + (f" of {report.total / 1e6:,.1f} MB" if report.total else "")
        return f"{report.stage}: {done}"

    return console.drive(steps, console.transfer_progress, show, line)


# ----- training ---------------------------------------------------------------------------------------------


class StopOnSignal:
    """First Ctrl-C / SIGTERM: finish the step, save, exit non-zero. Second Ctrl-C: abort at once."""

    def __init__(self, trainer):
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


def _resume_command(world, run_dir: Path) -> str:
    if world.is_distributed:
        return f"torchrun <the same launch options> -m charlm train --resume {run_dir}"
    return f"charlm train --resume {run_dir}"


def _save_state(setup: _Setup) -> dict:
    """Write last.safetensors; returns the save's record for metrics.jsonl. Under torchrun every rank must
    call this at the same step: the ranks' hidden states and RNG states are gathered, and rank 0 writes them."""
    import torch

    from charlm import checkpoint, distributed

    t = setup.trainer
    start = time.perf_counter()
    hidden = t.gather_hidden()
    cuda = t.device.type == "cuda"
    rngs = distributed.gather(t.world, (torch.get_rng_state(), torch.cuda.get_rng_state(t.device) if cuda else None))
    if t.world.is_main:
        checkpoint.save_training_state(setup.run_dir, t.model, t.optimizer, hidden, t.resumable_progress(), rngs)
    return {"type": "save", "step": t.progress.step, "seconds": time.perf_counter() - start}


def _header(setup: _Setup) -> str:
    """The run's first line: what it trains, on what, with which settings."""
    from charlm.cli import console

    trainer = setup.trainer
    c, m = trainer.config, trainer.model.config
    processes = f" × {trainer.world.size} processes" if trainer.world.is_distributed else ""
    return (f"[bold]{setup.run_dir}[/]: {m.cell.upper()} {m.num_layers}×{m.hidden_size}, "
            f"{trainer.model.num_parameters():,} parameters, vocab {trainer.model.vocab_size}, "
            f"{len(trainer.train_ids):,} training tokens, batch {c.batch_size} × seq {c.seq_len}, "
            f"lr {c.lr:g}, {console.dropout_clause(m.dropout, m.dropout_kind, m.weight_drop)}, "
            f"{console.weight_decay_clause(c.optimizer, c.weight_decay)}"
            f"device {trainer.device.type}{processes}, {c.precision}{', compiled' if c.compile else ''}")


def _eval_line(report, last_step) -> str:
    """One complete line per evaluation for a log: where the run is, its figures, and the time left."""
    from charlm.cli import console

    r = report.result
    train_loss = console.fmt(last_step.loss, 3) if last_step else "–"
    rate = f"{last_step.tokens_per_s:,.0f} tok/s" if last_step else "– tok/s"
    left = "–"
    if last_step is not None and last_step.progress > 0:
        left = console.duration(report.elapsed * (1 - last_step.progress) / last_step.progress)
    return (f"step {report.step:,} epoch {report.epoch:.2f} train {train_loss} val {r.loss:.3f} "
            f"ppl {console.fmt(r.perplexity, 2)} bpc {r.bpc:.3f} {rate} elapsed {console.duration(report.elapsed)} "
            f"ETA {'0 s' if report.final else left}{' (best)' if report.improved else ''}")


def _train_and_render(setup: _Setup, save_every: int | None, started: float) -> int:
    """Run the trainer with progress on stderr; save best weights and resumable state. Returns an exit code."""
    from charlm import checkpoint, runtime
    from charlm.cli import console
    from charlm.train import EvalReport, EventReport, SaveRequest, StepReport

    trainer, run_dir = setup.trainer, setup.run_dir
    trainer.save_every = save_every
    p, model = trainer.progress, trainer.model
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
    cpu_alone = trainer.device.type == "cpu" and not trainer.world.is_distributed
    threads = runtime.ThreadFitter("training") if cpu_alone else None

    def fit_threads(note: str | None) -> None:
        if note:
            console.info(note)
            log({"type": "event", "step": p.step, "kind": "threads", "message": note})

    fit_threads(threads.start() if threads else None)
    console.info(_header(setup))
    last_step: StepReport | None = None
    live = console.err.is_terminal  # a bar on a terminal; in a log, one line per evaluation
    bar = console.training_progress() if live else None
    fields = dict(step=p.step, loss="–", val="–", ppl="–", bpc="–", rate="–")
    try:
        with StopOnSignal(trainer), (bar or NoBar()):
            task = bar.add_task("train", total=1000, **fields) if bar else None
            for report in trainer.run():
                if isinstance(report, StepReport):
                    last_step = report
                    fields.update(step=f"{report.step:,}", loss=console.fmt(report.loss, 3),
                                  rate=f"{report.tokens_per_s:,.0f}")
                    if bar:
                        bar.update(task, completed=1000 * report.progress, **fields)
                    log({"type": "train", **dataclasses.asdict(report)})
                    fit_threads(threads.observe(report.tokens_per_s) if threads else None)
                elif isinstance(report, EvalReport):
                    r = report.result
                    fields.update(val=console.fmt(r.loss, 3), ppl=console.fmt(r.perplexity, 2),
                                  bpc=console.fmt(r.bpc, 3))
                    if bar:
                        bar.update(task, **fields)
                    else:
                        console.plain(_eval_line(report, last_step))
                    log({"type": "val", "step": report.step, "epoch": report.epoch, "elapsed": report.elapsed,
                         "improved": report.improved, **r.to_dict()})
                    if report.improved and r.loss < setup.saved_best and main:
                        setup.saved_best = r.loss
                        checkpoint.save_weights(run_dir, model, {"step": report.step, "val_loss": r.loss,
                                                                 "val_bpc": r.bpc, "val_perplexity": r.perplexity})
                    if not trainer.save_every:
                        log(_save_state(setup))
                elif isinstance(report, SaveRequest):
                    log(_save_state(setup))
                elif isinstance(report, EventReport):
                    console.warn(report.message)
                    log({"type": "event", "step": report.step, "kind": report.kind, "message": report.message})
            if bar and not p.done:
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
    _print_summary(setup, last_step, time.monotonic() - started)
    return 0


class NoBar:
    """Stands in for the progress bar's context when there is none (a log)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _print_summary(setup: _Setup, last_step, wall_seconds: float) -> None:
    from charlm import checkpoint, metrics
    from charlm.cli import console

    t = setup.trainer
    p = t.progress
    training = p.elapsed - p.eval_seconds
    rows = [
        ("run folder", str(setup.run_dir)),
        ("steps", f"{p.step:,}"),
        ("epochs", f"{p.epoch + p.window / t.steps_per_epoch:.2f}"),
        ("time", f"{p.elapsed:.1f} s: training {training:.1f} s, evaluation {p.eval_seconds:.1f} s"),
        ("wall time", f"{wall_seconds:.1f} s, with reading the corpus, start-up and saving"),
        ("tokens/s while training", f"{p.tokens / training:,.0f}" if training > 0 else "–"),
        ("last train loss", console.fmt(last_step.loss if last_step else None)),
    ]
    if t.config.time_budget is not None:
        rows.insert(4, ("time budget", f"{t.config.time_budget:g} s, counting training and evaluation"))
    best = checkpoint.read_weights_summary(setup.run_dir)  # model.safetensors: the weights sample and eval use
    if best.get("val_loss") is not None:
        rows += [
            ("best val loss (nats/token)", console.fmt(best["val_loss"])),
            ("best val perplexity", console.fmt(metrics.perplexity(best["val_loss"]), 3)),
            ("best val bpc", console.fmt(best.get("val_bpc"))),
            ("best at step", f"{best['step']:,}"),
        ]
    console.out.print(console.key_value_table("training finished", rows))
    console.err.print(f"sample it: charlm sample {setup.run_dir}")
