"""The training loop on tiny synthetic shards: the loss falls, outputs are written and loadable, a resumed run is the
uninterrupted run, and two DDP processes (gloo, CPU) train what one process with their global batch trains."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rwkv_core import RWKV6, RWKV6Config, load
from rwkv_core.train import TrainConfig, lr_at, main, param_groups, plot_losses

VOCAB = 16
# a tiny model that learns the synthetic task in a dozen steps
ARGS = ["--n-layer", "2", "--n-embd", "64", "--ctx-len", "32", "--lr", "1e-2", "--lr-final", "3e-4",
        "--warmup", "2", "--eval-every", "6", "--eval-batches", "4", "--threads", "1", "--seed", "0"]


def _write_shards(d: Path) -> dict:
    """Segments of arithmetic progressions mod VOCAB (start and stride vary per segment): the next token follows from
    the previous two, so a model that learns shows it in the loss. uint16 tokens + int64 segment starts + meta.json."""
    rng = np.random.default_rng(0)
    for split, n_segments in (("train", 200), ("val", 20)):
        tokens, starts = [], []
        for _ in range(n_segments):
            starts.append(len(tokens))
            a, stride, length = rng.integers(0, VOCAB), rng.integers(1, 4), rng.integers(40, 80)
            tokens += [(a + stride * i) % VOCAB for i in range(length)]
        np.asarray(tokens, dtype=np.uint16).tofile(d / f"{split}.bin")
        np.save(d / f"{split}.idx.npy", np.asarray(starts, dtype=np.int64))
    meta = {"vocab_size": VOCAB, "tokenizer": "synthetic-progressions"}
    (d / "meta.json").write_text(json.dumps(meta))
    return meta


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _run(data: Path, out: Path, *extra: str) -> None:
    threads = torch.get_num_threads()  # the loop sets torch's thread count; give the rest of the session its own
    try:
        assert main(["--data", str(data), "--out", str(out), *ARGS, *extra]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    return d, _write_shards(d)


@pytest.fixture(scope="module")
def full_run(shards, tmp_path_factory):
    """12 uninterrupted steps, batch 4."""
    out = tmp_path_factory.mktemp("full")
    _run(shards[0], out, "--batch-size", "4", "--steps", "12")
    return out


@pytest.fixture(scope="module")
def interrupted_run(shards, tmp_path_factory):
    """The same 12-step run stopped by a time budget of 0 s: after step 1, evaluated and saved."""
    out = tmp_path_factory.mktemp("interrupted")
    _run(shards[0], out, "--batch-size", "4", "--steps", "12", "--time-budget-s", "0")
    return out


def test_schedule_warms_up_then_decays_to_the_final_rate():
    cfg = TrainConfig(data="-", out="-", steps=1000, warmup=100, lr=6e-4, lr_final=6e-5)
    assert lr_at(0, cfg) == pytest.approx(6e-6)                  # linear warmup from 0
    assert lr_at(99, cfg) == pytest.approx(6e-4)                 # peak at the end of warmup
    assert lr_at(550, cfg) == pytest.approx((6e-4 + 6e-5) / 2)   # cosine midpoint
    assert lr_at(1000, cfg) == pytest.approx(6e-5)               # lands on lr_final
    after = [lr_at(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_weight_decay_on_weight_matrices_only_and_time_decay_at_twice_the_rate():
    model = RWKV6(RWKV6Config(n_layer=2, n_embd=64, vocab_size=VOCAB, ctx_len=16))
    decay, fast, plain = param_groups(model, weight_decay=0.1)
    name = {id(p): n for n, p in model.named_parameters()}
    decayed = {name[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and fast["weight_decay"] == plain["weight_decay"] == 0.0
    assert {"emb.weight", "head.weight", "blocks.1.att.key.weight", "blocks.0.ffn.value.weight"} <= decayed
    assert all(name[id(p)].endswith(".weight") and p.dim() == 2 for p in decay["params"])
    assert {name[id(p)] for p in fast["params"]} == {"blocks.0.att.time_decay", "blocks.1.att.time_decay"}
    assert fast["lr_scale"] == 2.0 and decay["lr_scale"] == plain["lr_scale"] == 1.0
    # LoRA matrices, the bonus and norms are 2-D or 1-D parameters that are not weight matrices: no decay
    plain_names = {name[id(p)] for p in plain["params"]}
    assert {"blocks.0.att.time_maa_w1", "blocks.0.att.time_faaaa", "blocks.0.ln1.weight"} <= plain_names
    assert len(decay["params"]) + len(fast["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_training_lowers_the_loss_and_writes_a_loadable_model(full_run, shards):
    rows = _rows(full_run)
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in train] == list(range(1, 13))
    assert [r["step"] for r in val] == [6, 12]
    assert train[0]["loss"] > 0.9 * math.log(VOCAB)             # starts near chance ...
    assert val[-1]["val_loss"] < 0.4 * math.log(VOCAB)          # ... and learns the progressions
    assert val[-1]["val_loss"] < val[0]["val_loss"]
    assert (full_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model = load(full_run / "model.pth")                          # best validation weights, with their sidecar
    assert model.config.vocab_size == VOCAB and model.config.n_layer == 2
    assert model.meta["data"] == shards[1]
    assert model.meta["step"] == 12 and model.meta["val_loss"] == pytest.approx(val[-1]["val_loss"], abs=1e-4)
    stored = torch.load(full_run / "model.pth", weights_only=True)
    assert all(t.dtype == torch.bfloat16 for t in stored.values())    # --save-dtype bf16 (default)


def test_time_budget_stops_cleanly_with_a_saved_model(interrupted_run):
    assert [(r["step"], "val_loss" in r) for r in _rows(interrupted_run)] == [(1, False), (1, True)]
    assert torch.load(interrupted_run / "last.pt", weights_only=True)["step"] == 1
    assert load(interrupted_run / "model.pth").meta["step"] == 1


def test_stop_after_replays_a_cut_run_on_the_full_schedule(full_run, shards, tmp_path):
    """--stop-after 5 of a 12-step schedule: the first 5 steps of the 12-step run (same windows, same LRs), then
    an evaluation and a saved model, as when a time budget ends a run there."""
    out = tmp_path / "cut"
    _run(shards[0], out, "--batch-size", "4", "--steps", "12", "--stop-after", "5")
    rows = _rows(out)
    straight = [(r["loss"], r["lr"]) for r in _rows(full_run) if "loss" in r][:5]
    assert [(r["loss"], r["lr"]) for r in rows if "loss" in r] == straight
    assert [r["step"] for r in rows if "val_loss" in r] == [5]
    assert load(out / "model.pth").meta["step"] == 5


@pytest.mark.parametrize("stop", ["0", "13"])
def test_stop_after_outside_the_schedule_is_refused(shards, tmp_path, stop, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--data", str(shards[0]), "--out", str(tmp_path / "x"), *ARGS, "--steps", "12", "--stop-after", stop])
    assert e.value.code == 2 and "--stop-after must be a step in 1..--steps (12)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()                            # refused before any work


def test_loss_plot_of_chained_stages(full_run, interrupted_run, tmp_path):
    png = tmp_path / "stages.png"
    plot_losses([interrupted_run / "log.jsonl", full_run / "log.jsonl"], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_at_the_saved_step_and_reproduces_the_uninterrupted_run(full_run, interrupted_run, shards,
                                                                                  tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(interrupted_run, out)
    _run(shards[0], out, "--batch-size", "4", "--steps", "12", "--resume")
    rows = _rows(out)
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 13))    # 2..12 appended, nothing twice
    resumed = torch.load(out / "last.pt", weights_only=True)
    straight = torch.load(full_run / "last.pt", weights_only=True)
    assert resumed["step"] == 12
    for name, t in straight["model"].items():
        assert torch.equal(resumed["model"][name], t), name       # same windows, same LR, same optimizer state
    assert [r["loss"] for r in rows if "loss" in r] == [r["loss"] for r in _rows(full_run) if "loss" in r]


@pytest.mark.e2e
def test_two_ddp_processes_resume_and_train_what_one_process_trains(full_run, interrupted_run, shards, tmp_path):
    """torchrun, 2 CPU processes on gloo, batch 2 each, resumed from the single-process checkpoint at step 1:
    the same global batch of 4 windows per step, so the result is the single-process run's."""
    out = tmp_path / "ddp"
    shutil.copytree(interrupted_run, out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rwkv_core.train", "--data", str(shards[0]), "--out", str(out), *ARGS,
           "--batch-size", "2", "--steps", "12", "--resume"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows, straight_rows = _rows(out), _rows(full_run)
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 13))
    ddp_val = [r["val_loss"] for r in rows if "val_loss" in r and r["step"] > 1]
    one_val = [r["val_loss"] for r in straight_rows if "val_loss" in r]
    assert ddp_val == pytest.approx(one_val, abs=1e-4)
    ddp_loss = [r["loss"] for r in rows if "loss" in r]          # the logged loss is the global batch's
    assert ddp_loss == pytest.approx([r["loss"] for r in straight_rows if "loss" in r], abs=1e-4)
    ddp = torch.load(out / "last.pt", weights_only=True)
    one = torch.load(full_run / "last.pt", weights_only=True)
    assert ddp["step"] == 12
    for name, t in one["model"].items():
        assert torch.allclose(ddp["model"][name], t, atol=1e-4), name
