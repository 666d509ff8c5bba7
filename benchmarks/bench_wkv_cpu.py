"""WKV6 on CPU: the chunked PyTorch form vs the per-step loop (`wkv6_reference`), forward and forward+backward.

Baseline: the per-step reference with autograd, measured in the same run on the same inputs.
Shape B4 H4 T512 N64 fp32 by default; runs are interleaved; medians of --repeats runs.

    .venv/bin/python benchmarks/bench_wkv_cpu.py
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import partial

import torch
from common import config_from_args

from rwkv_core.wkv import wkv6_chunked, wkv6_reference


@dataclass
class BenchConfig:
    batch: int = 4
    heads: int = 4
    length: int = 512
    head_size: int = 64
    repeats: int = 7
    threads: int = 2


def parse_args() -> BenchConfig:
    return config_from_args(BenchConfig, __doc__.splitlines()[0])


def timed(fn, inputs: list[torch.Tensor], backward: bool) -> float:
    """Seconds for one forward (and backward through y and the final state)."""
    leaves = [x.detach().requires_grad_(backward) for x in inputs]
    t0 = time.perf_counter()
    y, s = fn(*leaves)
    if backward:
        (y.sum() + s.sum()).backward()
    return time.perf_counter() - t0


def main() -> None:
    cfg = parse_args()
    torch.set_num_threads(cfg.threads)
    g = torch.Generator().manual_seed(0)
    shape = (cfg.batch, cfg.length, cfg.heads, cfg.head_size)
    inputs = [0.5 * torch.randn(shape, generator=g) for _ in range(3)]          # r, k, v
    inputs.append(-6 + 7.5 * torch.rand(shape, generator=g))                  # raw w
    inputs.append(0.5 * torch.randn(cfg.heads, cfg.head_size, generator=g))   # u
    inputs.append(torch.randn(cfg.batch, cfg.heads, cfg.head_size, cfg.head_size, generator=g))  # initial state

    forms = {"per-step loop (baseline)": wkv6_reference,
             "chunked, chunk 16": partial(wkv6_chunked, chunk_size=16),
             "chunked, chunk 8": partial(wkv6_chunked, chunk_size=8)}
    y_ref, _ = wkv6_reference(*inputs)
    errors = {name: (fn(*inputs)[0] - y_ref).abs().max().item() for name, fn in forms.items()}

    times = {(name, bwd): [] for name in forms for bwd in (False, True)}
    for fn in forms.values():              # warm-up
        timed(fn, inputs, True)
    for _ in range(cfg.repeats):
        for name, fn in forms.items():
            for bwd in (False, True):
                times[name, bwd].append(timed(fn, inputs, bwd))

    med = {key: statistics.median(vals) for key, vals in times.items()}
    base = "per-step loop (baseline)"
    print(f"# WKV6 CPU, {cfg.threads} threads, B{cfg.batch} H{cfg.heads} T{cfg.length} N{cfg.head_size} fp32, "
          f"median of {cfg.repeats}")
    print("| form | fwd s | fwd+bwd s | fwd speed-up | fwd+bwd speed-up | max abs err vs baseline |")
    print("|---|---|---|---|---|---|")
    for name in forms:
        print(f"| {name} | {med[name, False]:.3f} | {med[name, True]:.3f} | {med[base, False] / med[name, False]:.1f}x "
              f"| {med[base, True] / med[name, True]:.1f}x | {errors[name]:.1e} |")


if __name__ == "__main__":
    main()
