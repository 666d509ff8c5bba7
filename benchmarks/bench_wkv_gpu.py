"""WKV6 on a GPU: our CUDA kernel vs flash-linear-attention's `chunk_rwkv6` (Triton) and our chunked PyTorch form.

    python benchmarks/bench_wkv_gpu.py [--batch 8 --time 1024 --heads 8 --dtype bf16 --repeats 20]

Forward and forward+backward, median milliseconds over --repeats timed runs (CUDA events) after warm-up; ratios are
against our kernel measured in the same run (> 1: ours is faster). Target: fwd+bwd no slower than fla.
Each contender takes what a training step hands it: r, k, v, w (raw decay) in --dtype and u fp32, and does its own
conversions (fla receives the log-decay -exp(w)). fla is optional (`pip install -e .[bench-gpu]`); without it its
rows are skipped. Without a CUDA GPU the script says so and measures nothing.
"""
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from dataclasses import dataclass
from typing import Callable

import torch

from rwkv_core.cuda_wkv import HEAD_SIZE, load_extension, wkv6_cuda
from rwkv_core.wkv import wkv6_chunked

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class BenchConfig:
    batch: int = 8
    time: int = 1024
    heads: int = 8
    dtype: str = "bf16"
    repeats: int = 20
    warmup: int = 3
    seed: int = 0


def _fla_contender() -> Callable | None:
    try:
        from fla.ops.rwkv6 import chunk_rwkv6
    except ImportError:
        return None

    def run(r, k, v, w, u):
        # fla wants the log-decay; scale=1.0 (RWKV does not scale r.k)
        y, _ = chunk_rwkv6(r=r, k=k, v=v, w=-torch.exp(w.float()).to(r.dtype), u=u.to(r.dtype), scale=1.0,
                           initial_state=None, output_final_state=False)
        return y

    return run


def contenders() -> dict[str, Callable]:
    found = {"ours (CUDA kernel)": lambda r, k, v, w, u: wkv6_cuda(r, k, v, w, u)[0],
             "chunked PyTorch (L=16)": lambda r, k, v, w, u: wkv6_chunked(r, k, v, w, u)[0]}
    fla = _fla_contender()
    if fla is not None:
        found["fla chunk_rwkv6"] = fla
    return found


def make_inputs(cfg: BenchConfig, requires_grad: bool):
    """r, k, v, w: (B, T, H, N) in cfg.dtype; u: (H, N) fp32; decays exp(-exp(w)) spread over ~(0.2, 0.99)."""
    g = torch.Generator(device="cuda").manual_seed(cfg.seed)
    shape, dt = (cfg.batch, cfg.time, cfg.heads, HEAD_SIZE), DTYPES[cfg.dtype]

    def rnd(*s, scale=1.0, shift=0.0, dtype=dt):
        x = (torch.randn(*s, generator=g, device="cuda") * scale + shift).to(dtype)
        return x.requires_grad_(requires_grad)

    return rnd(*shape), rnd(*shape, scale=0.5), rnd(*shape), rnd(*shape, scale=0.7, shift=-2.0), \
        rnd(cfg.heads, HEAD_SIZE, scale=0.5, dtype=torch.float32)


def time_ms(fn: Callable[[], None], cfg: BenchConfig) -> float:
    """Median wall time of fn on the GPU, in milliseconds."""
    for _ in range(cfg.warmup):
        fn()
    times = []
    for _ in range(cfg.repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def run(cfg: BenchConfig) -> list[dict]:
    load_extension()  # compile outside the timed region
    runs = contenders()
    inputs = make_inputs(cfg, requires_grad=True)
    gy = torch.randn_like(inputs[0])
    with torch.no_grad():
        y_ours = runs["ours (CUDA kernel)"](*inputs).float()
    rows = []
    for name, fn in runs.items():
        with torch.no_grad():
            y = fn(*inputs).float()
        err = ((y - y_ours).abs().max() / y_ours.abs().max()).item()  # agreement with our kernel on these inputs

        def forward():
            with torch.no_grad():
                fn(*inputs)

        def forward_backward():
            for x in inputs:
                x.grad = None
            fn(*inputs).backward(gy)

        rows.append(dict(name=name, fwd_ms=time_ms(forward, cfg), fwdbwd_ms=time_ms(forward_backward, cfg),
                         rel_diff=err))
    return rows


def report(rows: list[dict], cfg: BenchConfig) -> str:
    ours = rows[0]
    gpu = torch.cuda.get_device_name()
    head = (f"WKV6 on {gpu}, {datetime.date.today().isoformat()}, torch {torch.__version__}, "
            f"B{cfg.batch} T{cfg.time} H{cfg.heads} N{HEAD_SIZE} {cfg.dtype}, median of {cfg.repeats}\n\n"
            "| implementation | fwd ms | fwd+bwd ms | fwd: time / ours | fwd+bwd: time / ours | max rel. diff to ours |\n"
            "|---|---|---|---|---|---|\n")
    lines = [f"| {r['name']} | {r['fwd_ms']:.3f} | {r['fwdbwd_ms']:.3f} | {r['fwd_ms'] / ours['fwd_ms']:.2f} | "
             f"{r['fwdbwd_ms'] / ours['fwdbwd_ms']:.2f} | {r['rel_diff']:.1e} |" for r in rows]
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in vars(BenchConfig()).items():
        if name == "dtype":
            p.add_argument("--dtype", choices=sorted(DTYPES), default=default)
        else:
            p.add_argument(f"--{name}", type=int, default=default)
    cfg = BenchConfig(**vars(p.parse_args(argv)))
    if not torch.cuda.is_available():
        print(f"bench_wkv_gpu: no CUDA GPU here (torch {torch.__version__}, CUDA build: {torch.version.cuda}); "
              "this benchmark needs one, nothing was measured.")
        return 0
    if _fla_contender() is None:
        print("bench_wkv_gpu: flash-linear-attention not installed (pip install -e .[bench-gpu]); no fla rows",
              file=sys.stderr)
    print(report(run(cfg), cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
