"""`charlm classify train|eval|predict`: many-to-one text classification with a recurrent encoder.

train:    labelled.read ─► stratified train/validation split ─► a tokenizer (fitted, or --from a language
          model's, grown) ─► classify.TextClassifier (--from: the model's embedding and layers) ─►
          classify.ClassifierTrainer.run(), rendered; the run folder as `charlm train` writes one
eval:     checkpoint.load_classifier ─► classify.evaluate on --data ─► accuracy, macro-F1, per class, confusion
predict:  checkpoint.load_classifier ─► classify.predict on --text or stdin lines ─► label and probabilities
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from charlm.cli import console
from charlm.cli.options import command_line, complete_run, device_option, duration, encoding_errors_option, given
from charlm.config import (
    CELLS,
    CLASSIFY_PRESET,
    FINE_TUNE,
    POOLINGS,
    PRECISIONS,
    ClassifierConfig,
    ModelConfig,
    TrainConfig,
)
from charlm.errors import CheckpointError, ConfigError
from charlm.tokenizers import LEVELS, NORMALIZATIONS

CLF = ClassifierConfig()
# what a classifier gets for an option left out: CLASSIFY_PRESET, else the configs' own defaults
_DEFAULTS = {**ModelConfig().to_dict(), **TrainConfig().to_dict(), **CLASSIFY_PRESET}


def _default(name: str, from_lm: str = "") -> str:
    """'[default: 256; --from: the model's]': an option's default as resolve_classifier gives it, for --help."""
    value = _DEFAULTS[name]
    return f"  [default: {value:g}{from_lm}]" if isinstance(value, float) else f"  [default: {value}{from_lm}]"


_FROM_LM = "; --from: the model's"
RESUME_OPTIONS = {"resume", "device"}


def data_options(f):
    """Where labelled examples come from: shared by train and eval."""
    for option in reversed([
        click.option("--text-column", default="text", show_default=True, help="Column holding the text (tables, hf:)."),
        click.option("--label-column", default="label", show_default=True, help="Column holding the label."),
        click.option("--labels", "labels_spec", metavar="A,B,…",
                     help="Keep only these labels, e.g. pos,neg beside an unlabelled unsup/ folder."),
        click.option("--glob", default="*.txt", show_default=True,
                     help="Which files of a label's folder to read (folder layout)."),
        click.option("--skip-empty", is_flag=True, help="Drop examples with an empty text (an error otherwise)."),
        encoding_errors_option,
    ]):
        f = option(f)
    return f


def _labels(spec: str | None) -> tuple[str, ...] | None:
    return tuple(label.strip() for label in spec.split(",") if label.strip()) if spec else None


@click.group(epilog="""\b
Examples:
  charlm classify train corpora/brackets.csv --time-budget 30s --out runs/brackets
  charlm classify eval runs/brackets
  charlm classify predict runs/brackets --text "(()())" --text "(()"
""")
def classify():
    """Text classification (many-to-one): a recurrent encoder reads a text, a linear head names its class.

    DATA is a csv, json, jsonl or parquet file (--text-column, --label-column), a folder with one subfolder
    per label (the IMDB aclImdb/train/pos|neg layout), or a Hugging Face dataset hf:NAME[:CONFIG] (--split).
    """


# ----- train ------------------------------------------------------------------------------------------------


@classify.command(name="train", epilog="""\b
Examples:
  charlm classify train corpora/brackets.csv --time-budget 30s --out runs/brackets
  charlm classify train corpora/brackets.csv --cell lstm --bidirectional --pool last --time-budget 30s \\
      --out runs/brackets-bi
  charlm classify train corpora/bills_committee_small.csv --label-column committee --normalize nfd \\
      --time-budget 30s --out runs/committee
  charlm classify train corpora/bills_committee_small.csv --label-column committee \\
      --from base --time-budget 30s --out runs/committee-lm
""")
@click.argument("data", required=False)
@data_options
@click.option("--split", "hf_split", default="train", show_default=True, help="Split of a Hugging Face dataset.")
@click.option("--val-fraction", type=float, default=CLF.val_fraction, show_default=True,
              help="Share of every class held out to validate.")
@click.option("-o", "--out", type=click.Path(path_type=Path),
              help="Run folder (default: checkpoints/<data>-classifier-<time>).")
@click.option("--force", is_flag=True, help="Replace an existing run in --out.")
@click.option("--resume", type=click.Path(path_type=Path), shell_complete=complete_run,
              help="Continue the classifier run in this folder exactly where it stopped.")
@click.option("--from", "parent_run", metavar="RUN", shell_complete=complete_run,
              help="Start the encoder from a language-model run (its tokenizer, embedding and recurrent layers; "
                   "a shipped model by name: base).")
@click.option("--cell", type=click.Choice(CELLS), help="Recurrent cell." + _default("cell", _FROM_LM))
@click.option("--layers", "num_layers", type=int, help="Recurrent layers." + _default("num_layers", _FROM_LM))
@click.option("--hidden", "hidden_size", type=int, help="Units per layer." + _default("hidden_size", _FROM_LM))
@click.option("--embed", "embed_size", type=int,
              help="Embedding size, 0 = one-hot." + _default("embed_size", _FROM_LM))
@click.option("--dropout", type=float, help="Dropout between layers." + _default("dropout", _FROM_LM))
@click.option("--weight-drop", type=float, help="Weight drop on W_h." + _default("weight_drop", _FROM_LM))
@click.option("--bidirectional", is_flag=True, help="A second encoder reads each text backwards; the two are joined.")
@click.option("--pool", "pooling", type=click.Choice(POOLINGS), default=CLF.pooling, show_default=True,
              help="What the head sees: the last output (the course's), the mean, the max, or all three (ULMFiT).")
@click.option("--grad-windows", type=int, default=CLF.grad_windows, show_default=True,
              help="Windows at the end of each text that gradients flow through (BPT3C).")
@click.option("--head-dropout", type=float, default=CLF.head_dropout, show_default=True,
              help="Dropout on the pooled features.")
@click.option("--discriminative", type=float, default=CLF.discriminative, show_default=True,
              help="Divide the learning rate by this once per encoder layer down (ULMFiT: 2.6; 1 = one rate).")
@click.option("--gradual-unfreeze", is_flag=True,
              help="Train the head first, then unfreeze one encoder layer more at each stage (ULMFiT).")
@click.option("--level", type=click.Choice(LEVELS), default="char", show_default=True, help="Tokens (from scratch).")
@click.option("--normalize", type=click.Choice(NORMALIZATIONS), default="none", show_default=True,
              help="Unicode normal form; nfd reads Hangul as jamo (from scratch).")
@click.option("--vocab-size", type=int, default=4000, show_default=True, help="Subword vocabulary (--level subword).")
@click.option("-b", "--batch-size", type=int, help="Texts per step." + _default("batch_size"))
@click.option("-t", "--window", "seq_len", type=int, help="Tokens read at once, the state carried between windows."
                                                              + _default("seq_len"))
@click.option("--lr", type=float,
              help=f"Peak learning rate.  [default: by --cell; --from: {FINE_TUNE.lr_fraction:g}x the model's]")
@click.option("--warmup", "warmup_steps", type=int, help="Linear warm-up steps." + _default("warmup_steps"))
@click.option("--weight-decay", type=float, help="AdamW's weight decay." + _default("weight_decay"))
@click.option("--epochs", type=float, help="Stop after this many passes over the training examples.")
@click.option("--max-steps", type=int, help="Stop after this many steps.")
@click.option("--time-budget", callback=duration,
              help="Stop after this much time of training and evaluation: 90s, 5m (a bare number is seconds). "
                   "Default 5m when no other limit is given.")
@click.option("--eval-every", type=int, help="Steps between validation passes." + _default("eval_every"))
@click.option("--patience", type=int, help="Stop after this many validation passes without improvement.")
@click.option("--seed", type=int, help="Seed of the split, the weights and the order of batches." + _default("seed"))
@click.option("--precision", type=click.Choice(PRECISIONS), help="auto: bf16 autocast where it is fast.")
@device_option
def train(data, text_column, label_column, labels_spec, glob, skip_empty, encoding_errors, hf_split, val_fraction,
          out, force, resume, parent_run, bidirectional, pooling, grad_windows, head_dropout, discriminative,
          gradual_unfreeze, level, normalize, vocab_size, device, **options):
    """Train a classifier on DATA: a labelled table, folder or dataset (see `charlm classify --help`).

    A share of every class is held out to validate; the counts per class and the majority-class accuracy
    (the baseline every figure is printed against) come first. With --from a language-model run, the
    encoder starts from the model: its tokenizer (grown by the characters it never saw), embedding and
    recurrent layers; the backward encoder of --bidirectional starts from its embedding only.
    """
    ctx = click.get_current_context()
    set_by_user = given(ctx)
    started = time.monotonic()
    if resume is not None:
        extra = set_by_user - RESUME_OPTIONS
        if data or extra:
            raise click.UsageError("--resume continues a run with the data and settings it started with: drop "
                                   "DATA and the other options (only --device may change)")
        setup = _resumed(resume, device)
    else:
        if data is None:
            raise click.UsageError("give DATA (a labelled csv/json/jsonl/parquet file, a folder of label "
                                   "subfolders, or hf:NAME), or --resume RUN")
        clf = ClassifierConfig(pooling=pooling, bidirectional=bidirectional, grad_windows=grad_windows,
                               head_dropout=head_dropout, val_fraction=val_fraction, discriminative=discriminative,
                               gradual_unfreeze=gradual_unfreeze)
        source = {"source": data, "text_column": text_column, "label_column": label_column, "split": hf_split,
                  "labels": list(_labels(labels_spec) or []), "glob": glob, "skip_empty": skip_empty,
                  "encoding_errors": encoding_errors}
        settings = {k: v for k, v in options.items() if k in set_by_user and v is not None}
        tokenizer_options = {"level": level, "normalize": normalize, "vocab_size": vocab_size}
        setup = _new(source, settings, clf, tokenizer_options, set_by_user, parent_run, out, force, device,
                     command_line(ctx))
    code = _train_and_render(setup, started)
    if code:
        sys.exit(code)


@dataclasses.dataclass
class _Setup:
    run_dir: Path
    trainer: object  # classify.ClassifierTrainer
    majority: tuple[str, float]  # the training set's most frequent label, and its share of the validation set


def _read(source: dict):
    from charlm import labelled

    examples = labelled.read(source["source"], source["text_column"], source["label_column"], source["split"],
                             tuple(source["labels"]) or None, source["skip_empty"], source["encoding_errors"],
                             source["glob"])
    counts = examples.counts()
    if len(counts) < 2:
        fix = "--label-column" if not Path(source["source"]).is_dir() else "its label subfolders"
        raise labelled.DataError(f"{source['source']} has one class only ({next(iter(counts))!r}, "
                                 f"{len(examples):,} examples): a classifier needs two or more; check {fix}")
    return examples


def _new(source: dict, settings: dict, clf: ClassifierConfig, tokenizer_options: dict, set_by_user: set[str],
         parent_run: str | None, out: Path | None, force: bool, device_name: str, command: str) -> _Setup:
    import numpy as np

    from charlm import checkpoint, labelled, runtime, transfer
    from charlm.classify import TextClassifier, encode_texts
    from charlm.config import resolve_classifier
    from charlm.tokenizers import TokenizerSpec

    device = runtime.select_device(device_name)
    if out is not None:
        checkpoint.check_out_dir(out, force)
    parent = transfer.load_parent(parent_run) if parent_run is not None else None
    if parent is not None and out is not None:
        transfer.check_out(parent, out)
    if parent is not None:
        given_options = {**settings, **tokenizer_options}
        transfer.check_options(parent, {name: given_options[name] for name in set_by_user if name in given_options})
    examples = _read(source)
    seed = settings.get("seed", _DEFAULTS["seed"])
    train_rows, val_rows = labelled.stratified_split(examples, clf.val_fraction, seed)
    train_set, val_set = examples.subset(train_rows), examples.subset(val_rows)
    if not len(val_set):
        raise labelled.DataError(f"{source['source']} is too small to hold out --val-fraction {clf.val_fraction:g} "
                                 "of any class: pass more examples or a larger --val-fraction")
    model_config, train_config = resolve_classifier(settings, parent.configs() if parent is not None else None)
    train_config = dataclasses.replace(train_config, precision=runtime.resolve_precision(train_config.precision,
                                                                                         device))
    joined = "\n".join(train_set.texts)
    if parent is not None:
        tokenizer, added = transfer.grow_tokenizer(parent.tokenizer, joined)
    else:
        tokenizer, added = TokenizerSpec(**tokenizer_options).fit(joined), ""
    labels = list(train_set.counts())
    labels.sort()
    if out is None:
        name = Path(source["source"].removeprefix("hf:").replace(":", "-"))
        out = checkpoint.default_run_dir(str(name), tokenizer.kind, "classifier", datetime.now())
    checkpoint.check_out_dir(out, force)
    checkpoint.clear_old_run(out)
    data_info = {**source, "examples": len(examples), "sha256": examples.fingerprint(),
                 "train_counts": train_set.counts(), "val_counts": val_set.counts()}
    checkpoint.create_classifier_run(out, tokenizer, model_config, train_config, clf.to_dict(), labels, data_info,
                                     command, parent.lineage() if parent is not None else None)
    runtime.seed_everything(train_config.seed)
    model = TextClassifier(model_config, tokenizer.vocab_size, len(labels), clf)
    train_ids, val_ids = encode_texts(tokenizer, train_set.texts), encode_texts(tokenizer, val_set.texts)
    if parent is not None:
        transfer.transplant(model.encoder, parent, tokenizer, np.concatenate(train_ids))
        if model.backward_encoder is not None and model.config.embed_size:  # read backwards: only the embedding
            model.backward_encoder.embedding.weight.data.copy_(model.encoder.embedding.weight.data)
        kept = f", {transfer.describe_added(added)} added" if added else ""
        console.info(f"starting the encoder from {parent.given} (step {parent.summary.get('step', '?')}): "
                     f"vocabulary {parent.tokenizer.vocab_size:,}{kept}")
    return _setup(out, model, train_set, val_set, train_ids, val_ids, labels, train_config, clf, device)


def _setup(out, model, train_set, val_set, train_ids, val_ids, labels, train_config, clf, device) -> _Setup:
    from charlm import runtime
    from charlm.classify import ClassifierTrainer

    index = {label: i for i, label in enumerate(labels)}
    train_y = [index[label] for label in train_set.labels]
    val_y = [index[label] for label in val_set.labels]
    runtime.tune_allocator()
    trainer = ClassifierTrainer(model, train_ids, train_y, val_ids, val_y, labels, train_config, clf, device,
                                runtime.autocast_dtype(train_config.precision, device))
    top = max(train_set.counts().items(), key=lambda kv: kv[1])[0]
    majority = (top, sum(label == top for label in val_set.labels) / len(val_set))
    _print_balance(train_set, val_set, labels, majority)
    return _Setup(out, trainer, majority)


def _resumed(run_dir: Path, device_name: str) -> _Setup:
    from charlm import checkpoint, runtime
    from charlm.classify import encode_texts

    device = runtime.select_device(device_name)
    folder = checkpoint.find_run(run_dir)
    info = checkpoint.read_config(folder, checkpoint.CLASSIFIER)  # cheap checks first
    if not (folder / checkpoint.LAST_FILE).exists():
        raise CheckpointError(f"{run_dir} has no {checkpoint.LAST_FILE}: the run saved no resumable state yet; "
                              f"start it again: charlm classify train {info['data']['source']} --out {run_dir} "
                              "--force (with its other options)")
    ck = checkpoint.load_classifier(run_dir, weights=checkpoint.LAST_FILE)  # config, tokenizer, last weights
    clf = ClassifierConfig.from_dict(ck.classifier)
    train_set, val_set = _run_split(ck, clf, "restore them to resume")
    setup = _setup(ck.run_dir, ck.model, train_set, val_set, encode_texts(ck.tokenizer, train_set.texts),
                   encode_texts(ck.tokenizer, val_set.texts), ck.labels, ck.train_config, clf, device)
    state = checkpoint.load_training_state(ck.run_dir, setup.trainer.model)
    setup.trainer.restore(state.progress, state.optimizer_state, state.rngs)
    p = setup.trainer.progress
    if p.done:
        raise CheckpointError(f"the run in {run_dir} already finished ({p.stop_reason}): nothing to resume")
    checkpoint.truncate_metrics(ck.run_dir, p.step)
    console.info(f"resuming {run_dir} at step {p.step:,} (epoch {p.epoch})")
    return setup


def _run_split(ck, clf: ClassifierConfig, fix: str):
    """The training and validation examples of the run ``ck`` (a loaded classifier, ``clf`` its config), rebuilt
    from its recorded source, split and seed; an error ending in ``fix`` if the source's examples changed since
    it trained."""
    from charlm import labelled

    source = ck.info["data"]
    examples = _read(source)
    if examples.fingerprint() != source["sha256"]:
        raise CheckpointError(f"the examples of {source['source']} changed since the run started: {fix}")
    train_rows, val_rows = labelled.stratified_split(examples, clf.val_fraction, ck.train_config.seed)
    return examples.subset(train_rows), examples.subset(val_rows)


def _print_balance(train_set, val_set, labels: list[str], majority: tuple[str, float]) -> None:
    train_counts, val_counts = train_set.counts(), val_set.counts()
    rows = [[label, f"{train_counts.get(label, 0):,}", f"{train_counts.get(label, 0) / len(train_set):.1%}",
             f"{val_counts.get(label, 0):,}"] for label in labels]
    console.err.print(console.comparison_table(
        f"{len(train_set):,} training and {len(val_set):,} validation examples; predicting the majority class "
        f"({majority[0]}) scores accuracy {majority[1]:.3f} on validation", ["label", "train", "share", "val"],
        rows))


def _eval_line(report, majority: tuple[str, float]) -> str:
    r = report.result
    return (f"step {report.step:,} epoch {report.epoch:.2f} val loss {r.loss:.4f} accuracy {r.accuracy:.4f} "
            f"macro-F1 {r.macro_f1:.4f} (majority {majority[1]:.4f}) elapsed {console.duration(report.elapsed)}"
            f"{' (best)' if report.improved else ''}")


def _train_and_render(setup: _Setup, started: float) -> int:

    from charlm import checkpoint, runtime
    from charlm.classify import ClassifyEvalReport
    from charlm.cli.train import EXIT_INTERRUPTED, NoBar, StopOnSignal
    from charlm.train import StepReport

    trainer, run_dir = setup.trainer, setup.run_dir
    p = trainer.progress
    model = trainer.model
    threads = runtime.ThreadFitter("training") if trainer.device.type == "cpu" else None
    note = threads.start() if threads else None
    if note:
        console.info(note)
    m, c, clf = model.config, trainer.config, trainer.clf
    console.info(f"[bold]{run_dir}[/]: {m.cell.upper()} {m.num_layers}×{m.hidden_size}"
                 f"{' bidirectional' if clf.bidirectional else ''}, {clf.pooling} pooling, "
                 f"{sum(t.numel() for t in model.parameters()):,} parameters, {len(trainer.labels)} classes, "
                 f"batch {c.batch_size} texts × window {c.seq_len}, lr {c.lr:g}"
                 f"{f', discriminative {clf.discriminative:g}' if clf.discriminative > 1 else ''}"
                 f"{', gradual unfreezing' if clf.gradual_unfreeze else ''}, device {trainer.device.type}, "
                 f"{c.precision}")

    def save_state() -> dict:
        start = time.perf_counter()
        checkpoint.save_training_state(run_dir, model, trainer.optimizer, None, trainer.resumable_progress())
        return {"type": "save", "step": p.step, "seconds": time.perf_counter() - start}

    best_loss = checkpoint.read_weights_summary(run_dir).get("val_loss", math.inf)
    live = console.err.is_terminal
    bar = console.training_progress() if live else None
    fields = dict(step=p.step, loss="–", val="–", ppl="–", bpc="–", rate="–")
    try:
        with StopOnSignal(trainer), (bar or NoBar()):
            task = bar.add_task("classify", total=1000, **fields) if bar else None
            for report in trainer.run():
                if isinstance(report, StepReport):
                    fields.update(step=f"{report.step:,}", loss=console.fmt(report.loss, 3),
                                  rate=f"{report.tokens_per_s:,.0f}")
                    if bar:
                        bar.update(task, completed=1000 * report.progress, **fields)
                    checkpoint.append_metrics(run_dir, {"type": "train", **dataclasses.asdict(report)})
                    if threads:
                        note = threads.observe(report.tokens_per_s)
                        if note:
                            console.info(note)
                elif isinstance(report, ClassifyEvalReport):
                    r = report.result
                    fields.update(val=console.fmt(r.loss, 3), ppl=f"acc {r.accuracy:.3f}", bpc=f"F1 {r.macro_f1:.3f}")
                    if bar:
                        bar.update(task, **fields)
                    else:
                        console.plain(_eval_line(report, setup.majority))
                    checkpoint.append_metrics(run_dir, {"type": "val", "step": report.step, "epoch": report.epoch,
                                                        "elapsed": report.elapsed, "improved": report.improved,
                                                        "loss": r.loss, "accuracy": r.accuracy,
                                                        "macro_f1": r.macro_f1})
                    if report.improved and r.loss < best_loss:
                        best_loss = r.loss
                        checkpoint.save_weights(run_dir, model, {"step": report.step, "val_loss": r.loss,
                                                                 "val_accuracy": r.accuracy,
                                                                 "val_macro_f1": r.macro_f1})
                    checkpoint.append_metrics(run_dir, save_state())
    except KeyboardInterrupt:
        console.err.print(f"aborted at once; the last saved checkpoint in {run_dir} is intact. "
                          f"Resume with: charlm classify train --resume {run_dir}")
        return EXIT_INTERRUPTED
    checkpoint.append_metrics(run_dir, save_state())
    if best_loss == math.inf:  # stopped before the first evaluation: the last weights are the ones to use
        checkpoint.save_weights(run_dir, model, {"step": p.step})
    if not p.done:
        console.err.print(f"stopped by {p.stop_reason} at step {p.step:,}; the run is saved. "
                          f"Resume with: charlm classify train --resume {run_dir}")
        return EXIT_INTERRUPTED
    best = checkpoint.read_weights_summary(run_dir)
    rows = [("run folder", str(run_dir)), ("steps", f"{p.step:,}"),
            ("epochs", f"{p.epoch + p.window / trainer.steps_per_epoch:.2f}"),
            ("time", f"{p.elapsed:.1f} s: training {p.elapsed - p.eval_seconds:.1f} s, evaluation "
                     f"{p.eval_seconds:.1f} s"),
            ("wall time", f"{time.monotonic() - started:.1f} s, with reading the data, start-up and saving"),
            ("majority-class accuracy", f"{setup.majority[1]:.4f} ({setup.majority[0]})")]
    if best.get("val_loss") is not None:
        rows += [("best val accuracy", f"{best['val_accuracy']:.4f}"), ("best val macro-F1",
                                                                        f"{best['val_macro_f1']:.4f}"),
                 ("best val loss", f"{best['val_loss']:.4f}"), ("best at step", f"{best['step']:,}")]
    console.out.print(console.key_value_table("training finished", rows))
    console.err.print(f"evaluate it: charlm classify eval {run_dir} --data TEST")
    return 0


# ----- eval -------------------------------------------------------------------------------------------------


@classify.command(name="eval", epilog="""\b
Examples:
  charlm classify train corpora/brackets.csv --time-budget 30s --out runs/brackets
  charlm classify eval runs/brackets
  charlm classify eval runs/brackets --data corpora/brackets.csv --json
""")
@click.argument("run_dir", type=click.Path(path_type=Path), shell_complete=complete_run)
@click.option("--data", help="Labelled examples to score: a table, a folder of label subfolders or hf:NAME. "
                             "[default: the examples the run held out for validation, rebuilt from its data]")
@data_options
@click.option("--split", "hf_split", default="test", show_default=True, help="Split of a Hugging Face dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead.")
@device_option
def eval_(run_dir, data, text_column, label_column, labels_spec, glob, skip_empty, encoding_errors, hf_split, as_json,
          device):
    """Score a classifier on labelled examples (by default those its run held out for validation): accuracy,
    macro-F1, a table per class and the confusion matrix, beside the accuracy of always predicting the training
    set's majority class."""
    from charlm import checkpoint, labelled, runtime
    from charlm.classify import encode_texts, evaluate

    device = runtime.select_device(device)
    ck = checkpoint.load_classifier(run_dir, device)
    if data is None:
        _, examples = _run_split(ck, ClassifierConfig.from_dict(ck.classifier),
                                 "pass the examples to score with --data")
        data = f"{ck.info['data']['source']} (held out for validation)"
    else:
        examples = labelled.read(data, text_column, label_column, hf_split, _labels(labels_spec), skip_empty,
                                 encoding_errors, glob)
        labelled.check_labels(ck.labels, examples, data)
    console.fit_threads("evaluation", str(device))
    index = {label: i for i, label in enumerate(ck.labels)}
    result = evaluate(ck.model, encode_texts(ck.tokenizer, examples.texts), [index[label] for label in examples.labels],
                      ck.labels, ck.train_config.seq_len, device=device,
                      amp_dtype=runtime.autocast_dtype(ck.train_config.precision, device))
    counts = ck.info["data"]["train_counts"]
    top = max(counts.items(), key=lambda kv: kv[1])[0]
    majority = sum(label == top for label in examples.labels) / len(examples)
    if as_json:
        click.echo(json.dumps({"checkpoint": str(run_dir), "data": data, **result.to_dict(),
                               "majority_label": top, "majority_accuracy": majority}, ensure_ascii=False))
        return
    console.out.print(console.key_value_table(f"{run_dir} on {data}", [
        ("examples", f"{result.examples:,}"),
        ("accuracy", f"{result.accuracy:.4f}"),
        ("macro-F1", f"{result.macro_f1:.4f}"),
        ("majority-class accuracy", f"{majority:.4f} (always {top})"),
        ("loss (nats/example)", f"{result.loss:.4f}"),
        ("texts/s", f"{result.examples / result.seconds:,.0f}" if result.seconds else "–"),
    ]))
    console.out.print(console.comparison_table("per class", ["label", "precision", "recall", "F1", "support"], [
        [row["label"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", f"{row['support']:,}"]
        for row in result.per_class]))
    short = [label[:12] for label in ck.labels]
    console.out.print(console.comparison_table("confusion matrix (rows: true label, columns: predicted)",
                                               ["true \\ predicted", *short],
                                               [[label, *[f"{n:,}" for n in row]]
                                                for label, row in zip(short, result.confusion)]))


# ----- predict ----------------------------------------------------------------------------------------------


@classify.command(epilog="""\b
Examples:
  charlm classify train corpora/brackets.csv --time-budget 30s --out runs/brackets
  charlm classify predict runs/brackets --text "(()())" --text "(()"
  printf '()()\\n((\\n' | charlm classify predict runs/brackets --json
""")
@click.argument("run_dir", type=click.Path(path_type=Path), shell_complete=complete_run)
@click.option("--text", "texts", multiple=True, help="A text to classify (repeatable); default: one per line of stdin.")
@click.option("-k", "--top", type=int, default=3, show_default=True, help="Classes shown per text, likeliest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text: its label and every probability.")
@device_option
def predict(run_dir, texts, top, as_json, device):
    """Name the class of each text, with the likeliest classes' probabilities."""
    from charlm import checkpoint, runtime
    from charlm.classify import encode_texts
    from charlm.classify import predict as probabilities

    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    device = runtime.select_device(device)
    ck = checkpoint.load_classifier(run_dir, device)
    if not texts:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]  # a blank line is no text
    if not texts or not any(t.strip() for t in texts):
        raise ConfigError("no text to classify: pass --text 'some text', or lines on stdin")
    console.fit_threads("prediction", str(device))
    probs = probabilities(ck.model, encode_texts(ck.tokenizer, list(texts)), ck.train_config.seq_len,
                          device=device, amp_dtype=runtime.autocast_dtype(ck.train_config.precision, device))
    for text, row in zip(texts, probs.tolist()):
        ranked = sorted(zip(ck.labels, row), key=lambda pair: -pair[1])
        if as_json:
            click.echo(json.dumps({"text": text, "label": ranked[0][0], "probabilities": dict(zip(ck.labels, row))},
                                  ensure_ascii=False))
        else:
            shown = "  ".join(f"{label} {p:.3f}" for label, p in ranked[:top])
            click.echo(f"{ranked[0][0]}\t{shown}\t{text}")
