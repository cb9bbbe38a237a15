"""The command line: parse options, build configs, call the library, render the results.

This is the only place that turns a CharlmError into a one-line message and a
non-zero exit status (click prints ``Error: …`` on stderr and exits 1).
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import datetime
from pathlib import Path

import click

from charlm import __version__, cli_explore
from charlm.config import CELLS, OPTIMIZERS, PRECISIONS, UNKNOWN_POLICIES, ModelConfig, SampleConfig, TrainConfig, parse_duration
from charlm.errors import CharlmError, ConfigError

DEFAULT_CORPUS = "shakespeare"
DEFAULT_TIME_BUDGET = 300.0  # seconds, when no --epochs / --max-steps / --time-budget is given
MODEL_DEFAULTS, TRAIN_DEFAULTS, SAMPLE_DEFAULTS = ModelConfig(), TrainConfig(), SampleConfig()


class CharlmGroup(click.Group):
    """A click group that reports CharlmError as one line (``Error: …``) and exit status 1, no traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharlmError as e:
            raise click.ClickException(str(e)) from None


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
    cli(prog_name="charlm")


def _command_line(ctx: click.Context) -> str:
    """The command as the user gave it (arguments and explicitly set options), recorded in config.json."""
    words = ["charlm", ctx.info_name]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            words.append(str(value))
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


def _device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                        show_default=True, help="Where to run; auto picks cuda, then mps, then cpu.")(f)


def _unknown_option(f):
    return click.option("--unknown", type=click.Choice(UNKNOWN_POLICIES), default="error", show_default=True,
                        help="Characters the model never saw: error lists them; unk maps them to <unk>; skip drops them.")(f)


# ----- train ------------------------------------------------------------------------------------------------


@cli.command(epilog="""\b
Examples:
  charlm train hihello --embed 0 --hidden 16 --batch-size 1 --seq-len 6 --val-fraction 0 --max-steps 200
  charlm train shakespeare --time-budget 5m --out checkpoints/shakespeare
  charlm train my_text.txt --cell gru --layers 3 --hidden 512 --epochs 10
  charlm train --resume checkpoints/shakespeare
""")
@click.argument("corpus", required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path), help="Run folder (default: checkpoints/<corpus>-<cell>-<time>).")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run in this folder exactly where it stopped.")
@click.option("--force", is_flag=True, help="Replace an existing run in --out.")
@click.option("--val", "val_source", help="Validation text file (default: the last --val-fraction of the corpus).")
@click.option("--val-fraction", type=float, default=TRAIN_DEFAULTS.val_fraction, show_default=True, help="Last fraction of the corpus held out for validation.")
@click.option("--test-fraction", type=float, default=TRAIN_DEFAULTS.test_fraction, show_default=True, help="Fraction before the validation part held out as a test split.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace", "ignore"]), default="strict", show_default=True, help="What to do with bytes that are not UTF-8.")
@click.option("--cell", type=click.Choice(CELLS), default=MODEL_DEFAULTS.cell, show_default=True, help="Recurrent cell.")
@click.option("--layers", "num_layers", type=int, default=MODEL_DEFAULTS.num_layers, show_default=True, help="Stacked recurrent layers.")
@click.option("--hidden", "hidden_size", type=int, default=MODEL_DEFAULTS.hidden_size, show_default=True, help="Hidden units per layer.")
@click.option("--embed", "embed_size", type=int, default=MODEL_DEFAULTS.embed_size, show_default=True, help="Embedding size; 0 = one-hot input.")
@click.option("--dropout", type=float, default=MODEL_DEFAULTS.dropout, show_default=True, help="Dropout between layers and before the decoder.")
@click.option("--tie-weights", is_flag=True, help="Share the embedding and decoder matrices (needs --embed = --hidden).")
@click.option("-b", "--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size, show_default=True, help="Parallel streams per step.")
@click.option("-t", "--seq-len", "--bptt", "seq_len", type=int, default=TRAIN_DEFAULTS.seq_len, show_default=True, help="Truncated BPTT length (tokens per window).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=TRAIN_DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=float, default=TRAIN_DEFAULTS.lr, show_default=True, help="Peak learning rate.")
@click.option("--min-lr-ratio", type=float, default=TRAIN_DEFAULTS.min_lr_ratio, show_default=True, help="Cosine decay floor as a fraction of --lr.")
@click.option("--warmup", "warmup_steps", type=int, default=TRAIN_DEFAULTS.warmup_steps, show_default=True, help="Linear warmup steps.")
@click.option("--weight-decay", type=float, default=TRAIN_DEFAULTS.weight_decay, show_default=True)
@click.option("--clip", "grad_clip", type=float, default=TRAIN_DEFAULTS.grad_clip, show_default=True, help="Max gradient norm (0 = off).")
@click.option("--epochs", type=float, help="Stop after this many passes over the training text.")
@click.option("--max-steps", type=int, help="Stop after this many optimizer steps.")
@click.option("--time-budget", callback=_duration, help="Stop after this much wall-clock time, evaluation included (90s, 5m, 1h). Default 5m when no other limit is given.")
@click.option("--eval-every", type=int, default=TRAIN_DEFAULTS.eval_every, show_default=True, help="Steps between validation passes.")
@click.option("--patience", type=int, help="Stop after this many validation passes without improvement.")
@click.option("--save-every", type=int, help="Also save the resumable state every N steps (default: at each validation pass).")
@click.option("--seed", type=int, default=TRAIN_DEFAULTS.seed, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default=TRAIN_DEFAULTS.precision, show_default=True, help="auto uses bf16 autocast where the hardware has fast bf16.")
@_device_option
def train(corpus, out, resume, force, val_source, encoding_errors, save_every, device, **options):
    """Train a model on CORPUS (a text file, a folder of .txt files, or a shipped corpus name).

    The corpus is split contiguously (the last 10% validates), a character
    vocabulary is built from the training part, and the model is trained with
    stateful truncated BPTT. The run folder keeps the best and the last
    weights, the tokenizer, the configs and metrics.jsonl.
    """
    from charlm import runner

    if resume is not None:
        if corpus is not None:
            raise click.UsageError("--resume continues a run on its own corpus: drop the CORPUS argument")
        setup = runner.resume_setup(resume, device)
    else:
        model_keys = {"cell", "num_layers", "hidden_size", "embed_size", "dropout", "tie_weights"}
        model_config = ModelConfig(**{k: v for k, v in options.items() if k in model_keys})
        train_options = {k: v for k, v in options.items() if k not in model_keys}
        if train_options["epochs"] is None and train_options["max_steps"] is None and train_options["time_budget"] is None:
            train_options["time_budget"] = DEFAULT_TIME_BUDGET
        train_config = TrainConfig(**train_options)
        corpus = corpus or DEFAULT_CORPUS
        out = out or Path("checkpoints") / f"{Path(corpus).stem}-{model_config.cell}-{datetime.now():%Y%m%d-%H%M%S}"
        setup = runner.new_setup(corpus, out, force, model_config, train_config, val_source, encoding_errors, device,
                                 command=_command_line(click.get_current_context()))
    code = runner.train_and_render(setup, save_every)
    if code:
        sys.exit(code)


# ----- eval -------------------------------------------------------------------------------------------------


@cli.command(name="eval", epilog="""\b
Examples:
  charlm eval checkpoints/shakespeare
  charlm eval checkpoints/shakespeare some_other_text.txt --json
  charlm eval checkpoints/shakespeare --split test
""")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("text", required=False)
@click.option("--split", "split_name", type=click.Choice(["val", "test", "train"]), default="val", show_default=True,
              help="Which split of the run's own corpus to score when no TEXT is given.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (loss, perplexity, bpc, tokens, characters …).")
@click.option("-b", "--batch-size", type=int, default=TRAIN_DEFAULTS.eval_batch_size, show_default=True, help="Parallel streams.")
@_unknown_option
@_device_option
def eval_(checkpoint, text, split_name, as_json, batch_size, unknown, device):
    """Score a checkpoint on its validation split, or on TEXT (a file, folder or shipped corpus name).

    Prints loss (nats per token), perplexity, bits per character and speed.
    """
    from charlm import runner

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    result, label = runner.evaluate_checkpoint(checkpoint, text, split_name, batch_size, unknown, device)
    from charlm import console

    if as_json:
        click.echo(json.dumps({"checkpoint": str(checkpoint), "text": label, **result.to_dict()}))
        return
    console.out.print(console.key_value_table(f"{checkpoint} on {label}", [
        ("loss (nats/token)", console.fmt(result.loss)),
        ("perplexity", console.fmt(result.perplexity, 3)),
        ("bits per character", console.fmt(result.bpc)),
        ("tokens", f"{result.tokens:,}"),
        ("characters", f"{result.characters:,}"),
        ("tokens/s", f"{result.tokens_per_s:,.0f}"),
    ]))


# ----- sample -----------------------------------------------------------------------------------------------


@cli.command(epilog="""\b
Examples:
  charlm sample checkpoints/shakespeare
  charlm sample checkpoints/shakespeare -p "HAMLET:" -n 400 -t 0.6
  charlm sample checkpoints/shakespeare --num-samples 3 --top-p 0.9 --seed 7 > samples.txt
""")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-p", "--prompt", default=None, help="Text to continue (default: a newline, or the corpus's first character).")
@click.option("-n", "--length", type=int, default=500, show_default=True, help="Tokens to generate.")
@click.option("-t", "--temperature", type=float, default=SAMPLE_DEFAULTS.temperature, show_default=True, help="0 = greedy; below 1 = safer; above 1 = wilder.")
@click.option("-k", "--top-k", type=int, default=SAMPLE_DEFAULTS.top_k, show_default=True, help="Sample among the k likeliest tokens (0 = all).")
@click.option("--top-p", type=float, default=SAMPLE_DEFAULTS.top_p, show_default=True, help="Sample from the smallest set with this much probability (1 = all).")
@click.option("-s", "--seed", type=int, help="Seed for reproducible samples.")
@click.option("--num-samples", type=int, default=1, show_default=True, help="Independent samples, generated as one batch.")
@click.option("--no-stream", is_flag=True, help="Print when done instead of as tokens arrive.")
@_unknown_option
@_device_option
def sample(checkpoint, prompt, length, temperature, top_k, top_p, seed, num_samples, no_stream, unknown, device):
    """Generate text from a checkpoint, continuing PROMPT; only the text goes to stdout."""
    from charlm import runner

    config = SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    if length < 0:
        raise ConfigError(f"--length must be 0 or more, got {length}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    runner.sample_and_print(checkpoint, prompt, length, config, seed, num_samples, not no_stream, unknown, device)


# ----- repl -------------------------------------------------------------------------------------------------


@cli.command(epilog="""\b
Examples:
  charlm repl checkpoints/shakespeare
  printf 'ROMEO:\\nWhat light' | charlm repl checkpoints/shakespeare
""")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-k", "--top-k", "show_k", type=int, default=8, show_default=True, help="Predictions shown after each input.")
@_device_option
def repl(checkpoint, show_k, device):
    """Type text and watch the model's next-character predictions (line by line; ':help' lists commands)."""
    from charlm import runner

    if show_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {show_k}")
    runner.run_repl(checkpoint, show_k, device)


for _command in cli_explore.COMMANDS:
    cli.add_command(_command)


if __name__ == "__main__":
    main()
