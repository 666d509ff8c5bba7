"""WKV6 on CUDA with our kernel (kernels/wkv6.cu + wkv6_op.cpp), compiled on first use and cached.

Nothing is built at import: the first `wkv6_cuda` call (or `load_extension()`) runs nvcc through
`torch.utils.cpp_extension.load` (about a minute), later processes reuse the cached build.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import torch

HEAD_SIZE = 64  # N: the kernel is compiled for this head size only
_HERE = Path(__file__).resolve().parent
# The CUDA sources: rwkv_core/kernels/ in an installed wheel (package data), the top-level kernels/ in a checkout.
KERNEL_DIR = _HERE / "kernels" if (_HERE / "kernels").is_dir() else _HERE.parent / "kernels"
SOURCES = ("wkv6_op.cpp", "wkv6.cu")


def build_directory() -> Path:
    """Where the compiled extension is cached: one folder per torch/CUDA version."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("text2lofi")) / f"wkv6-torch{torch.__version__}-cu{torch.version.cuda}"


@functools.cache
def load_extension(verbose: bool = False):
    """Compile (first time on a machine) or load the cached extension module; raises with the reason if it cannot."""
    from torch.utils import cpp_extension

    if torch.version.cuda is None:
        raise RuntimeError(f"wkv6 CUDA kernel: this torch ({torch.__version__}) is a CPU build")
    nvcc = Path(cpp_extension.CUDA_HOME or "", "bin", "nvcc")
    if cpp_extension.CUDA_HOME is None or not nvcc.exists():
        raise RuntimeError(
            "wkv6 CUDA kernel: nvcc not found. Install the CUDA toolkit matching torch's CUDA "
            f"{torch.version.cuda} (it provides nvcc), or set CUDA_HOME to it; nvcc on PATH: {shutil.which('nvcc')}"
        )
    if shutil.which("ninja") is None:
        # the `ninja` PyPI package puts the binary next to this interpreter, which is not on PATH unless the
        # virtual environment is activated; torch looks for it on PATH only
        venv_bin = Path(sys.executable).parent
        if not (venv_bin / "ninja").exists():
            raise RuntimeError("wkv6 CUDA kernel: ninja not found (pip install ninja, or apt install ninja-build)")
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    sources = [KERNEL_DIR / name for name in SOURCES]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        raise RuntimeError(f"wkv6 CUDA kernel: sources missing: {missing} (run from a checkout of the repository)")
    build_dir = build_directory()
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name="text2lofi_wkv6",
        sources=[str(p) for p in sources],
        build_directory=str(build_dir),
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "-Xptxas=-O3"],
        verbose=verbose,
    )


def _kernel_dtype(*tensors: torch.Tensor) -> torch.dtype:
    # The kernel reads r/k/v in bf16 or fp32; anything mixed or other (fp16, fp64) goes through fp32.
    return torch.bfloat16 if all(t.dtype == torch.bfloat16 for t in tensors) else torch.float32


class WKV6CUDA(torch.autograd.Function):
    """(r, k, v, w, u, state) -> (y, final_state); gradients for all six (state may be None)."""

    @staticmethod
    def forward(ctx, r, k, v, w, u, state):
        ctx.set_materialize_grads(False)
        ext = load_extension()
        kdt = _kernel_dtype(r, k, v)
        r_, k_, v_ = (t.to(kdt).contiguous() for t in (r, k, v))
        w_ = w.float().contiguous()  # raw decay stays fp32: d = exp(-exp(w)) is formed inside the kernel
        u_ = u.float().contiguous()
        s0 = None if state is None else state.float().contiguous()
        with torch.cuda.device(r.device):
            y, s_final = ext.forward(r_, k_, v_, w_, u_, s0, torch.cuda.current_stream().cuda_stream)
        ctx.save_for_backward(r_, k_, v_, w_, u_, s0)
        ctx.grad_dtypes = (r.dtype, k.dtype, v.dtype, w.dtype, u.dtype, None if state is None else state.dtype)
        return y.to(r.dtype), s_final

    @staticmethod
    def backward(ctx, gy, g_final):
        r_, k_, v_, w_, u_, s0 = ctx.saved_tensors
        gy = torch.zeros_like(r_) if gy is None else gy.to(r_.dtype).contiguous()
        g_final = None if g_final is None else g_final.float().contiguous()
        with torch.cuda.device(r_.device):
            gr, gk, gv, gw, gu, gs0 = load_extension().backward(
                r_, k_, v_, w_, u_, s0, gy, g_final, torch.cuda.current_stream().cuda_stream
            )
        dr, dk, dv, dw, du, ds = ctx.grad_dtypes
        return gr.to(dr), gk.to(dk), gv.to(dv), gw.to(dw), gu.sum(0).to(du), None if ds is None else gs0.to(ds)


def wkv6_cuda(r, k, v, w, u, state=None):
    """WKV6 with our CUDA kernel.

    r, k, v, w: (B, T, H, N) CUDA tensors (bf16 or fp32), w the raw decay (d = exp(-exp(w)), computed in fp32);
    u: (H, N); state: (B, H, N, N) fp32 [key, value] or None (zeros).
    Returns y (B, T, H, N) in r's dtype and the final state (B, H, N, N) fp32. Differentiable in all inputs.
    """
    if r.dim() != 4 or r.shape[-1] != HEAD_SIZE:
        raise ValueError(f"wkv6_cuda: r must be (B, T, H, {HEAD_SIZE}), got {tuple(r.shape)}")
    if not r.is_cuda:
        raise ValueError("wkv6_cuda: inputs must be CUDA tensors (use rwkv_core.wkv6 to dispatch)")
    return WKV6CUDA.apply(r, k, v, w, u, state)
