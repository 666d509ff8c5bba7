"""The music models we ship: each checkpoint folder is complete, small enough, loads with the reference runtime (the
`rwkv` PyPI package) with our logits, and its tokenizer is the one its training data was made with."""
import json
from pathlib import Path

import pytest
import torch

from rwkv_core import load
from text2lofi.compose.tokenizer import MusicTokenizer

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


@pytest.mark.parametrize("kind", ["piano", "drums"])
def test_checkpoint_folder_is_complete_and_small(kind):
    folder = CHECKPOINTS / kind
    weights = sorted(folder.glob("*.pth"))
    assert [w.name for w in weights] == [f"{kind}.pth"]                  # exactly one
    assert weights[0].stat().st_size <= 16 * 2**20
    for name in (f"{kind}.json", "tokenizer.json", "miditok.json", "README.md", "loss.png"):
        assert (folder / name).stat().st_size > 0, name
    assert 2 <= len(list(folder.glob("sample_*.mid"))) <= 3
    meta = json.loads((folder / f"{kind}.json").read_text())
    assert meta["config"]["vocab_size"] == MusicTokenizer.load(folder).vocab_size
    assert meta["meta"]["data"]["tokenizer"]["kind"] == kind                # trained on this kind's shards


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # the package builds on torch.jit.script
@pytest.mark.parametrize("kind", ["piano", "drums"])
def test_rwkv_package_loads_the_shipped_model(kind, rwkv_package_model):
    path = CHECKPOINTS / kind / f"{kind}.pth"
    tok = MusicTokenizer.load(path.parent)
    tokens = tok.condition_prefix(0, "minor", 80.0, "pop" if kind == "piano" else "hiphop") + [tok.bar_id]
    ours = load(path).eval()(torch.tensor([tokens]))[0, -1].detach()
    theirs, _ = rwkv_package_model(str(path)[:-4]).forward(tokens, None)
    # bf16 weights: the package upcasts them to fp32 as we do, so only summation order differs
    assert (theirs - ours).abs().max().item() < 1e-2
    assert int(theirs.argmax()) == int(ours.argmax())
