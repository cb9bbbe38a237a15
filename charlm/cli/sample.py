"""`charlm sample`: continue a prompt with text drawn from a run's model; only the text goes to stdout.

checkpoint.load ─► the prompt encoded by the run's tokenizer ─► sampling.generate
(one forward pass over the prompt, then one step of the recurrence per token)
─► a streaming decoder ─► stdout, as the tokens arrive.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from charlm.cli.options import complete_run, device_option, impl_override_option, unknown_option
from charlm.config import SampleConfig
from charlm.errors import ConfigError, TokenizerError


@click.command(epilog="""\b
Examples:
  charlm sample checkpoints/shakespeare-lstm
  charlm sample checkpoints/shakespeare-lstm -p "HAMLET:" -n 400 -t 0.6
  charlm sample checkpoints/shakespeare-lstm -p "HAMLET:" -n 400 -t 0.5 --frequency-penalty 0.2
  charlm sample checkpoints/shakespeare-lstm --num-samples 3 --top-p 0.9 --seed 7 > samples.txt
  charlm sample checkpoints/shakespeare-lstm -p "HAMLET:" -t 0 --impl reference    # same text, textbook cells
""")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False, shell_complete=complete_run)
@click.option("-p", "--prompt", default=None,
              help="Text to continue (default: a newline, or the corpus's first character).")
@click.option("-n", "--length", type=int, default=500, show_default=True,
              help="Tokens to generate, and a few more if the last one began a character or a Hangul syllable (byte, "
                   "subword or --normalize nfd models).")
@click.option("-t", "--temperature", type=float, default=SampleConfig.temperature, show_default=True,
              help="0 = greedy; below 1 = safer; above 1 = wilder.")
@click.option("-k", "--top-k", type=int, default=SampleConfig.top_k, show_default=True,
              help="Sample among the k likeliest tokens (0 = all).")
@click.option("--top-p", type=float, default=SampleConfig.top_p, show_default=True,
              help="Sample from the smallest set with this much probability (1 = all).")
@click.option("--frequency-penalty", type=float, default=SampleConfig.frequency_penalty, show_default=True,
              help="A repetition penalty: lower a token's logit by this for each time it occurred in the last "
                   "--penalty-window tokens (0 = off; 0.1-0.3 breaks loops such as a run of spaces).")
@click.option("--penalty-window", type=int, default=SampleConfig.penalty_window, show_default=True,
              help="Tokens the frequency penalty looks back over.")
@click.option("-s", "--seed", type=int, help="Seed for reproducible samples.")
@click.option("--num-samples", type=int, default=1, show_default=True,
              help="Independent samples, generated as one batch.")
@click.option("--no-stream", is_flag=True, help="Print when done instead of as tokens arrive.")
@unknown_option
@impl_override_option
@device_option
def sample(checkpoint, prompt, length, temperature, top_k, top_p, frequency_penalty, penalty_window, seed, num_samples,
           no_stream, unknown, impl, device):
    """Generate text from a checkpoint, continuing PROMPT; only the text goes to stdout.

    Without CHECKPOINT, the shipped base model (English and Korean; checkpoints/README.md) is used.
    """
    import torch

    from charlm import checkpoint as checkpoints
    from charlm import runtime
    from charlm.sampling import generate
    from charlm.tokenizers.text import EXTRA_TOKENS

    config = SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p, frequency_penalty=frequency_penalty,
                          penalty_window=penalty_window)
    if length < 0:
        raise ConfigError(f"--length must be 0 or more, got {length}")
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    device = runtime.select_device(device)
    ck = checkpoints.load(checkpoint, device, impl=impl)
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
    _write_samples(steps, tok, length, shown_prompt, num_samples, stream=not no_stream)


def default_prompt(tokenizer) -> str:
    """A newline when the vocabulary has one (text starts after a line break), else its first character."""
    return "\n" if "\n" in tokenizer.chars else tokenizer.chars[0]


def _write_samples(steps, tokenizer, length: int, shown_prompt: str, num_samples: int, stream: bool) -> None:
    """Decode the generated ids (each step: one id per sample) and write the text to stdout, the prompt first;
    one sample streams as it comes, several are written one after another when done."""
    import torch

    from charlm.cli.display import for_terminal
    from charlm.tokenizers.text import continuation_text

    to_terminal = sys.stdout.isatty()

    def write(text: str) -> None:  # to a terminal, control characters a model wrote are drawn, not obeyed
        sys.stdout.write(for_terminal(text) if to_terminal else text)

    try:
        if stream and num_samples == 1:
            first_sample = (next_ids[0] for next_ids in steps)
            for text in continuation_text(tokenizer.incremental_decoder(), first_sample, length, shown_prompt):
                write(text)
                sys.stdout.flush()
            write("\n")
        else:
            columns = [next_ids.cpu() for next_ids in steps]
            samples = torch.stack(columns, dim=1).tolist() if columns else [[] for _ in range(num_samples)]
            for i, row in enumerate(samples):
                if i:
                    write("\n" + "─" * 40 + "\n")
                write("".join(continuation_text(tokenizer.incremental_decoder(), row, length, shown_prompt)) + "\n")
    except BrokenPipeError:  # e.g. `charlm sample … | head`
        sys.stderr.close()
    sys.stdout.flush()
