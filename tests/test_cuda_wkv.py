"""Our CUDA WKV6 kernel (kernels/wkv6.cu): it compiles for Ampere and Hopper, its algorithm (three sweeps, the
gw identity, state in/out) matches the per-step reference, and on a GPU the built extension matches it too.

Tolerances, as max |error| / max(max |reference|, 1) per tensor (the floor keeps gradients that are exactly zero,
like gw at T = 1 without a final-state loss, from dividing rounding noise by zero): fp32 2e-4; bf16 1e-2 (outputs and r/k/v gradients are
rounded to bf16, relative step 2**-8 = 3.9e-3).
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest
import torch

from rwkv_core.cuda_wkv import HEAD_SIZE, KERNEL_DIR
from rwkv_core.wkv import wkv6_reference

KERNEL = KERNEL_DIR / "wkv6.cu"
TOL = {torch.float32: 2e-4, torch.bfloat16: 1e-2}


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double().cpu(), want.double().cpu()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1.0)).item() if want.numel() else 0.0


def _inputs(B, T, H, dtype, with_state, device="cpu", seed=0):
    """Random WKV inputs in a realistic range: decays exp(-exp(w)) spread over ~(0.1, 0.99)."""
    g = torch.Generator().manual_seed(seed)
    N = HEAD_SIZE
    rnd = lambda *shape, scale=1.0, shift=0.0: torch.randn(*shape, generator=g) * scale + shift  # noqa: E731
    r, k, v = rnd(B, T, H, N), rnd(B, T, H, N, scale=0.5), rnd(B, T, H, N)
    w = rnd(B, T, H, N, scale=0.7, shift=-1.5)
    u = rnd(H, N, scale=0.5)
    state = rnd(B, H, N, N, scale=0.3) if with_state else None
    gy, g_state = rnd(B, T, H, N), rnd(B, H, N, N)
    cast = lambda x: x.to(dtype).to(device)  # noqa: E731
    return dict(r=cast(r), k=cast(k), v=cast(v), w=cast(w), u=u.to(device),
                state=None if state is None else state.to(device)), cast(gy), g_state.to(device)


def _reference_with_grads(inp, gy, g_state):
    """fp64 per-step reference on the same (already rounded) inputs -> y, final state, grads of r k v w u state."""
    leaves = {n: (None if t is None else t.detach().double().cpu().requires_grad_()) for n, t in inp.items()}
    if leaves["state"] is None:  # the initial-state gradient is defined for a zero state too
        B, _, H, N = inp["r"].shape
        leaves["state"] = torch.zeros(B, H, N, N, dtype=torch.float64, requires_grad=True)
    y, s_final = wkv6_reference(**leaves)
    loss = (y * gy.double().cpu()).sum() + (s_final * g_state.double().cpu()).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    grads = [torch.zeros_like(x) if gr is None else gr for gr, x in zip(grads, leaves.values())]
    return y, s_final, dict(zip(leaves, grads))


# ---- compiles with nvcc (CI, no GPU needed) -------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) not on PATH")
@pytest.mark.e2e
def test_kernel_compiles_with_nvcc_for_sm80_and_sm90(tmp_path):
    obj = tmp_path / "wkv6.o"
    # one nvcc call, machine code for both: Ampere (A100, sm_80) and Hopper (H100/H200, sm_90)
    proc = subprocess.run(["nvcc", "-c", "-O3", "-std=c++17", "-gencode", "arch=compute_80,code=sm_80",
                           "-gencode", "arch=compute_90,code=sm_90", str(KERNEL), "-o", str(obj)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the object exports both entry points the torch binding links against
    nm = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True).stdout
    assert "T wkv6_forward(bool" in nm and "T wkv6_backward(bool" in nm


# ---- the kernel's algorithm, run on the CPU -------------------------------------------------------------------------
# The kernels in wkv6.cu are compiled as C++ with g++, each CUDA thread becoming a std::thread and __syncthreads a
# barrier, so their indexing, shared-memory hand-offs and backward sweeps are checked on machines without a GPU.

_EMULATION_HEADERS = {
    "cuda_runtime.h": r"""
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>
typedef int cudaError_t;
typedef void* cudaStream_t;
constexpr cudaError_t cudaSuccess = 0;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(x)
#define __shared__ static
struct EmuIdx { int x; };
inline thread_local EmuIdx threadIdx, blockIdx;
inline std::barrier<>* emu_block_barrier = nullptr;
#define __syncthreads() emu_block_barrier->arrive_and_wait()
template <typename K, typename... A>
void emu_launch(int grid, int block, K kernel, A... args) {  // blocks in turn, the threads of a block concurrently
  for (int b = 0; b < grid; ++b) {
    std::barrier<> bar(block);
    emu_block_barrier = &bar;
    std::vector<std::thread> threads;
    for (int t = 0; t < block; ++t) threads.emplace_back([=] { threadIdx.x = t; blockIdx.x = b; kernel(args...); });
    for (auto& th : threads) th.join();
  }
}
""",
    "cuda_bf16.h": r"""
#pragma once
#include <cstdint>
#include <cstring>
struct __nv_bfloat16 { uint16_t bits; };
inline float __bfloat162float(__nv_bfloat16 x) { uint32_t u = uint32_t(x.bits) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16(float f) {  // round to nearest even, as the device intrinsic
  uint32_t u; std::memcpy(&u, &f, 4); u += 0x7fffu + ((u >> 16) & 1u); return {uint16_t(u >> 16)};
}
""",
}


# unmangled names for ctypes, forwarding to the entry points wkv6_op.cpp links against
_C_ENTRY_POINTS = r"""
extern "C" int emu_forward(bool bf16, int B, int T, int H, const void* r, const void* k, const void* v,
                           const float* w, const float* u, const float* s0, void* y, float* sT) {
  return wkv6_forward(bf16, B, T, H, r, k, v, w, u, s0, y, sT, nullptr);
}
extern "C" int emu_backward(bool bf16, int B, int T, int H, const void* r, const void* k, const void* v,
                            const float* w, const float* u, const float* s0, const void* gy, const float* gsT,
                            void* gr, void* gk, void* gv, float* gw, float* gu, float* gs0, float* a_last) {
  return wkv6_backward(bf16, B, T, H, r, k, v, w, u, s0, gy, gsT, gr, gk, gv, gw, gu, gs0, a_last, nullptr);
}
"""


@pytest.fixture(scope="module")
def emulated_kernel(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip(reason="g++ not on PATH: the CPU emulation of the kernels needs it")
    d = tmp_path_factory.mktemp("wkv6_emu")
    (d / "inc").mkdir()
    for name, text in _EMULATION_HEADERS.items():
        (d / "inc" / name).write_text(text)
    # `kernel<F, kHeadSize><<<grid, block, 0, stream>>>(args)` -> `emu_launch(grid, block, kernel<F, kHeadSize>, args)`
    src, n = re.subn(r"(\w+<F, kHeadSize>)<<<(.+?), 0, stream>>>\(", r"emu_launch(\2, \1, ", KERNEL.read_text())
    assert n == 3, "expected three kernel launches in wkv6.cu"
    (d / "wkv6_emu.cpp").write_text(src + _C_ENTRY_POINTS)
    lib = d / "libwkv6_emu.so"
    proc = subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", f"-I{d / 'inc'}",
                           str(d / "wkv6_emu.cpp"), "-o", str(lib)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ctypes.CDLL(str(lib))


def _emulated_run(lib, inp, gy, g_state):
    """Call wkv6_forward / wkv6_backward with the buffers wkv6_op.cpp allocates."""
    def ptr(t):
        return ctypes.c_void_p(0 if t is None else t.data_ptr())

    r, k, v = (inp[n].contiguous() for n in "rkv")
    w, u = inp["w"].float().contiguous(), inp["u"].float().contiguous()
    s0 = inp["state"]
    B, T, H, N = r.shape
    bf16 = ctypes.c_bool(r.dtype == torch.bfloat16)
    y, s_final = torch.empty_like(r), torch.empty(B, H, N, N)
    assert lib.emu_forward(bf16, B, T, H, ptr(r), ptr(k), ptr(v), ptr(w), ptr(u), ptr(s0), ptr(y), ptr(s_final)) == 0
    gr, gk, gv = torch.empty_like(r), torch.empty_like(r), torch.empty_like(r)
    gw, gu, gs0, a_last = torch.empty_like(w), torch.empty(B, H, N), torch.empty(B, H, N, N), torch.empty(B, H, N)
    assert lib.emu_backward(bf16, B, T, H, ptr(r), ptr(k), ptr(v), ptr(w), ptr(u), ptr(s0), ptr(gy.contiguous()),
                            ptr(g_state), ptr(gr), ptr(gk), ptr(gv), ptr(gw), ptr(gu), ptr(gs0), ptr(a_last)) == 0
    return y, s_final, dict(r=gr, k=gk, v=gv, w=gw, u=gu.sum(0), state=gs0)


@pytest.mark.parametrize("B,T,H,dtype,with_state", [
    (2, 19, 2, torch.float32, True),
    (1, 1, 1, torch.float32, False),      # T = 1: w only reaches the final state, no initial state
    (2, 6, 1, torch.bfloat16, True),
])
def test_kernel_algorithm_matches_reference(emulated_kernel, B, T, H, dtype, with_state):
    inp, gy, g_state = _inputs(B, T, H, dtype, with_state)
    y, s_final, grads = _emulated_run(emulated_kernel, inp, gy, g_state.float())
    y_ref, s_ref, grads_ref = _reference_with_grads(inp, gy, g_state)
    tol = TOL[dtype]
    assert _rel_err(y, y_ref) < tol
    assert _rel_err(s_final, s_ref) < TOL[torch.float32]       # the state is fp32 whatever the inputs
    for name in ("r", "k", "v", "w", "u", "state"):
        assert _rel_err(grads[name], grads_ref[name]) < tol, name


# ---- the built extension on a GPU -----------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("T", [1, 37, 256])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_state", [False, True])
def test_cuda_matches_reference(T, dtype, with_state):
    from rwkv_core.cuda_wkv import wkv6_cuda

    inp, gy, g_state = _inputs(2, T, 3, dtype, with_state, device="cuda")
    leaves = {n: None if t is None else t.clone().requires_grad_() for n, t in inp.items()}
    y, s_final = wkv6_cuda(**leaves)
    assert y.dtype == dtype and s_final.dtype == torch.float32
    ((y.float() * gy.float()).sum() + (s_final * g_state).sum()).backward()
    y_ref, s_ref, grads_ref = _reference_with_grads(inp, gy, g_state)
    tol = TOL[dtype]
    assert _rel_err(y, y_ref) < tol
    assert _rel_err(s_final, s_ref) < TOL[torch.float32]
    for name, leaf in leaves.items():
        if leaf is not None:
            assert leaf.grad is not None and leaf.grad.dtype == leaf.dtype, name
            assert _rel_err(leaf.grad, grads_ref[name]) < tol, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_state_carries_across_segments():
    """Two segments with the state handed over give what one pass over the whole sequence gives (truncated BPTT)."""
    from rwkv_core.cuda_wkv import wkv6_cuda

    inp, _, _ = _inputs(2, 64, 2, torch.float32, True, device="cuda")
    y_full, s_full = wkv6_cuda(**inp)
    r, k, v, w = (inp[n] for n in "rkvw")
    y1, s1 = wkv6_cuda(r[:, :40], k[:, :40], v[:, :40], w[:, :40], inp["u"], inp["state"])
    y2, s2 = wkv6_cuda(r[:, 40:], k[:, 40:], v[:, 40:], w[:, 40:], inp["u"], s1)
    assert _rel_err(torch.cat([y1, y2], 1), y_full) < 1e-5
    assert _rel_err(s2, s_full) < 1e-5
