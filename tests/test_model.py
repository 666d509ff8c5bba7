"""RWKV6: parallel and recurrent modes give the same logits; states branch and batch correctly; init as published."""
import math

import pytest
import torch

from rwkv_core import RWKV6, RWKV6Config, RWKVState
from rwkv_core.cpu_step import CStep
from rwkv_core.model import NumpyStep, TorchStep

V = 100


def random_model(n_layer: int = 2, n_embd: int = 128, seed: int = 0) -> RWKV6:
    """A tiny model with every weight perturbed: at init several matrices are zero, which would hide bugs."""
    torch.manual_seed(seed)
    model = RWKV6(RWKV6Config(n_layer=n_layer, n_embd=n_embd, vocab_size=V, ctx_len=64))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=[CStep, NumpyStep, TorchStep], ids=["C step", "numpy step", "torch step"])
def model(request) -> RWKV6:
    """The same model stepped by each recurrent form (C is what CPU generation runs, numpy where no C compiler is
    found, torch the GPU path)."""
    model = random_model()
    model._recurrent = request.param(model)
    assert type(model.recurrent()) is request.param
    return model


def test_cpu_fp32_generation_steps_in_c_and_other_dtypes_with_torch():
    model = random_model(n_layer=1, n_embd=64)
    assert type(model.recurrent()) is CStep
    assert type(random_model(n_layer=1, n_embd=64).double().recurrent()) is TorchStep


@pytest.fixture(scope="module")
def idx() -> torch.Tensor:
    """Five streams: the C step's products take batch rows four at a time, then one by one."""
    return torch.randint(0, V, (5, 37), generator=torch.Generator().manual_seed(1))


def test_parallel_equals_recurrent_step_by_step(model, idx):
    full = model(idx)                                      # (B, T, V)
    assert full.shape == (5, 37, V)
    state, steps = model.init_state(5), []
    for t in range(idx.shape[1]):
        logits, state = model.step(idx[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), full, rtol=0, atol=1e-4)


def test_prefill_then_step_equals_parallel(model, idx):
    full, final = model(idx, return_state=True)
    logits, state = model(idx[:, :20], state=model.init_state(5), return_state=True)
    torch.testing.assert_close(logits, full[:, :20], rtol=0, atol=1e-4)
    for t in range(20, 37):
        step_logits, state = model.step(idx[:, t], state)
        torch.testing.assert_close(step_logits, full[:, t], rtol=0, atol=1e-4)
    torch.testing.assert_close(state.wkv, final.wkv, rtol=0, atol=1e-4)
    torch.testing.assert_close(state.shift, final.shift, rtol=0, atol=1e-4)
    # and a parallel continuation from a state (segment-wise training / long prompts)
    _, mid = model(idx[:, :11], return_state=True)
    rest = model(idx[:, 11:], state=mid)
    torch.testing.assert_close(rest, full[:, 11:], rtol=0, atol=1e-4)


def test_a_token_outside_the_vocabulary_is_refused_not_read_past_the_table(model):
    with pytest.raises(IndexError):
        model.step(torch.tensor([3, V]), model.init_state(2))


def test_streams_in_a_batch_are_independent_and_states_branch(model, idx):
    batch_logits, batch_state = model(idx, return_state=True)
    single = model(idx[1:2])
    torch.testing.assert_close(batch_logits[1:2], single, rtol=0, atol=1e-5)

    picked = batch_state.select(1)
    assert picked.batch_size == 1
    nxt = torch.tensor([5])
    a, _ = model.step(nxt, picked)
    b, _ = model.step(nxt.repeat(5), batch_state)
    torch.testing.assert_close(a[0], b[1], rtol=0, atol=1e-5)

    # step never mutates its input state, and a clone is independent of its source
    before = batch_state.clone()
    model.step(torch.tensor([1, 2, 3, 4, 5]), batch_state)
    assert torch.equal(before.wkv, batch_state.wkv) and torch.equal(before.shift, batch_state.shift)
    twin = batch_state.clone()
    twin.wkv.zero_()
    assert batch_state.wkv.abs().sum() > 0

    both = RWKVState.cat([batch_state.select(0), batch_state.select(2)])
    torch.testing.assert_close(both.wkv, batch_state.select([0, 2]).wkv)
    assert both.batch_size == 2


def test_recurrent_state_size_is_constant():
    model = random_model(n_layer=1, n_embd=64)
    state = model.init_state(2)
    shapes = (state.shift.shape, state.wkv.shape)
    tok = torch.tensor([1, 2])
    for _ in range(300):
        _, state = model.step(tok, state)
    assert (state.shift.shape, state.wkv.shape) == shapes
    assert state.wkv.dtype == torch.float32 and torch.isfinite(state.wkv).all()


def test_step_sees_weight_updates_after_training():
    """The recurrent path caches rearranged weights; an optimizer step must invalidate them."""
    model = random_model(n_layer=1, n_embd=64, seed=2)
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(3))
    model.step(idx[:, 0], model.init_state(2))          # build the cache with the old weights
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(model(idx[:, :-1]).reshape(-1, V), idx[:, 1:].reshape(-1))
    loss.backward()
    opt.step()
    state, steps = model.init_state(2), []
    for t in range(12):
        logits, state = model.step(idx[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), model(idx).detach(), rtol=0, atol=1e-4)


def test_training_learns_a_repeating_sequence():
    torch.manual_seed(0)
    model = RWKV6(RWKV6Config(n_layer=2, n_embd=64, vocab_size=V, ctx_len=32))   # published init, no perturbation
    seq = torch.arange(32) % 7 + 10
    batch = seq.repeat(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_fn():
        logits = model(batch[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))

    first = loss_fn().item()
    assert abs(first - math.log(V)) < 1.0            # untrained: close to uniform over V
    for _ in range(25):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert all(p.grad is not None for p in model.parameters())
    assert loss_fn().item() < 0.1 * first          # measured ~0.07 * first after 25 steps


def test_published_init_shapes_and_single_layer():
    model = RWKV6(RWKV6Config(n_layer=1, n_embd=128, vocab_size=V, ctx_len=32))   # L = 1: no division by zero
    att = model.blocks[0].att
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert att.time_faaaa.shape == (2, 64)
    assert att.time_maa_w1.shape == (128, 160) and att.time_maa_w2.shape == (5, 32, 128)
    assert att.time_decay_w1.shape == (128, 64) and att.time_decay_w2.shape == (64, 128)
    assert model.blocks[0].ffn.key.weight.shape == (448, 128)          # F = int(3.5 * C) // 32 * 32
    assert att.time_decay.min().item() == pytest.approx(-6.0) and att.time_decay.max().item() == pytest.approx(-1.0)
    assert torch.count_nonzero(att.output.weight) == 0 and torch.count_nonzero(model.blocks[0].ffn.value.weight) == 0
    logits = model(torch.zeros(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, V) and torch.isfinite(logits).all()


def test_config_round_trip_and_validation():
    cfg = RWKV6Config(n_layer=4, n_embd=256, vocab_size=500, ctx_len=512)
    assert RWKV6Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.n_head == 4 and cfg.dim_ffn == 896
    with pytest.raises(ValueError):
        RWKV6Config(n_layer=2, n_embd=100, vocab_size=V, ctx_len=8)


def test_the_c_step_builds_on_first_use_and_without_a_compiler_generation_steps_in_numpy(monkeypatch, tmp_path):
    from rwkv_core import cpu_step

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))          # an empty cache: nothing built yet
    cpu_step.load_library.cache_clear()
    try:
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
        with pytest.raises(RuntimeError, match="no-such-cc"):
            cpu_step.load_library()
        assert type(random_model(n_layer=1, n_embd=64).recurrent()) is NumpyStep
        assert not list(tmp_path.rglob("*.so*"))                 # nothing half-built left behind
        monkeypatch.delenv("CC")
        model = random_model(n_layer=1, n_embd=64)
        assert type(model.recurrent()) is CStep
        assert [p.name for p in tmp_path.rglob("*.so")] == [cpu_step.library_path().name]
        idx = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(2))
        state, steps = model.init_state(1), []
        for t in range(9):
            logits, state = model.step(idx[:, t], state)
            steps.append(logits)
        torch.testing.assert_close(torch.stack(steps, dim=1), model(idx), rtol=0, atol=1e-4)
    finally:
        cpu_step.load_library.cache_clear()                      # later tests load the usual cached library
