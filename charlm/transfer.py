"""Starting a run from another one: its weights, tokenizer and settings, with room for what the new text adds.

A parent is a run folder (or a shipped model, by name). A run started from it
(``charlm train CORPUS --from PARENT``) keeps the parent's architecture, level
and normalisation, and its tokenizer, grown at char level by the characters of
the new training text the parent never saw (data.prepare_steps does that).
``transplant`` then moves the parent's weights into the new model::

    parent vocabulary   <unk>  a  c  d              the new training text also has 'b' and 'e'
    new vocabulary      <unk>  a  b  c  d  e        ids of a, c and d move: id_map says where
    embedding rows      copied to their new ids; a new character's row is the mean of the parent's rows
    decoder rows        copied; a new character's weights are 0 and its bias makes its probability about
                        its frequency in the new training text, next to the parent's usual normaliser

so a new character starts near how often it occurs instead of at a random
logit. A model with one-hot input (embed 0) gets its first layer's input
columns moved the same way. Nothing here writes: the parent is only read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charlm import checkpoint
from charlm.config import ModelConfig, TrainConfig
from charlm.errors import ConfigError
from charlm.model import RNNLM
from charlm.tokenizers import Tokenizer, TokenizerSpec

SAMPLE_TOKENS = 4096  # tokens of the new text read to estimate the parent's normaliser
COUNT_CHUNK = 1 << 24  # tokens counted at once


@dataclass(frozen=True)
class Parent:
    """A run another run starts from: its settings, tokenizer and best weights, as loaded and checked."""

    given: str  # as the user named it
    run_dir: Path
    info: dict  # its config.json
    tokenizer: Tokenizer
    model_config: ModelConfig
    train_config: TrainConfig
    state: dict[str, torch.Tensor]  # its best weights (model.safetensors), float32, on the CPU
    weights_sha256: str
    summary: dict  # model.safetensors' summary: step, val_loss, …

    @property
    def root_lr(self) -> float:
        """The peak learning rate of the first run of this lineage, the one trained from scratch."""
        return self.info.get("parent", {}).get("root_lr") or self.train_config.lr

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """Its settings as config.resolve() takes a parent's: with the lineage's first peak rate, so that the
        child of a child fine-tunes at FINE_TUNE's share of that rate, not of a share of a share."""
        return self.model_config, dataclasses.replace(self.train_config, lr=self.root_lr)

    def lineage(self) -> dict:
        """What a child's config.json records about its parent."""
        return {"run": self.given, "path": str(self.run_dir.resolve()), "weights_sha256": self.weights_sha256,
                "step": self.summary.get("step"), "val_loss": self.summary.get("val_loss"),
                "command": self.info.get("command"), "root_lr": self.root_lr}


def load_parent(path: Path | str) -> Parent:
    """The run at ``path`` (a run folder or a shipped model's name), every file verified; CheckpointError
    when it is not a run or a file fails its check."""
    ck = checkpoint.load(path, "cpu")
    state = {name: t.detach().clone() for name, t in ck.model.state_dict().items()}
    return Parent(str(path), ck.run_dir, ck.info, ck.tokenizer, ck.model_config, ck.train_config, state,
                  ck.weights_sha256, ck.weights)


# the options that would change what a parent is, with the flag a user writes
ARCHITECTURE_FLAGS = {"cell": "--cell", "num_layers": "--layers", "hidden_size": "--hidden", "embed_size": "--embed",
                      "tie_weights": "--tie-weights"}


def check_options(parent: Parent, given: dict) -> None:
    """A one-line ConfigError for an option ``given`` (name → value, as the user set them) that contradicts what
    ``parent`` is: its architecture, level or normalisation, or a subword option for the tokenizer it keeps.
    An option that says what the parent already is passes."""
    m, tok = parent.model_config, parent.tokenizer
    what = f"--from {parent.given} is a {tok.kind}-level {m.cell.upper()} {m.num_layers}×{m.hidden_size}"
    for name, flag in ARCHITECTURE_FLAGS.items():
        if name in given and given[name] != getattr(m, name):
            said = flag if isinstance(given[name], bool) else f"{flag} {given[name]}"
            its = ("tied" if getattr(m, name) else "untied") + " weights" if name == "tie_weights" \
                else getattr(m, name)
            raise ConfigError(f"{what}, and a run started from it keeps its architecture: {said} contradicts its "
                              f"{its}; drop {flag}, or train from scratch without --from")
    if "level" in given and given["level"] != tok.kind:
        raise ConfigError(f"{what}: --level {given['level']} contradicts it; drop --level, or train from scratch "
                          "without --from")
    normalize = getattr(tok, "normalize", "none")
    if "normalize" in given and given["normalize"] != normalize:
        raise ConfigError(f"{what} with --normalize {normalize}: --normalize {given['normalize']} contradicts it; "
                          "drop --normalize")
    if given.keys() & {"vocab_size", "model_type"}:
        raise ConfigError(f"{what}: its tokenizer is kept, so --vocab-size and --sp-model do not apply; drop them")


def check_out(parent: Parent, out: Path) -> None:
    """Refuse to write a run started from ``parent`` into the parent's own folder (--force would replace it)."""
    if Path(out).resolve() == parent.run_dir.resolve():
        raise ConfigError(f"--out {out} is the run --from {parent.given} reads: pick another --out (the parent "
                          "is only read, never replaced)")


def grow_tokenizer(parent: Tokenizer, text: str) -> tuple[Tokenizer, str]:
    """``parent`` grown by the characters of ``text`` it lacks (char level), and those characters; a byte or
    subword tokenizer, to which nothing is unknown, as it is. For text held in memory: a corpus is read as
    a stream by data.prepare_steps(parent=…), which grows the tokenizer the same way."""
    if parent.kind != "char":
        return parent, ""
    return parent.grown_by(TokenizerSpec(level="char", normalize=parent.normalize).fit(text))


def id_map(parent: Tokenizer, tokenizer: Tokenizer) -> np.ndarray:
    """(V_parent,) int64: each parent id's id in ``tokenizer`` (the parent's own, or it grown at char level)."""
    if parent.kind == "char":
        return parent.id_map(tokenizer)
    return np.arange(parent.vocab_size, dtype=np.int64)


def transplant(model: RNNLM, parent: Parent, tokenizer: Tokenizer, train_ids: np.ndarray) -> int:
    """Load ``parent``'s weights into ``model`` (its architecture, over ``tokenizer``'s vocabulary), moving the
    rows of every token to its new id and initialising the rows of new tokens (module docstring) from their
    counts in ``train_ids`` (N,). Returns the number of new tokens."""
    moved = torch.from_numpy(id_map(parent.tokenizer, tokenizer))  # (V_parent,)
    kept = moved >= 0
    old_ids, new_ids = torch.nonzero(kept).squeeze(1), moved[kept]
    fresh = torch.ones(tokenizer.vocab_size, dtype=torch.bool)
    fresh[new_ids] = False
    state = {name: t.clone() for name, t in model.state_dict().items()}
    for name, old in parent.state.items():
        if name not in state:  # a classifier's encoder has no decoder
            continue
        new = state[name]
        if name == "embedding.weight":
            new[new_ids] = old[old_ids]
            new[fresh] = old.mean(dim=0)
        elif name == "decoder.weight":
            new[new_ids] = old[old_ids]
            new[fresh] = 0.0
        elif name == "decoder.bias":
            new[new_ids] = old[old_ids]
            new[fresh] = -1e4  # until their frequency is known (below): out of the normaliser
        elif name == "layers.0.weight_ih_l0" and model.config.embed_size == 0:  # one-hot input: a column per id
            new[:, new_ids] = old[:, old_ids]
            new[:, fresh] = 0.0
        else:
            new.copy_(old)
    if model.config.tie_weights and "decoder.weight" in state:
        state["decoder.weight"] = state["embedding.weight"]
    model.load_state_dict(state)
    n_fresh = int(fresh.sum())
    if n_fresh and hasattr(model, "decoder"):
        _set_new_biases(model, fresh, train_ids)
    return n_fresh


@torch.inference_mode()
def _set_new_biases(model: RNNLM, fresh: torch.Tensor, train_ids: np.ndarray) -> None:
    """Give each new token the bias b = log f + log Z, where f is its frequency in the training text and log Z
    the mean log-normaliser of the other tokens' logits over a sample of that text: with its weights at 0
    its logit is b everywhere, so its probability starts at about f. (With tied weights its decoder row is
    its embedding, the parent's mean row, not 0: then f is where it starts only roughly.)"""
    counts = np.zeros(len(fresh), dtype=np.int64)
    for start in range(0, len(train_ids), COUNT_CHUNK):  # a memory-mapped corpus may not fit in memory as int64
        counts += np.bincount(np.asarray(train_ids[start:start + COUNT_CHUNK], dtype=np.int64), minlength=len(fresh))
    counts = torch.from_numpy(counts).double()
    frequency = (counts / max(len(train_ids), 1)).clamp_min(0.5 / max(len(train_ids), 1))  # unseen in train: tiny
    sample = torch.from_numpy(np.array(train_ids[:SAMPLE_TOKENS], dtype=np.int64))[None]  # (1, T)
    was_training = model.training
    model.eval()
    logits, _ = model(sample)  # (1, T, V), the new rows at -1e4: the parent's tokens alone
    model.train(was_training)
    log_z = torch.logsumexp(logits[0].double(), dim=-1).mean()
    model.decoder.bias.data[fresh] = (frequency[fresh].log() + log_z).float()


def describe_added(added: str) -> str:
    """'3 characters: 'é' (U+00E9), …': what a child's vocabulary added, for its run header."""
    from charlm.tokenizers.text import describe_chars

    return f"{len(added)} character{'s' if len(added) != 1 else ''}: {describe_chars(added)}"
