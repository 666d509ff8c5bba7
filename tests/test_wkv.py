"""WKV6: the chunked form (used for CPU training and as the GPU fallback) against the per-step reference.

Tolerances: fp32 inputs -> outputs, state and gradients within 1e-4 relative to the largest magnitude (measured
~1e-6..1e-5); bf16 inputs -> both forms see the same bf16 values and compute in fp32, so y (returned in bf16) agrees
to 2 bf16 ulps (1/64 relative) and the fp32 state/gradients to 1e-3 relative.
"""
import pytest
import torch

from rwkv_core.wkv import wkv6, wkv6_chunked, wkv6_reference

B, H, N = 2, 2, 16


def make_inputs(T: int, dtype: torch.dtype = torch.float32, seed: int = 0, with_state: bool = True):
    g = torch.Generator().manual_seed(seed)
    r, k, v = (0.5 * torch.randn(B, T, H, N, generator=g) for _ in range(3))
    # raw decays from ~1 (w = -6: decay 0.9975) down to ~0.01 (w = 1.5): slow and fast heads both exercised
    w = -6 + 7.5 * torch.rand(B, T, H, N, generator=g)
    u = 0.5 * torch.randn(H, N, generator=g)
    s = torch.randn(B, H, N, N, generator=g) if with_state else None
    tensors = [x.to(dtype) for x in (r, k, v, w)] + [u.to(dtype)]
    return tensors, s


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def run_with_grads(fn, tensors, state):
    leaves = [t.clone().requires_grad_() for t in tensors]
    s = state.clone().requires_grad_() if state is not None else None
    y, s_out = fn(*leaves, s)
    # a loss touching every output and the final state, with uneven weights so no gradient cancels
    g = torch.Generator().manual_seed(1)
    loss = (y.float() * torch.randn(y.shape, generator=g)).sum() + (s_out * torch.randn(s_out.shape, generator=g)).sum()
    loss.backward()
    grads = [t.grad for t in leaves] + ([s.grad] if s is not None else [])
    return y, s_out, grads


@pytest.mark.parametrize("T", [1, 15, 16, 37, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_matches_reference_outputs_and_gradients(T, dtype):
    tensors, state = make_inputs(T, dtype)
    y_ref, s_ref, g_ref = run_with_grads(wkv6_reference, tensors, state)
    y, s, g = run_with_grads(wkv6_chunked, tensors, state)
    assert y.dtype == dtype and y.shape == (B, T, H, N)
    assert s.dtype == torch.float32 and s.shape == (B, H, N, N)
    y_tol, tol = (1e-4, 1e-4) if dtype == torch.float32 else (1 / 64, 1e-3)
    assert rel_err(y, y_ref) < y_tol
    assert rel_err(s, s_ref) < tol
    for name, a, b in zip(["r", "k", "v", "w", "u", "state"], g, g_ref):
        assert a is not None and a.shape == b.shape, name
        assert rel_err(a, b) < (tol if dtype == torch.float32 else 2e-2), name


@pytest.mark.parametrize("chunk_size", [4, 16, 32])
def test_chunked_against_fp64_reference_and_gradcheck(chunk_size):
    tensors, state = make_inputs(37, seed=3)
    y64, s64 = wkv6_reference(*[t.double() for t in tensors], state.double())
    y, s = wkv6_chunked(*tensors, state, chunk_size=chunk_size)
    assert rel_err(y, y64) < 1e-5 and rel_err(s, s64) < 1e-5


def test_chunked_gradients_are_exact_fp64():
    # finite differences vs the hand-written backward on a tiny problem (B1 T11 H1 N4): chunk 8 = two blocks of 4,
    # so pairs inside a block, pairs across blocks and the chunk-to-chunk state are all exercised
    g = torch.Generator().manual_seed(4)
    r, k, v = (torch.randn(1, 11, 1, 4, generator=g, dtype=torch.float64) for _ in range(3))
    w = torch.rand(1, 11, 1, 4, generator=g, dtype=torch.float64) * 3 - 2
    u = torch.randn(1, 4, generator=g, dtype=torch.float64)
    s = torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64)
    args = [t.requires_grad_() for t in (r, k, v, w, u, s)]
    assert torch.autograd.gradcheck(lambda *a: wkv6_chunked(*a, chunk_size=8), args, fast_mode=True)


def test_state_carries_across_segments():
    tensors, state = make_inputs(53, seed=5)
    y_full, s_full = wkv6_chunked(*tensors, state)
    a = 21
    first = [t[:, :a] for t in tensors[:4]] + [tensors[4]]
    second = [t[:, a:] for t in tensors[:4]] + [tensors[4]]
    y1, s1 = wkv6_chunked(*first, state)
    y2, s2 = wkv6_chunked(*second, s1)
    assert rel_err(torch.cat([y1, y2], dim=1), y_full) < 1e-5
    assert rel_err(s2, s_full) < 1e-5


def test_zero_state_equals_no_state_and_dispatch_on_cpu_is_chunked():
    tensors, _ = make_inputs(20, seed=6, with_state=False)
    y0, s0 = wkv6_chunked(*tensors, torch.zeros(B, H, N, N))
    y1, s1 = wkv6(*tensors)
    torch.testing.assert_close(y0, y1)
    torch.testing.assert_close(s0, s1)


def test_extreme_decays_stay_finite():
    # w = 4: decay exp(-e^4) ~ 1e-24 per step; w = -20: decay ~1 - 2e-9. Log-space exponents never overflow.
    tensors, state = make_inputs(40, seed=7)
    r, k, v, _, u = tensors
    w = torch.where(torch.rand(r.shape) < 0.5, torch.tensor(4.0), torch.tensor(-20.0))
    y, s = wkv6_chunked(r, k, v, w, u, state)
    y_ref, s_ref = wkv6_reference(r, k, v, w, u, state)
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    assert rel_err(y, y_ref) < 1e-4 and rel_err(s, s_ref) < 1e-4


def test_bad_shapes_are_rejected():
    tensors, _ = make_inputs(8, seed=8, with_state=False)
    with pytest.raises(ValueError, match="u must be"):
        wkv6_chunked(*tensors[:4], torch.zeros(H * N))   # a flattened bonus is a classic silent bug
