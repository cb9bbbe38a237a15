"""Speed of the default model against the machine's own ceilings, all measured in this run.

Prints:
- matrix-product ceilings (float32 and bf16 GFLOP/s) for 2-thread CPU matmuls of training-like shapes;
- training throughput of the default model with each dropout kind (tokens/s and GFLOP/s, counting
  6 x matmul parameters x tokens for forward + backward) and its ratio to the faster ceiling; and, as
  baselines, the same step with torch's nn.Dropout and (for --cell gru) with nn.GRU's own backward;
- evaluation throughput (forward only, large batch, inference mode) and its ratio to training;
- generation tokens/s at batch 1 with the carried state: charlm's generate(), the same with
  torch.multinomial as the sampler, and the fused module called once per token (oneDNN's
  weight-reorder trap);
- the time of one batch-1 matrix-vector product of the recurrent weights, the floor under a step.

With --device cuda the same figures come from the GPU (cuDNN's fused cells, bf16 autocast), every timing
waits for the device, and the matmul ceilings add one large square product, the chip's own ceiling.

    python bench/throughput.py [--hidden 256 --layers 2 --batch-size 32 --seq-len 64]
    python bench/throughput.py --device cuda --hidden 1024 --batch-size 128 --seq-len 128
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from unittest import mock

import torch
import torch.nn.functional as F

from charlm import model as model_module
from charlm import sampling
from charlm.config import DROPOUT_KINDS, PARALLEL_CELLS, ModelConfig, SampleConfig, TrainConfig
from charlm.evaluate import evaluate
from charlm.model import RNNLM
from charlm.runtime import autocast_dtype, select_device, tune_allocator
from charlm.sampling import generate
from charlm.train import make_optimizer

VOCAB = 65  # tinyshakespeare's character vocabulary


DEVICE = torch.device("cpu")  # set from --device in main()


def wait() -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the host clock must not stop early)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def best_of(fn, repeats=5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        wait()
        start = time.perf_counter()
        fn()
        wait()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_ceiling(dtype: torch.dtype, m: int, k: int, n: int, repeats: int = 1) -> float:
    a, b = torch.randn(m, k, device=DEVICE).to(dtype), torch.randn(k, n, device=DEVICE).to(dtype)

    def products():
        for _ in range(repeats):
            a @ b

    return 2 * m * k * n * repeats / best_of(products) / 1e9


GATES = {"lstm": 4, "gru": 3, "rnn": 1, "rnn-relu": 1, "mingru": 2, "minlstm": 3}


def matmul_params(config: ModelConfig, vocab: int) -> int:
    """Weights that take part in matrix products per token (embeddings are lookups, not products; the parallel
    cells have no recurrent weights)."""
    gates, h = GATES[config.cell], config.hidden_size
    recurrent = 0 if config.cell in PARALLEL_CELLS else h
    first_in = config.embed_size or vocab
    layers = gates * h * (first_in + recurrent) + (config.num_layers - 1) * gates * h * (h + recurrent)
    return layers + h * vocab


def train_tokens_per_s(model: RNNLM, train: TrainConfig, amp, steps=20) -> float:
    optimizer = make_optimizer(model, train)
    x = torch.randint(0, VOCAB, (train.batch_size, train.seq_len), device=DEVICE)
    y = torch.randint(0, VOCAB, (train.batch_size, train.seq_len), device=DEVICE)
    state = None

    def step():
        nonlocal state
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            logits, new_state = model(x, state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state = tuple(s.detach() for s in new_state) if isinstance(new_state, tuple) else new_state.detach()

    for _ in range(3):
        step()
    wait()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wait()
    return steps * x.numel() / (time.perf_counter() - start)


def generation_tokens_per_s(model: RNNLM, n: int, path: str) -> float:
    """Tokens/s sampling n tokens at batch 1 with the state carried, along one of three paths:

    generate     charlm's generate(): RNNLM.step (torch's one-step cell kernels) and inverse-CDF sampling;
    multinomial  the same generate() with torch.multinomial as the sampler;
    fused        the fused module called once per token (what a naive sampler does) and torch.multinomial.
    """
    prompt = torch.tensor([1, 2, 3])
    config = SampleConfig(temperature=1.0)

    def consume(steps) -> int:  # as `charlm sample` does: each id comes back to the host to be decoded
        return sum(len(ids.tolist()) for ids in steps)

    def fused_loop():
        with torch.inference_mode():
            logits, state = model(prompt.unsqueeze(0).to(DEVICE))
            for _ in range(n):
                token = torch.multinomial(torch.softmax(logits[0, -1], -1), 1)
                token.tolist()
                logits, state = model(token.view(1, 1), state)

    def multinomial(probs, generator=None):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def with_multinomial():
        with mock.patch.object(sampling, "sample_ids", multinomial):
            return consume(generate(model, prompt, n, config, device=DEVICE))

    runs = {"generate": lambda: consume(generate(model, prompt, n, config, device=DEVICE)),
            "multinomial": with_multinomial, "fused": fused_loop}
    return n / best_of(runs[path], repeats=3)


def step_products_seconds(model: RNNLM) -> float:
    """Time of the batch-1 matrix-vector products in one generation step (every layer's input and recurrent
    weights and the decoder), float32: a floor under a step that no amount of Python can lower."""
    shapes = [w.shape for layer in model.layer_weights for w in layer[:2] if w is not None]  # no W_hh: parallel
    shapes.append(model.decoder.weight.shape)
    products = [(torch.randn(1, cols, device=DEVICE), torch.randn(rows, cols, device=DEVICE)) for rows, cols in shapes]

    def step():
        for _ in range(100):
            for x, w in products:
                F.linear(x, w)

    with torch.inference_mode():
        return best_of(step) / 100


def main() -> None:
    global DEVICE
    defaults = ModelConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--cell", default=defaults.cell)
    parser.add_argument("--hidden", type=int, default=defaults.hidden_size)
    parser.add_argument("--layers", type=int, default=defaults.num_layers)
    parser.add_argument("--embed", type=int, default=defaults.embed_size)
    parser.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--seq-len", type=int, default=TrainConfig().seq_len)
    args = parser.parse_args()
    DEVICE = select_device(args.device)
    cpu = DEVICE.type == "cpu"
    tune_allocator()
    torch.manual_seed(0)
    config = ModelConfig(cell=args.cell, num_layers=args.layers, hidden_size=args.hidden, embed_size=args.embed)
    train = TrainConfig(batch_size=args.batch_size, seq_len=args.seq_len, max_steps=1)
    model = RNNLM(config, VOCAB).to(DEVICE)
    flops_per_token = 6 * matmul_params(config, VOCAB)
    h = args.hidden
    rows = args.batch_size * args.seq_len
    where = f"{torch.get_num_threads()} threads" if cpu else torch.cuda.get_device_name(DEVICE)
    print(f"model: {config.cell} {config.num_layers}x{h}, embed {config.embed_size}, batch {args.batch_size} x seq "
          f"{args.seq_len}; {matmul_params(config, VOCAB):,} matmul parameters; {where}")
    repeats = 1 if cpu else 20  # one GPU product of these shapes takes microseconds: time a run of them
    width = GATES[config.cell] * h  # the training shape: a window's inputs by one layer's gate weights
    fp32 = matmul_ceiling(torch.float32, rows, h, width, repeats)
    bf16 = matmul_ceiling(torch.bfloat16, rows, h, width, repeats)
    ceiling = max(fp32, bf16)
    print(f"matmul ceiling ({rows}x{h} @ {h}x{width}): float32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")
    if not cpu:
        chip = matmul_ceiling(torch.bfloat16, 8192, 8192, 8192, repeats=5)
        print(f"the chip's bf16 ceiling (8192x8192 @ 8192x8192): {chip:,.0f} GFLOP/s")
    amp = autocast_dtype("auto", DEVICE) is not None
    for label, use_amp in (("float32", False), ("bf16 autocast", True)):
        for kind in DROPOUT_KINDS:
            torch.manual_seed(0)
            model_kind = RNNLM(dataclasses.replace(config, dropout_kind=kind), VOCAB).to(DEVICE)
            rate = train_tokens_per_s(model_kind, train, use_amp)
            gflops = rate * flops_per_token / 1e9
            chosen = " (chosen by --precision auto)" if use_amp == amp else ""
            print(f"training {label}{chosen}, {kind} dropout: {rate:,.0f} tokens/s = {gflops:.0f} GFLOP/s = "
                  f"{gflops / ceiling:.0%} of the best matmul ceiling")
            if use_amp == amp and kind == config.dropout_kind:
                train_rate = rate
            if use_amp == amp and kind == "standard":
                standard_rate = rate
    # The model's own CPU pieces against torch's, same run, same precision, standard dropout (on a GPU
    # charlm already uses torch's: nn.Dropout and cuDNN's GRU).
    if cpu:
        torch.manual_seed(0)
        baseline = RNNLM(dataclasses.replace(config, dropout_kind="standard"), VOCAB)
        baseline.drop = torch.nn.Dropout(config.dropout)
        rate = train_tokens_per_s(baseline, train, amp)
        print(f"  the same with torch's nn.Dropout: {rate:,.0f} tokens/s (charlm's StandardDropout "
              f"{standard_rate / rate:.2f}x)")
    if cpu and config.cell == "gru":
        torch.manual_seed(0)
        def nn_gru(layer, x, state, weights):  # torch's own GRU on the (possibly weight-dropped) weights
            return torch.func.functional_call(layer, {"weight_hh_l0": weights[1]}, (x, state))

        with mock.patch.object(model_module, "gru_layer", nn_gru):
            rate = train_tokens_per_s(RNNLM(dataclasses.replace(config, dropout_kind="standard"), VOCAB), train, amp)
        print(f"  the same with nn.GRU's autograd: {rate:,.0f} tokens/s (charlm.gru {standard_rate / rate:.2f}x)")
    val = torch.randint(0, VOCAB, (111_540,)).numpy()
    result = evaluate(model, val, batch_size=128, device=DEVICE, amp_dtype=torch.bfloat16 if amp else None)
    print(f"evaluation (111,540 tokens, batch 128, inference mode): {result.tokens_per_s:,.0f} tokens/s = "
          f"{result.tokens_per_s / train_rate:.1f}x training throughput")
    model.eval()
    rates = {path: generation_tokens_per_s(model, 2000, path) for path in ("generate", "multinomial", "fused")}
    print(f"generation, batch 1, carried state, {where}: "
          f"{rates['generate']:,.0f} tokens/s with charlm's generate(), {rates['multinomial']:,.0f} with "
          "torch.multinomial "
          f"({rates['generate'] / rates['multinomial']:.2f}x), {rates['fused']:,.0f} calling the fused module per "
          f"token ({rates['generate'] / rates['fused']:.2f}x)")
    floor = step_products_seconds(model)
    print(f"the matrix-vector products of one step alone: {floor * 1e6:.0f} us per token, a ceiling of "
          f"{1 / floor:,.0f} tokens/s; charlm's generate() reaches {rates['generate'] * floor:.0%} of it")


if __name__ == "__main__":
    main()
