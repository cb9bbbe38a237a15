"""`charlm eval`: score run folders on their own split or on one text, and print the figures side by side.

Per run: checkpoint.load ─► the ids of --text (encoded by the run's tokenizer)
or of the run's recorded split (data.recorded_split_steps) ─►
evaluate.evaluate_steps, and with --dynamic evaluate.evaluate_dynamic ─► one
row of figures; the rows become a table or --json.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import click

from charlm.cli.options import (
    complete_corpus,
    complete_run,
    device_option,
    encoding_errors_option,
    impl_override_option,
    unknown_option,
)
from charlm.config import TrainConfig
from charlm.corpus import Source
from charlm.errors import CharlmError, ConfigError, TokenizerError

# A dynamic loss this far above the static one is more than the two passes' different stream layouts explain
# (one stream against --batch-size streams).
DYNAMIC_WORSE_MARGIN = 0.01


@click.command(name="eval", epilog="""\b
Examples:
  charlm eval checkpoints/shakespeare-lstm
  charlm eval checkpoints/shakespeare-lstm --text corpora/shakespeare.txt --unknown unk --json
  charlm eval checkpoints/shakespeare-lstm --impl reference        # the same loss from the textbook cells
  charlm eval checkpoints/shakespeare-lstm --dynamic               # the model keeps learning as it reads
""")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path), shell_complete=complete_run)
@click.option("--text", "text_source", metavar="FILE", shell_complete=complete_corpus,
              help="Text to score every checkpoint on (a file, folder, shipped corpus name or json/jsonl/csv/parquet "
                   "file).")
@click.option("--split", "split_name", type=click.Choice(["val", "test", "train"]), default="val", show_default=True,
              help="Which split of each run's own corpus to score when no --text is given.")
@click.option("--split-of", "split_of", metavar="RUN", shell_complete=complete_run,
              help="Score every checkpoint on RUN's --split instead of its own: a fine-tuned run beside its parent "
                   "on the parent's validation text shows what it forgot.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (loss, perplexity, bpc, tokens, characters, unknown_characters …; null for a figure "
                   "that is infinite): an object for one checkpoint, a list for several.")
@click.option("-b", "--batch-size", type=int, default=TrainConfig.eval_batch_size, show_default=True,
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
def eval_(checkpoints, text_source, split_name, split_of, as_json, batch_size, dynamic, dynamic_lr, encoding_errors,
          unknown, impl, device):
    """Score CHECKPOINTS on their validation split, or all on the same --text.

    Prints loss (nats per token), perplexity (per token), bits per character and
    speed. Bits per character divide the total loss in bits by the characters of
    the text, so char, byte and subword models compare fairly; several
    checkpoints are printed side by side. Characters a model never saw count
    against it only under --unknown unk; the table says how many there were.

    With --dynamic every token is still predicted before the model learns from
    it, and the static loss of the same text is printed beside it.
    """
    from charlm import checkpoint, corpus
    from charlm.cli import console

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if dynamic_lr is not None and not (dynamic_lr > 0 and math.isfinite(dynamic_lr)):
        raise ConfigError(f"--dynamic-lr must be a positive number, got {dynamic_lr}")
    dynamic = dynamic or dynamic_lr is not None
    checkpoints = list(checkpoints)
    if text_source is None and len(checkpoints) == 2 and checkpoints[1].is_file():
        text_source = str(checkpoints.pop())  # the older form `charlm eval CHECKPOINT TEXT`
        console.info(f"(scoring {text_source} as --text {text_source})")
    for path in checkpoints:
        if path.is_file():
            raise ConfigError(f"{path} is a file, not a run folder: pass the text to score with --text {path}")
    if split_of is not None and text_source is not None:
        raise ConfigError("--text and --split-of both name the text to score: give one of the two")
    split_run = checkpoint.find_run(split_of) if split_of is not None else None
    source = Source((text_source,), encoding_errors=encoding_errors) if text_source is not None else None
    text = corpus.load_text(source).text if source is not None else None  # read once for every checkpoint
    console.fit_threads("evaluation", device)
    rows = []
    for path in checkpoints:
        try:
            rows.append(_evaluate(path, source, text, split_name, batch_size, unknown, device, impl, dynamic,
                                  dynamic_lr, split_run))
        except CharlmError as e:
            if len(checkpoints) == 1:
                raise
            raise type(e)(f"{path}: {e}") from None  # say which of the checkpoints
    if dynamic:
        _check_dynamic_rows(rows)
    if as_json:
        rows = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows, ensure_ascii=False))
    elif len(rows) == 1:
        _print_one(rows[0], dynamic)
    else:
        _print_comparison(rows, dynamic)


def _evaluate(run_dir: Path, source: Source | None, text: str | None, split_name: str, batch_size: int,
              unknown: str, device_name: str, impl: str | None, dynamic: bool, dynamic_lr: float | None,
              split_run: Path | None = None) -> dict:
    """Score one checkpoint on ``text`` (read from ``source``), else on the recorded split of ``split_run``
    (default: its own); returns a row: checkpoint, text, level, vocab_size, normalize, the unknown characters
    and the evaluate() figures.

    With ``dynamic`` the figures are dynamic evaluation's (``dynamic_lr``, or the cell's default), and the
    row adds the static loss and bpc of the same text for comparison."""
    from charlm import checkpoint, data, runtime
    from charlm.cli.train import read_with_progress
    from charlm.evaluate import default_dynamic_lr, evaluate_dynamic, evaluate_steps
    from charlm.tokenizers.text import skipped_chars

    device = runtime.select_device(device_name)
    ck = checkpoint.load(run_dir, device, impl=impl)
    tok = ck.tokenizer
    skipped = 0
    if source is not None:
        ids, label = tok.encode(text, unknown=unknown), source.description
        label_detail, text_sha256, n_text = label, None, len(text)  # every checkpoint scores the same text
        if len(ids) < 2:
            raise TokenizerError("the text to evaluate has fewer than 2 tokens: pass a longer text")
        # the text's characters, less those --unknown skip dropped and the first token's
        skipped = skipped_chars(tok, text) if unknown == "skip" else 0
        n_chars = len(text) - skipped - tok.count_chars(ids[:1])
    else:
        info = ck.info if split_run is None else checkpoint.read_config(split_run, checkpoint.LANGUAGE_MODEL)
        steps = data.recorded_split_steps(info["corpus"], info["train"], split_name, tok)
        (ids, n_chars) = read_with_progress(steps)
        label = f"its {split_name} split" if split_run is None else f"the {split_name} split of {split_run}"
        source_name = info["corpus"]["source"]
        source_name = Path(source_name).name if os.sep in source_name else source_name  # a file's name, or a corpus'
        label_detail = f"{split_name} split of {source_name}"  # how runs on different corpora are told apart
        text_sha256, n_text = info["corpus"].get(f"{split_name}_sha256"), n_chars
    unknown_chars = skipped + (int((ids == tok.unk_id).sum()) if tok.unk_id is not None else 0)
    amp = runtime.autocast_dtype(ck.train_config.precision, device)
    result = _with_progress(evaluate_steps(ck.model, ids, n_chars, batch_size, device=device, amp_dtype=amp),
                            f"evaluating {run_dir}")
    row = {"checkpoint": str(run_dir), "text": label, "text_detail": label_detail, "text_sha256": text_sha256,
           "level": tok.kind, "vocab_size": tok.vocab_size, "normalize": getattr(tok, "normalize", "none"),
           "unknown_policy": unknown, "unknown_characters": unknown_chars,
           "unknown_share": unknown_chars / n_text if n_text else 0.0}
    if not dynamic:
        return {**row, **result.to_dict()}
    lr = dynamic_lr if dynamic_lr is not None else default_dynamic_lr(ck.model_config.cell)
    adapted = _with_progress(evaluate_dynamic(ck.model, ids, lr, n_chars, device=device),
                             f"dynamic evaluation of {run_dir}")
    return {**row, **adapted.to_dict(), "dynamic_lr": lr, "static_loss": result.loss, "static_bpc": result.bpc}


def _with_progress(steps, what: str):
    """Drive an evaluation pass's generator (evaluate.EvalProgress reports) with a bar on a terminal, plain lines
    in a log; returns its result."""
    from charlm.cli import console

    def words(report) -> str:
        return f"{what}: {report.tokens:,} of {report.total:,} tokens, loss so far {report.loss:.4f}"

    def show(bar, report) -> None:
        if not bar.tasks:
            bar.add_task(what, total=report.total)
        bar.update(bar.task_ids[0], completed=report.tokens, description=words(report))

    return console.drive(steps, console.task_progress, show, words)


def _unknown_note(r: dict) -> str:
    """'1,234 (1.2%)': how many characters of the text the model scored as <unk> or skipped."""
    return f"{r['unknown_characters']:,} ({r['unknown_share']:.1%})" if r["unknown_characters"] else "0"


def _print_one(r: dict, dynamic: bool) -> None:
    from charlm.cli import console

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
    figures += [("tokens", f"{r['tokens']:,}"), ("characters", f"{r['characters']:,}")]
    if r["unknown_characters"]:
        scored = "skipped" if r["unknown_policy"] == "skip" else "scored as <unk>"
        figures.append((f"unknown characters, {scored}", _unknown_note(r)))
    figures.append(("tokens/s", f"{r['tokens_per_s']:,.0f}"))
    console.out.print(console.key_value_table(f"{r['checkpoint']} on {r['text']}", figures))


def _print_comparison(rows: list[dict], dynamic: bool) -> None:
    from charlm.cli import console

    same_text = len({(r["text"], r["text_sha256"]) for r in rows}) == 1  # else no best: different texts
    ranked = "static_bpc" if dynamic else "bpc"  # a weaker model gains more from adapting: rank the static figure
    # a model that met more characters it never saw than another did not make the same predictions: not ranked
    fewest = min(r["unknown_characters"] for r in rows)
    comparable = [r for r in rows if r["unknown_characters"] == fewest]
    best = min(r[ranked] for r in comparable) if same_text and comparable else None

    def bpc(r: dict, key: str) -> str:
        return console.fmt(r[key]) + (" *" if key == ranked and r[key] == best and r in comparable else "")

    columns = ["checkpoint", "level", "vocab", "loss/token", "ppl/token", "bpc", "tokens", "chars", "unknown"]
    table = [[r["checkpoint"], r["level"] + (f"+{r['normalize']}" if r["normalize"] != "none" else ""),
              f"{r['vocab_size']:,}", console.fmt(r["loss"]), console.fmt(r["perplexity"], 2),
              bpc(r, "bpc"), f"{r['tokens']:,}", f"{r['characters']:,}",
              _unknown_note(r) + (" †" if r not in comparable else "")]
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
    title = f"on {rows[0]['text']}" if same_text else "each on its own text"
    title = f"dynamic evaluation {title}" if dynamic else title
    marked = f"; * = best{' static' if dynamic else ''}" if best is not None else ""
    console.out.print(console.comparison_table(f"{title}: bits per character (bpc) compare across levels{marked}",
                                               columns, table))
    if len(comparable) < len(rows):
        console.out.print("† more characters this model never saw were scored as <unk> or skipped instead of "
                          "predicted than for the others: its figures do not compare with theirs", markup=False)


def _check_dynamic_rows(rows: list[dict]) -> None:
    """Say when dynamic evaluation had nothing to adapt with, or made a model worse (a rate too high)."""
    from charlm.cli import console
    from charlm.evaluate import DYNAMIC_SEGMENT

    for r in rows:
        if r["tokens"] <= DYNAMIC_SEGMENT:
            console.info(f"{r['checkpoint']}: the text has {r['tokens']} token(s) to score, no more than one segment "
                         f"({DYNAMIC_SEGMENT}): dynamic evaluation had nothing to learn from before scoring it")
        elif r["loss"] > r["static_loss"] + DYNAMIC_WORSE_MARGIN:
            console.warn(f"{r['checkpoint']}: dynamic evaluation scored worse than the model as it is "
                         f"({r['loss']:.4f} against {r['static_loss']:.4f} nats/token): lower --dynamic-lr "
                         f"(it was {r['dynamic_lr']:g})")
