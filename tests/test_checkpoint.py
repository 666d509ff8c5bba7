"""Checkpoints: the saved file is what the reference runtime (the `rwkv` PyPI package) loads, with the same logits."""
import json

import pytest
import torch

from rwkv_core import RWKV6, RWKV6Config, load, save

V = 100


@pytest.fixture(scope="module")
def model() -> RWKV6:
    torch.manual_seed(0)
    m = RWKV6(RWKV6Config(n_layer=2, n_embd=128, vocab_size=V, ctx_len=64))
    with torch.no_grad():   # perturb everything: several matrices start at zero
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def tokens() -> list[int]:
    return torch.randint(0, V, (40,), generator=torch.Generator().manual_seed(1)).tolist()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # the package builds on torch.jit.script
def test_rwkv_package_gives_the_same_logits(model, tokens, tmp_path, rwkv_package_model):
    path = save(model, tmp_path / "tiny.pth")
    ref = rwkv_package_model(path)
    ours = model(torch.tensor([tokens]))[0].detach()                     # (T, V), parallel mode

    theirs_seq, their_state = ref.forward(tokens, None, full_output=True)  # their sequence mode
    assert (theirs_seq - ours).abs().max().item() < 5e-5

    # their one-token mode continuing from their state == our recurrent step from ours
    _, our_state = model(torch.tensor([tokens]), return_state=True)
    their_next, _ = ref.forward([7], [s.clone() for s in their_state])
    our_next, _ = model.step(torch.tensor([7]), our_state)
    assert (their_next - our_next[0]).abs().max().item() < 5e-5


def test_file_layout(model, tmp_path):
    path = save(model, tmp_path / "m.pth", meta={"tokenizer": "piano-remi", "step": 12})
    weights = torch.load(path, weights_only=True)
    assert type(weights) is dict
    assert list(weights) == list(model.state_dict())                       # natural order, no prefixes
    assert list(weights)[:2] == ["emb.weight", "blocks.0.ln1.weight"] and "blocks.0.ln0.weight" in weights
    assert weights["blocks.1.att.time_faaaa"].shape == (2, 64)               # (H, N), never flattened
    assert all(t.dtype == torch.float32 for t in weights.values())
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["config"] == model.config.to_dict() and side["meta"] == {"tokenizer": "piano-remi", "step": 12}


def test_round_trip_needs_only_the_path(model, tokens, tmp_path):
    path = save(model, tmp_path / "m.pth", meta={"data": "pop909"})
    loaded = load(path)
    assert loaded.config == model.config and loaded.meta == {"data": "pop909"}
    idx = torch.tensor([tokens])
    assert torch.equal(loaded(idx), model(idx))
    # meta travels on the model: re-saving keeps it
    again = load(save(loaded, tmp_path / "again.pth"))
    assert again.meta == {"data": "pop909"}

    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load(path)


def test_bf16_file_is_half_the_size_and_close(model, tokens, tmp_path):
    f32 = save(model, tmp_path / "f32.pth")
    b16 = save(model, tmp_path / "b16.pth", dtype=torch.bfloat16)
    assert b16.stat().st_size < 0.6 * f32.stat().st_size
    idx = torch.tensor([tokens])
    diff = (load(b16)(idx) - model(idx)).abs().max().item()
    assert 0 < diff < 0.1


def test_wrapped_models_save_without_prefixes(model, tmp_path):
    class Wrapper(torch.nn.Module):          # what DDP looks like to save(): the model under `.module`
        def __init__(self, inner):
            super().__init__()
            self.module = inner
    path = save(Wrapper(model), tmp_path / "w.pth")
    assert list(torch.load(path, weights_only=True)) == list(model.state_dict())
