"""Recurrent generation speed on CPU: our engine vs the `rwkv` PyPI package, same weights.

Baseline: `rwkv.model.RWKV(strategy="cpu fp32")` with RWKV_JIT_ON=1, one token per `forward` call, greedy.
Ours: `TokenStream.next()` (sampler included, greedy) at batch 1, and at batch 4 (throughput = 4 streams).
Every run generates --tokens tokens after a short prompt; runs are interleaved; medians of --repeats runs.

    .venv/bin/python benchmarks/bench_generate_cpu.py            # the shipped size: 4 layers x 256, vocab 512
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import config_from_args


@dataclass
class BenchConfig:
    n_layer: int = 4
    n_embd: int = 256
    vocab_size: int = 512
    tokens: int = 200
    repeats: int = 7
    threads: int = 2


def parse_args() -> BenchConfig:
    return config_from_args(BenchConfig, __doc__.splitlines()[0])


def main() -> None:
    cfg = parse_args()
    torch.set_num_threads(cfg.threads)
    # the rwkv package reads its switches from the environment when imported
    os.environ["RWKV_JIT_ON"] = "1"
    os.environ["RWKV_CUDA_ON"] = "0"
    from rwkv.model import RWKV

    from rwkv_core import RWKV6, RWKV6Config, save
    from rwkv_core.sampling import SamplingConfig, TokenStream

    torch.manual_seed(0)
    model = RWKV6(RWKV6Config(cfg.n_layer, cfg.n_embd, cfg.vocab_size, ctx_len=512))
    with torch.no_grad():   # trained-looking weights: nothing left at its zero init
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompt = torch.randint(0, cfg.vocab_size, (1, 16))
    greedy = SamplingConfig(temperature=0)

    with tempfile.TemporaryDirectory() as tmp:
        path = save(model, Path(tmp) / "bench.pth")
        theirs = RWKV(model=str(path), strategy="cpu fp32")

    def run_theirs() -> float:
        out, state = theirs.forward(prompt[0].tolist(), None)
        tok = int(out.argmax())
        t0 = time.perf_counter()
        for _ in range(cfg.tokens):
            out, state = theirs.forward([tok], state)
            tok = int(out.argmax())
        return cfg.tokens / (time.perf_counter() - t0)

    def run_ours(batch: int) -> float:
        stream = TokenStream(model, prompt.repeat(batch, 1), greedy, torch.Generator().manual_seed(0))
        t0 = time.perf_counter()
        for _ in range(cfg.tokens):
            stream.next()
        return batch * cfg.tokens / (time.perf_counter() - t0)

    # same greedy continuation from both engines (the comparison is of equal work)
    stream = TokenStream(model, prompt, greedy, torch.Generator())
    ours_toks = [int(stream.next()) for _ in range(20)]
    out, state = theirs.forward(prompt[0].tolist(), None)
    their_toks = []
    for _ in range(20):
        their_toks.append(int(out.argmax()))
        out, state = theirs.forward([their_toks[-1]], state)
    same = ours_toks == their_toks

    runs: dict[str, list[float]] = {"rwkv package, batch 1": [], "ours, batch 1": [], "ours, batch 4": []}
    run_theirs(), run_ours(1), run_ours(4)   # warm-up (TorchScript profiling, caches)
    for _ in range(cfg.repeats):
        runs["rwkv package, batch 1"].append(run_theirs())
        runs["ours, batch 1"].append(run_ours(1))
        runs["ours, batch 4"].append(run_ours(4))

    base = statistics.median(runs["rwkv package, batch 1"])
    print(f"# recurrent generation, CPU, {cfg.threads} threads, model {cfg.n_layer} x {cfg.n_embd}, "
          f"vocab {cfg.vocab_size}, {cfg.tokens} tokens/run, median of {cfg.repeats}")
    print(f"# greedy continuations identical for 20 tokens: {same}")
    print(f"| engine | tokens/s (median) | min..max | vs rwkv package batch 1 |")
    print(f"|---|---|---|---|")
    for name, vals in runs.items():
        med = statistics.median(vals)
        print(f"| {name} | {med:.0f} | {min(vals):.0f}..{max(vals):.0f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
