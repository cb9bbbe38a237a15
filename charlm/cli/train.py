"""The command line: parse options, build configs, call the library, render the results.

This is the only place that turns a CharlmError into a one-line message and a
non-zero exit status (click prints ``Error: …`` on stderr and exits 1).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path

import click

from charlm import __version__, cli_diagnose, cli_explore
from charlm.cli_options import device_option, encoding_errors_option, impl_override_option, unknown_option
from charlm.config import (CELLS, DEFAULT_LR, DROPOUT_KINDS, IMPLS, OPTIMIZERS, PRECISIONS, ModelConfig, SampleConfig,
                           TrainConfig, budget_preset, parse_duration)
from charlm.corpus import Source
from charlm.errors import CharlmError, ConfigError
from charlm.tokenizer import LEVELS, NORMALIZATIONS, SUBWORD_MODELS, TokenizerSpec

DEFAULT_CORPUS = "shakespeare"
RESUME_OPTIONS = {"resume", "device", "save_every"}  # what `train --resume` may be given: the rest is the run's own
DEFAULT_TIME_BUDGET = 300.0  # seconds, when no --epochs / --max-steps / --time-budget is given
MODEL_DEFAULTS, TRAIN_DEFAULTS, SAMPLE_DEFAULTS = ModelConfig(), TrainConfig(), SampleConfig()
TOKENIZER_DEFAULTS = TokenizerSpec()


class CharlmGroup(click.Group):
    """A click group that reports problems as one line on stderr, no traceback: CharlmError as
    ``Error: …`` with exit status 1, a mistyped command line (click's usage errors) as ``Error: …
    (see 'charlm train --help')`` with click's exit status 2, and Ctrl-C as ``interrupted`` with 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharlmError as e:
            if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone reports the problem
                raise SystemExit(1) from None
            raise click.ClickException(str(e)) from None
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            click.echo(f"Error: {e.format_message()} (see '{where} --help')", err=True)
            raise SystemExit(e.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C where a command does not handle it (training does: it saves first)
            click.echo("\ninterrupted", err=True)
            raise SystemExit(130) from None


@click.group(cls=CharlmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charlm")
def cli():
    """Train, evaluate and sample character-level RNN / LSTM / GRU language models.

    \b
    Examples:
      charlm train shakespeare --time-budget 60s --out checkpoints/quick
      charlm sample checkpoints/quick --prompt "ROMEO:" --length 300
      charlm eval checkpoints/quick
    """


def main() -> None:
    try:
        cli(prog_name="charlm")
    except SystemExit as e:  # click ends every command with sys.exit(status)
        joined = sys.modules.get("charlm.distributed")  # imported (with torch) only by commands that may train
        if joined is not None and (e.code is None or isinstance(e.code, int)):
            joined.end_process(e.code or 0)  # returns unless this process joined a torchrun process group
        raise


def _command_line(ctx: click.Context) -> str:
    """The command as the user gave it (arguments and explicitly set options), recorded in config.json."""
    words = ["charlm", ctx.info_name]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
        elif getattr(param, "is_flag", False):
            words.append(param.opts[-1] if value else (param.secondary_opts or [param.opts[-1]])[0])
        else:
            raw = value
            if param.name == "time_budget":
                raw = f"{value:g}s"
            words += [param.opts[-1], str(raw)]
    return shlex.join(words)


def _duration(ctx, param, value):
    return None if value is None else parse_duration(value)


# ----- train ------------------------------------------------------------------------------------------------


@cli.command(epilog="""\b
Examples:
  charlm train hihello --embed 0 --hidden 16 --batch-size 1 --seq-len 6 --val-fraction 0 --max-steps 200
  charlm train hihello --impl reference --embed 0 --hidden 16 --batch-size 1 --seq-len 6 --val-fraction 0 --max-steps 200
  charlm train shakespeare --time-budget 5m --out checkpoints/shakespeare
  charlm train korean_bills --level subword --vocab-size 4000 --time-budget 5m
  charlm train korean_bills --normalize nfd --time-budget 5m    # Hangul as jamo: vocabulary 1,118 -> 301
  charlm train books/ --glob '*.md' notes.txt.gz --cell gru --layers 3 --hidden 512 --epochs 10
  charlm train data.jsonl --text-column body --level byte
  charlm train hf:wikitext:wikitext-2-raw-v1 --split train --text-column text
  charlm train --resume checkpoints/shakespeare
  torchrun --standalone --nproc_per_node 2 -m charlm train shakespeare --time-budget 5m   # 2 processes
""")
@click.argument("corpus", nargs=-1)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Run folder (default: checkpoints/<corpus>-<cell>-<time>, with -<level> after <corpus> for byte and subword runs).")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run in this folder exactly where it stopped, with its own corpus and settings.")
@click.option("--force", is_flag=True, help="Replace an existing run in --out.")
@click.option("--val", "val_source", help="Validation text file (default: the last --val-fraction of the corpus).")
@click.option("--val-fraction", type=float, default=TRAIN_DEFAULTS.val_fraction, show_default=True, help="Last fraction of the corpus held out for validation.")
@click.option("--test-fraction", type=float, default=TRAIN_DEFAULTS.test_fraction, show_default=True, help="Fraction before the validation part held out as a test split.")
@click.option("--glob", default="*.txt", show_default=True, help="Which files of a CORPUS folder to read (recursively).")
@encoding_errors_option
@click.option("--split", "hf_split", default="train", show_default=True, help="Split of a Hugging Face dataset (hf:NAME[:CONFIG]).")
@click.option("--text-column", default="text", show_default=True, help="Column holding the text, for datasets and json/jsonl/csv/parquet files.")
@click.option("--level", type=click.Choice(LEVELS), default=TOKENIZER_DEFAULTS.level, show_default=True, help="Tokens: characters, UTF-8 bytes (256 symbols) or sentencepiece subwords.")
@click.option("--vocab-size", type=int, default=TOKENIZER_DEFAULTS.vocab_size, show_default=True, help="Subword vocabulary size (--level subword).")
@click.option("--sp-model", "model_type", type=click.Choice(SUBWORD_MODELS), default=TOKENIZER_DEFAULTS.model_type, show_default=True, help="Subword algorithm (--level subword).")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=TOKENIZER_DEFAULTS.normalize, show_default=True, help="Unicode normal form applied before tokenizing; nfd splits Hangul into jamo (samples are recomposed to NFC).")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Keep token files here, for a corpus of any size (default: $CHARLM_CACHE_DIR or ~/.cache/charlm, for corpora of 32 MB or more).")
@click.option("--no-cache", is_flag=True, help="Tokenize in memory, never into a token cache.")
@click.option("--cell", type=click.Choice(CELLS), default=None, help="Recurrent cell.  [default: by --time-budget: lstm up to 2m, gru above; lstm for --epochs or --max-steps]")
@click.option("--layers", "num_layers", type=int, default=MODEL_DEFAULTS.num_layers, show_default=True, help="Stacked recurrent layers.")
@click.option("--hidden", "hidden_size", type=int, default=None, help="Hidden units per layer.  [default: --embed's size with --tie-weights, else by --time-budget: 256 up to 2m, 384 above; 256 for --epochs or --max-steps]")
@click.option("--embed", "embed_size", type=int, default=MODEL_DEFAULTS.embed_size, show_default=True, help="Embedding size; 0 = one-hot input.")
@click.option("--dropout", type=float, default=None, help="Dropout between layers and before the decoder.  [default: 0.1 for a --time-budget up to 10m, else 0.2]")
@click.option("--dropout-kind", type=click.Choice(DROPOUT_KINDS), default=MODEL_DEFAULTS.dropout_kind, show_default=True, help="standard: a fresh mask every time step; locked: one mask per sequence for the whole window (a 1.1-1.2x faster LSTM step on CPU).")
@click.option("--weight-drop", type=float, default=None, help="Weight drop (DropConnect): the share of the recurrent weights W_h zeroed at each training step, one mask for the whole batch.  [default: by --time-budget: 0 up to 2m, 0.1 up to 10m, 0.3 above; 0 for --epochs or --max-steps]")
@click.option("--tie-weights", is_flag=True, help="Share the embedding and decoder matrices (needs --embed = --hidden).")
@click.option("--impl", type=click.Choice(IMPLS), default=MODEL_DEFAULTS.impl, show_default=True, help="fused: torch's kernels; reference: the course equations over an explicit time loop (same weights, slower; docs/cells.md).")
@click.option("-b", "--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size, show_default=True, help="Parallel streams per step.")
@click.option("-t", "--seq-len", "--bptt", "seq_len", type=int, default=TRAIN_DEFAULTS.seq_len, show_default=True, help="Truncated BPTT length (tokens per window).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=TRAIN_DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=float, default=None, help="Peak learning rate.  [default: 1e-2 for LSTM, 3e-3 for GRU and RNN]")
@click.option("--min-lr-ratio", type=float, default=TRAIN_DEFAULTS.min_lr_ratio, show_default=True, help="Cosine decay floor as a fraction of --lr.")
@click.option("--warmup", "warmup_steps", type=int, default=TRAIN_DEFAULTS.warmup_steps, show_default=True, help="Linear warmup steps.")
@click.option("--weight-decay", type=float, default=None, help="AdamW's decoupled weight decay on the weight matrices (--optimizer sgd has none).  [default: 0.1 with a --time-budget, 0.01 when only --epochs or --max-steps bound the run]")
@click.option("--clip", "grad_clip", type=float, default=TRAIN_DEFAULTS.grad_clip, show_default=True, help="Max gradient norm (0 = off).")
@click.option("--epochs", type=float, help="Stop after this many passes over the training text.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--time-budget", callback=_duration, help="Stop after this much wall-clock time, evaluation included (90s, 5m, 1h). Default 5m when no other limit is given.")
@click.option("--eval-every", type=int, default=TRAIN_DEFAULTS.eval_every, show_default=True, help="Steps between validation passes.")
@click.option("--patience", type=int, help="Stop after this many validation passes without improvement.")
@click.option("--save-every", type=click.IntRange(min=1), help="Also save the resumable state every N steps (default: at each validation pass).")
@click.option("--seed", type=int, default=TRAIN_DEFAULTS.seed, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=TRAIN_DEFAULTS.precision, show_default=True, help="auto uses bf16 autocast where the hardware has fast bf16, and fp16 with loss scaling on GPUs without bf16.")
@click.option("--compile", is_flag=True, help="torch.compile the training forward pass (first steps are slower while it compiles).")
@click.option("--deterministic", is_flag=True, help="Bit-reproducible runs and resumes on CPU (30-40% slower: no oneDNN RNN kernels).")
@device_option
def train(corpus, out, resume, force, val_source, glob, encoding_errors, hf_split, text_column, level, vocab_size,
          model_type, normalize, cache_dir, no_cache, save_every, device, **options):
    """Train a model on CORPUS: one or more text files (gzip, bz2 and xz too), folders, shipped corpus
    names, json/jsonl/csv/parquet files or Hugging Face datasets (hf:NAME[:CONFIG]). Without CORPUS it
    trains on the shipped shakespeare corpus; without --epochs, --max-steps or --time-budget, for 5 minutes.
    Without --cell, --hidden, --dropout, --weight-drop and --weight-decay, the time budget picks them: up to
    2 minutes an LSTM of 256 units with dropout 0.1; up to 10 minutes a GRU of 384 units with dropout 0.1 and
    weight drop 0.1; beyond, the same GRU with dropout 0.2 and weight drop 0.3; all with weight decay 0.1, as
    measured best for those budgets (docs/performance.md).

    The corpus is split contiguously by characters (the last 10% validates), a
    character, byte or subword vocabulary is built from the training part only,
    and the model is trained with stateful truncated BPTT. The run folder keeps
    the best and the last weights, the tokenizer, the configs and metrics.jsonl.
    A large corpus is tokenized once into a memory-mapped token cache that later
    runs reuse.
    """
    from charlm import data, distributed, runner, tokencache

    ctx = click.get_current_context()
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    if resume is not None:
        ignored = [p for p in ctx.command.params if p.name in given - RESUME_OPTIONS]
        if corpus or ignored:
            dropped = ["CORPUS"] * bool(corpus) + [max(p.opts, key=len) for p in ignored if isinstance(p, click.Option)]
            raise click.UsageError(f"--resume continues a run with the corpus and settings it started with: drop "
                                   f"{', '.join(dropped)} (only --device and --save-every may change)")
        setup = runner.resume_setup(resume, device)
    else:
        if level != "subword" and given & {"vocab_size", "model_type"}:
            raise click.UsageError("--vocab-size and --sp-model apply to --level subword only")
        if no_cache and cache_dir is not None:
            raise click.UsageError("--cache-dir and --no-cache contradict each other: pass one")
        spec = TokenizerSpec(level=level, normalize=normalize, vocab_size=vocab_size, model_type=model_type)
        source = Source(tuple(corpus) or (DEFAULT_CORPUS,), glob, encoding_errors, hf_split, text_column)
        if options["epochs"] is None and options["max_steps"] is None and options["time_budget"] is None:
            options["time_budget"] = DEFAULT_TIME_BUDGET
        if options["tie_weights"] and options["hidden_size"] is None:
            options["hidden_size"] = options["embed_size"]  # the one width that tied weights allow
        for name, value in budget_preset(options["time_budget"]).items():
            if options[name] is None:  # not given: the setting measured best for this budget
                options[name] = value
        model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
        train_options = {k: v for k, v in options.items() if k not in model_keys}
        model_config = ModelConfig(**{k: v for k, v in options.items() if k in model_keys})
        if train_options["lr"] is None:
            train_options["lr"] = DEFAULT_LR[model_config.cell]
        train_config = TrainConfig(**train_options)
        if out is None:
            stem = re.sub(r"[^\w.-]+", "-", Path(source.inputs[0]).stem).strip("-") or "corpus"
            level_part = "" if level == "char" else f"-{level}"
            out = Path("checkpoints") / f"{stem}{level_part}-{model_config.cell}-{datetime.now():%Y%m%d-%H%M%S}"
        cache_min_bytes = 0 if cache_dir is not None else data.CACHE_MIN_BYTES
        cache_dir = None if no_cache else (cache_dir or tokencache.default_dir())
        setup = runner.new_setup(source, out, force, model_config, train_config, val_source, spec, cache_dir,
                                 cache_min_bytes, device, command=_command_line(ctx))
    finished = False
    try:
        code = runner.train_and_render(setup, save_every)
        finished = True
    finally:
        distributed.stop(setup.trainer.world, finished)
    if code:
        sys.exit(code)


# ----- eval -------------------------------------------------------------------------------------------------


@cli.command(name="eval", epilog="""\b
Examples:
  charlm eval checkpoints/shakespeare
  charlm eval checkpoints/shakespeare --text some_other_text.txt --json
  charlm eval checkpoints/shakespeare --split test
  charlm eval checkpoints/bills-char checkpoints/bills-subword      # side by side, by bits per character
  charlm eval checkpoints/shakespeare --impl reference              # the same loss from the textbook cells
  charlm eval checkpoints/shakespeare --dynamic                     # the model keeps learning as it reads
""")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--text", "text_source", metavar="FILE", help="Text to score every checkpoint on (a file, folder, shipped corpus name or json/jsonl/csv/parquet file).")
@click.option("--split", "split_name", type=click.Choice(["val", "test", "train"]), default="val", show_default=True,
              help="Which split of each run's own corpus to score when no --text is given.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (loss, perplexity, bpc, tokens, characters …; null for a figure that is infinite): an object for one checkpoint, a list for several.")
@click.option("-b", "--batch-size", type=int, default=TRAIN_DEFAULTS.eval_batch_size, show_default=True,
              help="Parallel streams (--dynamic reads one stream; this is for the static figures).")
@click.option("--dynamic", is_flag=True,
              help="Dynamic evaluation: after scoring each 64 tokens, take one learning step on them, so the model "
                   "adapts to the text as it reads it (one stream; the weights on disk are not changed).")
@click.option("--dynamic-lr", type=float, metavar="LR",
              help="Learning rate of --dynamic's steps (implies --dynamic). Default: a tenth of the cell's default "
                   "training rate (1e-3 for an LSTM, 3e-4 for a GRU or RNN).")
@encoding_errors_option
@unknown_option
@impl_override_option
@device_option
def eval_(checkpoints, text_source, split_name, as_json, batch_size, dynamic, dynamic_lr, encoding_errors, unknown,
          impl, device):
    """Score CHECKPOINTS on their validation split, or all on the same --text.

    Prints loss (nats per token), perplexity (per token), bits per character and
    speed. Bits per character divide the total loss in bits by the characters of
    the text, so char, byte and subword models compare fairly; several
    checkpoints are printed side by side.

    With --dynamic every token is still predicted before the model learns from
    it, and the static loss of the same text is printed beside it.
    """
    from charlm import checkpoint as checkpoint_mod
    from charlm import console, runner

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if dynamic_lr is not None and not (dynamic_lr > 0 and math.isfinite(dynamic_lr)):
        raise ConfigError(f"--dynamic-lr must be a positive number, got {dynamic_lr}")
    dynamic = dynamic or dynamic_lr is not None
    checkpoints = list(checkpoints)
    if text_source is None and len(checkpoints) == 2 and not checkpoint_mod.is_run_dir(checkpoints[1]):
        text_source = str(checkpoints.pop())  # the older form `charlm eval CHECKPOINT TEXT`
        console.info(f"(scoring {text_source} as --text {text_source})")
    for path in checkpoints:
        if path.is_file():
            raise ConfigError(f"{path} is a file, not a run folder: pass the text to score with --text {path}")
    source = Source((text_source,), encoding_errors=encoding_errors) if text_source is not None else None
    rows = runner.evaluate_checkpoints(checkpoints, source, split_name, batch_size, unknown, device, impl,
                                       dynamic, dynamic_lr)
    if dynamic:
        _check_dynamic_rows(rows)
    if as_json:
        rows = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, ensure_ascii=False))
        return
    if len(rows) == 1:
        r = rows[0]
        figures = [
            ("level", f"{r['level']} (vocabulary {r['vocab_size']:,})"),
            ("loss (nats/token)", console.fmt(r["loss"])),
            ("perplexity (per token)", console.fmt(r["perplexity"], 3)),
            ("bits per character", console.fmt(r["bpc"])),
        ]
        if dynamic:
            figures = [("evaluation", f"dynamic, lr {r['dynamic_lr']:g}"), *figures,
                       ("static loss (nats/token)", console.fmt(r["static_loss"])),
                       ("static bits per character", console.fmt(r["static_bpc"]))]
        console.out.print(console.key_value_table(f"{r['checkpoint']} on {r['text']}", [
            *figures,
            ("tokens", f"{r['tokens']:,}"),
            ("characters", f"{r['characters']:,}"),
            ("tokens/s", f"{r['tokens_per_s']:,.0f}"),
        ]))
        return
    same_text = len({(r["text"], r["text_sha256"]) for r in rows}) == 1  # else no best: different texts
    ranked = "static_bpc" if dynamic else "bpc"  # models compare by their static figure (docs/performance.md)
    best = min(r[ranked] for r in rows) if same_text else None

    def bpc(r: dict, key: str) -> str:
        return console.fmt(r[key]) + (" *" if key == ranked and r[key] == best else "")

    columns = ["checkpoint", "level", "vocab", "loss/token", "ppl/token", "bpc", "tokens", "chars"]
    table = [[r["checkpoint"], r["level"] + (f"+{r['normalize']}" if r["normalize"] != "none" else ""),
              f"{r['vocab_size']:,}", console.fmt(r["loss"]), console.fmt(r["perplexity"], 2),
              bpc(r, "bpc"), f"{r['tokens']:,}", f"{r['characters']:,}"]
             for r in rows]
    if dynamic:
        at = columns.index("bpc") + 1
        columns.insert(at, "static bpc")
        for row, r in zip(table, rows):
            row.insert(at, bpc(r, "static_bpc"))
    if not same_text:
        columns.insert(1, "text")
        for row, r in zip(table, rows):
            row.insert(1, r["text_detail"])
    title = ("dynamic evaluation " if dynamic else "") + (f"on {rows[0]['text']}" if same_text else "each on its own text")
    marked = f"; * = best{' static' if dynamic else ''}" if same_text else ""
    console.out.print(console.comparison_table(f"{title}: bits per character (bpc) compare across levels{marked}",
                                               columns, table))


# A dynamic loss this far above the static one is more than the two passes' different stream layouts explain
# (one stream against --batch-size streams: about 0.001 nats on the texts measured).
DYNAMIC_WORSE_MARGIN = 0.01


def _check_dynamic_rows(rows: list[dict]) -> None:
    """Say when dynamic evaluation had nothing to adapt with, or made a model worse (a rate too high)."""
    from charlm import console
    from charlm.evaluate import DYNAMIC_SEGMENT

    for r in rows:
        if r["tokens"] <= DYNAMIC_SEGMENT:
            console.info(f"{r['checkpoint']}: the text has {r['tokens']} token(s) to score, no more than one segment "
                         f"({DYNAMIC_SEGMENT}): dynamic evaluation had nothing to learn from before scoring it")
        elif r["loss"] > r["static_loss"] + DYNAMIC_WORSE_MARGIN:
            console.warn(f"{r['checkpoint']}: dynamic evaluation scored worse than the model as it is "
                         f"({r['loss']:.4f} against {r['static_loss']:.4f} nats/token): lower --dynamic-lr "
                         f"(it was {r['dynamic_lr']:g})")


# ----- sample -----------------------------------------------------------------------------------------------


@cli.command(epilog="""\b
Examples:
  charlm sample checkpoints/shakespeare
  charlm sample checkpoints/shakespeare -p "HAMLET:" -n 400 -t 0.6
  charlm sample checkpoints/shakespeare --num-samples 3 --top-p 0.9 --seed 7 > samples.txt
  charlm sample checkpoints/shakespeare -p "HAMLET:" -t 0 --impl reference    # same text, textbook cells
""")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@click.option("-p", "--prompt", default=None, help="Text to continue (default: a newline, or the corpus's first character).")
@click.option("-n", "--length", type=int, default=500, show_default=True, help="Tokens to generate, and a few more if the last one began a character or a Hangul syllable (byte, subword or --normalize nfd models).")
@click.option("-t", "--temperature", type=float, default=SAMPLE_DEFAULTS.temperature, show_default=True, help="0 = greedy; below 1 = safer; above 1 = wilder.")
@click.option("-k", "--top-k", type=int, default=SAMPLE_DEFAULTS.top_k, show_default=True, help="Sample among the k likeliest tokens (0 = all).")
@click.option("--top-p", type=float, default=SAMPLE_DEFAULTS.top_p, show_default=True, help="Sample from the smallest set with this much probability (1 = all).")
@click.option("-s", "--seed", type=int, help="Seed for reproducible samples.")
@click.option("--num-samples", type=int, default=1, show_default=True, help="Independent samples, generated as one batch.")
@click.option("--no-stream", is_flag=True, help="Print when done instead of as tokens arrive.")
@unknown_option
@impl_override_option
@device_option
def sample(checkpoint, prompt, length, temperature, top_k, top_p, seed, num_samples, no_stream, unknown, impl, device):
    """Generate text from a checkpoint, continuing PROMPT; only the text goes to stdout.

    Without CHECKPOINT, the pretrained Shakespeare model shipped with charlm is used.
    """
    from charlm import runner

    config = SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    if length < 0:
        raise ConfigError(f"--length must be 0 or more, got {length}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    runner.sample_and_print(checkpoint, prompt, length, config, seed, num_samples, not no_stream, unknown, device, impl)


# ----- repl -------------------------------------------------------------------------------------------------


@cli.command(epilog="""\b
Examples:
  charlm repl checkpoints/shakespeare
  charlm repl checkpoints/shakespeare --line -t 0.6 --seed 7
  printf 'ROMEO:\\\\nWhat light\\n:gen 100\\n' | charlm repl checkpoints/shakespeare
  charlm repl checkpoints/shakespeare --impl reference
""")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@click.option("-k", "--top-k", "show_k", type=int, default=8, show_default=True, help="Predictions shown (:k N changes it).")
@click.option("--line", "line_mode", is_flag=True, help="Read whole lines even on a terminal that can redraw (no live panel).")
@click.option("-t", "--temperature", type=float, default=SAMPLE_DEFAULTS.temperature, show_default=True, help="For :gen (:temp T changes it).")
@click.option("--top-p", type=float, default=SAMPLE_DEFAULTS.top_p, show_default=True, help="For :gen (:topp P changes it).")
@click.option("-s", "--seed", type=int, default=0, show_default=True, help="For :gen (:seed S changes it).")
@unknown_option
@impl_override_option
@device_option
def repl(checkpoint, show_k, line_mode, temperature, top_p, seed, unknown, impl, device):
    """Type text and watch the model's next-token predictions change with every key (':help' lists commands).

    Without CHECKPOINT, the pretrained Shakespeare model shipped with charlm is used.

    On a terminal the predictions follow each key in a panel under the input;
    on a dumb terminal, or with --line, they follow each line; with piped
    input they are printed as one plain line per input line, for scripts.
    """
    from charlm import runner

    if show_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {show_k}")
    config = SampleConfig(temperature=temperature, top_p=top_p)
    refused = runner.run_repl(checkpoint, show_k, device, mode="line" if line_mode else "auto", sample_config=config,
                              seed=seed, unknown=unknown, impl=impl)
    if refused:  # piped input: the session went on past each one, but a script must be told
        sys.exit(1)


for _command in cli_explore.COMMANDS + cli_diagnose.COMMANDS:
    cli.add_command(_command)


if __name__ == "__main__":
    main()
