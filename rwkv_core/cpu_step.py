"""The recurrent step in C (kernels/rwkv6_step.c): NumpyStep's arithmetic in one foreign call per token.

The source is compiled with the machine's C compiler on first use (about a second) into the user cache, one
library per source, compiler flags and CPU, and loaded with ctypes. ctypes lets go of the GIL during the call, so a
composing thread no longer competes with the audio threads for it. Where no compiler is found or the build fails,
`load_library` raises with the reason and `RWKV6.recurrent()` runs NumpyStep instead.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rwkv_core.model import D_DECAY, D_MIX, GN_EPS, LN_EPS, RWKV6, NumpyStep
from rwkv_core.state import RWKVState

_HERE = Path(__file__).resolve().parent
# rwkv_core/kernels/ in an installed wheel (package data), the top-level kernels/ in a checkout (as cuda_wkv.py)
SOURCE = (_HERE / "kernels" if (_HERE / "kernels").is_dir() else _HERE.parent / "kernels") / "rwkv6_step.c"
# -march=native: the library is built on the machine that runs it and keyed by its CPU flags below. No -ffast-math:
# exp(-exp(w)) relies on exp overflowing to inf (a decay of 0).
CFLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def library_path() -> Path:
    from platformdirs import user_cache_dir

    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode() + _cpu_flags().encode()).hexdigest()[:16]
    return Path(user_cache_dir("text2lofi")) / f"rwkv6_step-{platform.machine()}-{key}.so"


@functools.cache
def load_library() -> ctypes.CDLL:
    """Build (first time on a machine) and load the step library; raises RuntimeError saying why it cannot."""
    if not SOURCE.exists():
        raise RuntimeError(f"rwkv6 C step: source missing: {SOURCE}")
    path = library_path()
    if not path.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise RuntimeError("rwkv6 C step: no C compiler (cc or gcc) on PATH")
        path.parent.mkdir(parents=True, exist_ok=True)
        # build beside the target and rename into place: two processes (or threads) building at once both succeed
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        try:
            try:
                done = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True)
            except OSError as e:
                raise RuntimeError(f"rwkv6 C step: cannot run the C compiler {cc}: {e}") from e
            if done.returncode != 0:
                raise RuntimeError(f"rwkv6 C step: {cc} failed: {done.stderr.strip()[-2000:]}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(path))
    lib.rwkv6_step.restype = ctypes.c_int
    # raw addresses, not numpy's ndpointer: checking six arrays a call cost 60 us a step (cProfile)
    lib.rwkv6_step.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 8 + [ctypes.c_float] * 2 + [ctypes.c_int] + \
        [ctypes.c_void_p] * 6
    return lib


class CStep(NumpyStep):
    """NumpyStep's weights packed into one fp32 array in the order kernels/rwkv6_step.c reads them."""

    def __init__(self, model: RWKV6):
        super().__init__(model)
        self.lib = load_library()
        cfg = model.config
        self.dims = (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_size, D_MIX, D_DECAY, cfg.dim_ffn,
                     cfg.vocab_size)
        parts = []
        for lay in self.layers:
            parts += [*lay.ln1, *lay.ln2, lay.maa_x, lay.maa_5, lay.maa_w1, lay.maa_w2, lay.decay, lay.decay_w1,
                      lay.decay_w2, lay.u, *lay.w_kvrg, *lay.ln_x, lay.w_out, lay.ffn_maa_k, lay.ffn_maa_r,
                      lay.ffn_key, lay.ffn_rec, lay.ffn_value]
        parts += [self.emb, *self.ln_out, self.head]
        self.weights = np.concatenate([np.ascontiguousarray(p, np.float32).reshape(-1) for p in parts])
        L, C, H, N, D, DD, Fd, V = self.dims
        expected = L * (16 * C + 10 * D * C + 2 * DD * C + 6 * C * C + 2 * C * Fd) + 2 * V * C + 2 * C
        if self.weights.size != expected:
            raise RuntimeError(f"rwkv6 C step: packed {self.weights.size} weights, expected {expected}")
        self.weights_at = self.weights.ctypes.data
        del self.layers, self.emb, self.ln_out, self.head      # the packed copy is what steps read

    def __call__(self, tokens: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        tok = tokens.to(torch.int64).contiguous()
        shift, wkv = state.shift.contiguous(), state.wkv.contiguous()
        if shift.shape[2] != len(tok) or wkv.shape[1] != len(tok):
            raise ValueError(f"rwkv6 C step: {len(tok)} tokens for a state of {shift.shape[2]} streams")
        if shift.dtype != torch.float32 or wkv.dtype != torch.float32:
            raise TypeError(f"rwkv6 C step: fp32 state expected, got {shift.dtype} and {wkv.dtype}")
        new_shift, new_wkv = torch.empty_like(shift), torch.empty_like(wkv)
        logits = torch.empty(len(tok), self.dims[-1], dtype=torch.float32)
        failed = self.lib.rwkv6_step(self.weights_at, *self.dims, LN_EPS, GN_EPS, len(tok), tok.data_ptr(),
                                     shift.data_ptr(), wkv.data_ptr(), new_shift.data_ptr(), new_wkv.data_ptr(),
                                     logits.data_ptr())
        if failed == -2:
            raise IndexError(f"rwkv6 C step: a token of {tok.tolist()} is outside the vocabulary [0, "
                             f"{self.dims[-1]})")
        if failed:
            raise MemoryError("rwkv6 C step: no memory for the step's scratch")
        return logits, RWKVState(new_shift, new_wkv)
