"""WKV6: the RWKV-6 linear-attention recurrence, in three interchangeable forms of one signature.

    wkv6(r, k, v, w, u, state=None) -> (y, final_state)

r, k, v, w: (B, T, H, N); u: (H, N); state: (B, H, N, N) fp32 indexed [key, value].
w is the raw decay: d_t = exp(-exp(w_t)) in (0, 1). Per head, with S the state before step t:
    y_t[j] = sum_i r_t[i] * (u[i] * k_t[i] * v_t[j] + S[i, j])
    S     <- d_t[:, None] * S + k_t[:, None] * v_t[None, :]
All forms compute in fp32 (fp64 when given fp64, for gradient checks), return y in r's dtype and the final state
in the compute dtype: fp32 for fp32/bf16/fp16 inputs.

- `wkv6_reference`: a plain per-step loop (the ground truth in tests).
- `wkv6_chunked`: chunks of L steps; inside a chunk the pairwise decays come from cumulative log-decays so every
  exponent is <= 0 (no overflow, no division by a tiny decay); chunks are linked by the state. The pairwise part
  has a hand-written backward, the rest is autograd. CPU training and the GPU fallback.
- `wkv6`: the dispatch point: our CUDA kernel (`rwkv_core.cuda_wkv.wkv6_cuda`, built lazily on first use) for CUDA
  tensors, the chunked form otherwise or when the kernel cannot be built.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

SUB_BLOCK = 4   # steps per block inside a chunk (see _IntraChunkScores)
# None: not tried yet; True: the CUDA kernel built and ran once; False: it failed, use the chunked form.
_cuda_ok: bool | None = None


def _check(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor | None) -> None:
    if r.dim() != 4 or not (r.shape == k.shape == v.shape == w.shape):
        raise ValueError(f"r, k, v, w must share one (B, T, H, N) shape, got {[tuple(x.shape) for x in (r, k, v, w)]}")
    B, _, H, N = r.shape
    if tuple(u.shape) != (H, N):
        raise ValueError(f"u must be (H, N) = {(H, N)}, got {tuple(u.shape)}")
    if state is not None and tuple(state.shape) != (B, H, N, N):
        raise ValueError(f"state must be (B, H, N, N) = {(B, H, N, N)}, got {tuple(state.shape)}")


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def wkv6_reference(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor,
                   state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-step loop over T: slow, obviously right, differentiable."""
    _check(r, k, v, w, u, state)
    B, T, H, N = r.shape
    out_dtype, ct = r.dtype, _compute_dtype(r)
    r, k, v, u = r.to(ct), k.to(ct), v.to(ct), u.to(ct)
    decay = torch.exp(-torch.exp(w.to(ct)))                           # (B, T, H, N)
    S = r.new_zeros(B, H, N, N) if state is None else state.to(ct)
    ys = []
    # unbind over time (not r[:, t]): indexing would make backward scatter into a full-size zero tensor per step
    for r_t, k_t, v_t, d_t in zip(r.unbind(1), k.unbind(1), v.unbind(1), decay.unbind(1)):
        kv = k_t[..., :, None] * v_t[..., None, :]                    # (B, H, N, N)
        ys.append(torch.einsum("bhi,bhij->bhj", r_t, S + u[None, :, :, None] * kv))
        S = d_t[..., :, None] * S + kv
    y = torch.stack(ys, dim=1) if ys else r.new_zeros(B, 0, H, N)
    return y.to(out_dtype), S


def _pair_decays(e: Tensor, c: Tensor) -> Tensor:
    """P[j, t, i] = prod_{j<s<t} d_s[i] = exp(e_t[i] - c_j[i]) for j < t, else 0: (..., L, N) -> (..., L, L, N).
    Every exponent is <= 0 (the masked ones are set to -inf before exp), so nothing overflows."""
    L = e.shape[-2]
    before = torch.ones(L, L, dtype=torch.bool, device=e.device).triu(1)[:, :, None]     # (j, t, 1): j < t
    return (e.unsqueeze(-3) - c.unsqueeze(-2)).masked_fill_(~before, float("-inf")).exp_()


class _IntraChunkScores(torch.autograd.Function):
    """AT[j, t] = sum_i r_t[i] k_j[i] prod_{j<s<t} d_s[i] (j < t) for one chunk of L steps, forward and backward
    written out by hand (autograd would keep several large temporaries per call).

    The chunk is split into n blocks of `sub` steps. Pairs inside a block use the (sub, sub, N) pair decays directly.
    A pair across blocks (j in block b, t in a later block) factors through the end m_b of block b:
        prod_{j<s<t} d_s = exp(c_m - c_j) * exp(e_t - c_m),   both exponents <= 0,
    so those scores are n small matmuls Kt[b] @ Rt[b]^T, and the elementwise work drops from L*L*N to
    L*L*N/sub + L*sub*N per chunk."""

    @staticmethod
    def forward(ctx, r: Tensor, k: Tensor, e: Tensor, c: Tensor, sub: int) -> Tensor:
        *batch, L, N = r.shape
        n = L // sub
        r4, k4, e4, c4 = (x.reshape(*batch, n, sub, N) for x in (r, k, e, c))
        D = _pair_decays(e4, c4)                                            # (..., n, sub_j, sub_t, N)
        at_in = (D * r4.unsqueeze(-3)).mul_(k4.unsqueeze(-2)).sum(-1)        # (..., n, sub_j, sub_t)
        m = c4[..., -1:, :]                                                  # (..., n, 1, N) log decay to block end
        EK = torch.exp(m - c4)                                               # (..., n, sub, N)
        later = torch.arange(L, device=r.device) // sub > torch.arange(n, device=r.device)[:, None]   # (n, L)
        ER = (e.unsqueeze(-3) - m).masked_fill_(~later[..., None], float("-inf")).exp_()           # (..., n, L, N)
        at = (k4 * EK) @ (ER * r.unsqueeze(-3)).transpose(-1, -2)            # (..., n, sub_j, L_t)
        at = at.reshape(*batch, L, L)
        at.view(*batch, n, sub, n, sub).diagonal(0, -4, -2).add_(at_in.movedim(-3, -1))
        ctx.save_for_backward(r, k, D, EK, ER)
        ctx.sub = sub
        return at

    @staticmethod
    @once_differentiable
    def backward(ctx, d_at: Tensor) -> tuple[Tensor | None, ...]:
        r, k, D, EK, ER = ctx.saved_tensors
        sub = ctx.sub
        *batch, L, N = r.shape
        n = L // sub
        r4, k4 = r.reshape(*batch, n, sub, N), k.reshape(*batch, n, sub, N)
        d_at = d_at.contiguous()
        # across blocks: at[b] = Kt[b] @ Rt[b]^T with Kt = k * EK, Rt = r * ER
        d_off = d_at.view(*batch, n, sub, L)
        Kt, Rt = k4 * EK, ER * r.unsqueeze(-3)
        d_kt = d_off @ Rt                                                    # (..., n, sub, N)
        d_rt = d_off.transpose(-1, -2) @ Kt                                  # (..., n, L, N)
        d_k4 = d_kt * EK
        g_k = d_kt.mul_(Kt)                                                  # d / d(c_m - c_j)
        d_r = (d_rt * ER).sum(-3)
        g_r = d_rt.mul_(Rt)                                                  # d / d(e_t - c_m)
        d_e = g_r.sum(-3)
        d_c4 = -g_k
        d_c4[..., -1:, :] += g_k.sum(-2, keepdim=True) - g_r.sum(-2, keepdim=True)   # through m_b
        # inside blocks
        d_in = d_at.view(*batch, n, sub, n, sub).diagonal(0, -4, -2).movedim(-1, -3)   # (..., n, sub_j, sub_t)
        g = D * d_in.unsqueeze(-1)
        gk = g * k4.unsqueeze(-2)
        d_r = d_r + gk.sum(-3).reshape(*batch, L, N)
        d_expo = gk.mul_(r4.unsqueeze(-3))
        d_e = d_e + d_expo.sum(-3).reshape(*batch, L, N)
        d_c4 -= d_expo.sum(-2)
        d_k4 += g.mul_(r4.unsqueeze(-3)).sum(-2)
        return d_r, d_k4.reshape(*batch, L, N), d_e, d_c4.reshape(*batch, L, N), None


def wkv6_chunked(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor | None = None,
                 chunk_size: int = 16) -> tuple[Tensor, Tensor]:
    """Chunked parallel form; any T (the tail is padded with steps that neither write nor decay)."""
    _check(r, k, v, w, u, state)
    B, T, H, N = r.shape
    out_dtype, ct = r.dtype, _compute_dtype(r)
    L = chunk_size
    pad = (-T) % L
    n_chunks = (T + pad) // L

    def chunks(x: Tensor) -> Tensor:
        # (B, T, H, N) -> (B, H, n_chunks, L, N) in the compute dtype; padded steps are zeros
        x = torch.nn.functional.pad(x.to(ct), (0, 0, 0, 0, 0, pad))
        return x.view(B, n_chunks, L, H, N).permute(0, 3, 1, 2, 4)

    r_, k_, v_ = chunks(r), chunks(k), chunks(v)
    # log-decay -exp(w) <= 0; a padded step has log-decay 0 (decay 1) and k = 0, so it leaves the state alone
    logd = chunks(-torch.exp(w.to(ct)))
    c = logd.cumsum(dim=-2)                      # inclusive: log prod_{s<=t} d_s       (B, H, nC, L, N)
    e = c - logd                                 # exclusive: log prod_{s<t}  d_s
    c_last = c[..., -1:, :]                      # log decay over the whole chunk       (B, H, nC, 1, N)

    AT = _IntraChunkScores.apply(r_, k_, e, c, math.gcd(L, SUB_BLOCK))   # (B, H, nC, L_j, L_t)
    bonus = (r_ * u.to(ct)[None, :, None, None, :] * k_).sum(-1)                      # current-token term (B,H,nC,L)
    y = AT.transpose(-1, -2) @ v_ + bonus[..., None] * v_                               # (B, H, nC, L, N)

    # Chunk to chunk: the state entering each chunk, read through prod_{s<t} d_s; the loop only carries S.
    kv_chunk = (k_ * torch.exp(c_last - c)).transpose(-1, -2) @ v_   # what a chunk adds (B, H, nC, N, N); expo <= 0
    d_chunk = torch.exp(c_last).transpose(-1, -2)                    # decay over a whole chunk (B, H, nC, N, 1)
    S = r_.new_zeros(B, H, N, N) if state is None else state.to(ct)
    entering = []
    # unbind (not indexing) so the backward pass stacks the chunk gradients once instead of scattering each
    for d_i, kv_i in zip(d_chunk.unbind(2), kv_chunk.unbind(2)):
        entering.append(S)
        S = torch.addcmul(kv_i, d_i, S)
    y = y + (r_ * torch.exp(e)) @ torch.stack(entering, dim=2)

    y = y.permute(0, 2, 3, 1, 4).reshape(B, n_chunks * L, H, N)[:, :T]
    return y.to(out_dtype), S


def wkv6(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor,
         state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The one WKV entry point: CUDA kernel on CUDA tensors when it builds, else the chunked form."""
    global _cuda_ok
    if r.is_cuda and _cuda_ok is not False:
        try:  # importing builds nothing; the first call compiles (torch.utils.cpp_extension, cached on disk)
            from rwkv_core import cuda_wkv
        except ImportError as err:
            _cuda_ok = False
            warnings.warn(f"WKV6 CUDA kernel unavailable ({err}); using the chunked PyTorch form",
                          RuntimeWarning, stacklevel=2)
        else:
            if r.shape[-1] != cuda_wkv.HEAD_SIZE:   # compiled for one head size; others take the chunked form
                return wkv6_chunked(r, k, v, w, u, state)
            if _cuda_ok:
                return cuda_wkv.wkv6_cuda(r, k, v, w, u, state)
            try:
                result = cuda_wkv.wkv6_cuda(r, k, v, w, u, state)
            except Exception as err:  # noqa: BLE001 - any build/load failure means "use the PyTorch form"
                _cuda_ok = False
                warnings.warn(f"WKV6 CUDA kernel unavailable ({type(err).__name__}: {err}); "
                              "using the chunked PyTorch form", RuntimeWarning, stacklevel=2)
            else:
                _cuda_ok = True
                return result
    return wkv6_chunked(r, k, v, w, u, state)
