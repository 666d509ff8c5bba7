"""Train an RWKV-6 language model on token shards. Knows nothing about what the tokens mean.

    python -m rwkv_core.train --data DIR --out OUT [--steps N ...]           one process (CPU or one GPU)
    torchrun --nproc_per_node 2 -m rwkv_core.train --data DIR --out OUT ...   DDP (gloo on CPU, nccl on GPU)

Data (DIR): train.bin / val.bin: np.uint16 tokens, segments concatenated; optional train.idx.npy / val.idx.npy:
int64 segment start offsets (windows then start at segment starts, else anywhere); meta.json: {"vocab_size": V, ...}.
Writes (OUT): last.pt (model + optimizer + step, for --resume), model.pth + model.json (best validation weights in
the rwkv-package layout, via rwkv_core.save), log.jsonl, loss.png.

Recipe (the original RWKV-6 one): AdamW (betas 0.9/0.99, eps 1e-8) with weight decay on the 2-D weight matrices
only, time_decay at 2x the learning rate, linear warmup then cosine from --lr to --lr-final, gradient clipping,
bf16 autocast on CUDA (fp32 on CPU; the WKV state stays fp32 either way).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from rwkv_core.checkpoint import load, save
from rwkv_core.config import add_config_args, config_from_args, opt
from rwkv_core.model import RWKV6, RWKV6Config

SAVE_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
VAL_SEED = 1_000_003  # validation windows are the same at every evaluation, so the numbers compare


@dataclass
class TrainConfig:
    data: str = field(metadata={"help": "folder with train.bin / val.bin (+ .idx.npy) and meta.json"})
    out: str = field(metadata={"help": "output folder (last.pt, model.pth, log.jsonl, loss.png)"})
    n_layer: int = opt(4, "layers of a new model")
    n_embd: int = opt(256, "width of a new model (a multiple of 64)")
    ctx_len: int = opt(512, "tokens per training window")
    batch_size: int = opt(8, "windows per step and process (global batch = this x processes)")
    steps: int = opt(2000, "optimizer steps; the LR schedule ends here")
    lr: float = opt(6e-4, "peak learning rate")
    lr_final: float = opt(6e-5, "learning rate at the last step (cosine from --lr)")
    warmup: int = opt(100, "steps of linear warmup from 0")
    grad_clip: float = opt(1.0, "max global gradient norm; 0 disables")
    weight_decay: float = opt(0.1, "AdamW weight decay of the 2-D weight matrices")
    eval_every: int = opt(200, "steps between validation runs (each also saves last.pt)")
    eval_batches: int = opt(16, "global batches per validation run")
    seed: int = opt(0, "seed of the initial weights and of the training windows")
    threads: int = opt(2, "torch CPU threads per process")
    resume: bool = opt(False, "continue from OUT/last.pt (model, optimizer, step)")
    init_from: str | None = opt(None, "start from these weights (a model.pth written by rwkv_core.save)")
    save_dtype: str = opt("bf16", "dtype of model.pth: bf16 (half the size) or fp32")
    time_budget_s: float | None = opt(None, "stop cleanly (evaluate, save) after this many seconds")
    stop_after: int | None = opt(None, "stop cleanly (evaluate, save) after this step; the LR schedule still "
                                        "ends at --steps (replays a run that a time budget cut short)")
    device: str = opt("auto", "auto: cuda if available, else cpu")


# ---- data -------------------------------------------------------------------------------------------------------

class TokenShard:
    """One split of token data: windows of ctx_len + 1 tokens (inputs and next-token targets)."""

    def __init__(self, data_dir: Path, split: str, ctx_len: int, vocab_size: int):
        path = data_dir / f"{split}.bin"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing (expected uint16 token shards, see `text2lofi data`)")
        self.tokens = np.memmap(path, dtype=np.uint16, mode="r")
        self.window = ctx_len + 1
        n = len(self.tokens)
        if n < self.window:
            raise ValueError(f"{path}: {n} tokens, fewer than one window of ctx_len + 1 = {self.window}")
        top = int(self.tokens.max())
        if top >= vocab_size:
            raise ValueError(f"{path}: token id {top} >= vocab_size {vocab_size} from meta.json")
        idx_path = data_dir / f"{split}.idx.npy"
        # segment starts that leave room for a whole window; None: any offset
        self.starts = None
        if idx_path.exists():
            starts = np.load(idx_path).astype(np.int64)
            self.starts = starts[(starts >= 0) & (starts <= n - self.window)]
            if len(self.starts) == 0:
                raise ValueError(f"{idx_path}: no segment start leaves room for a window of {self.window} tokens")

    def offsets(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random window starts."""
        if self.starts is not None:
            return self.starts[rng.integers(0, len(self.starts), n)]
        return rng.integers(0, len(self.tokens) - self.window + 1, n)

    def windows(self, offsets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """-> inputs, targets: (len(offsets), ctx_len) int64."""
        w = torch.from_numpy(np.stack([self.tokens[o:o + self.window] for o in offsets]).astype(np.int64))
        return w[:, :-1], w[:, 1:]


def read_meta(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (it must give at least vocab_size)")
    meta = json.loads(path.read_text())
    if "vocab_size" not in meta:
        raise ValueError(f"{path} has no vocab_size")
    return meta


# ---- optimisation -------------------------------------------------------------------------------------------------

def param_groups(model: RWKV6, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the 2-D weight matrices (embedding, projections, head) only; time_decay at 2x the LR;
    everything else (norms, token-shift mixes, LoRAs, bonus) plain. `lr_scale` multiplies the scheduled LR."""
    decay, fast, plain = [], [], []
    for name, p in model.named_parameters():
        if name.endswith("att.time_decay"):
            fast.append(p)
        elif name.endswith(".weight") and p.dim() == 2:
            decay.append(p)
        else:
            plain.append(p)
    return [dict(params=decay, weight_decay=weight_decay, lr_scale=1.0),
            dict(params=fast, weight_decay=0.0, lr_scale=2.0),
            dict(params=plain, weight_decay=0.0, lr_scale=1.0)]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over cfg.warmup steps, then cosine from cfg.lr down to cfg.lr_final at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * progress))


def train_batch(shard: TokenShard, cfg: TrainConfig, step: int, rank: int, world: int):
    """This process's share of the step's global batch of cfg.batch_size * world windows. The windows depend on
    (seed, step) only: a resumed run sees what the uninterrupted one would, and N processes with batch B train on
    what one process with batch N * B would."""
    offsets = shard.offsets(cfg.batch_size * world, np.random.default_rng([cfg.seed, step]))
    return shard.windows(offsets[rank * cfg.batch_size:(rank + 1) * cfg.batch_size])


# ---- the run --------------------------------------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(use_cuda: bool) -> _Dist:
    # torchrun announces the process group through these variables
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist()
    d = _Dist(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return d


def _autocast(device: torch.device):
    # bf16 matmuls on CUDA; CPU trains in fp32 (CPU bf16 autocast is slower on most CPUs)
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate(model: nn.Module, shard: TokenShard, cfg: TrainConfig, d: _Dist, device: torch.device) -> float:
    """Mean next-token loss (nats) on cfg.eval_batches fixed global batches (the same windows at every evaluation
    and for any number of processes at the same global batch size), each process taking its share of each batch."""
    model.eval()
    B = cfg.batch_size
    offsets = shard.offsets(cfg.eval_batches * B * d.world, np.random.default_rng(VAL_SEED))
    offsets = offsets.reshape(cfg.eval_batches, d.world, B)[:, d.rank]
    total = torch.zeros((), dtype=torch.float64, device=device)  # sum of per-batch mean losses
    for batch_offsets in offsets:
        x, y = shard.windows(batch_offsets)
        with _autocast(device):
            logits = model(x.to(device))
        total += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten()).item()
    if d.world > 1:
        dist.all_reduce(total)
    model.train()
    return total.item() / (cfg.eval_batches * d.world)


def plot_losses(log_paths: Path | Sequence[Path], png_path: Path) -> None:
    """Training loss per step (and its running mean) and validation loss, from the JSONL log; several logs are
    stages run one after another (each --init-from the last), drawn end to end with a line at each stage start."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train, val, starts, offset = [], [], [], 0
    for log_path in [log_paths] if isinstance(log_paths, Path) else log_paths:
        rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
        train += [(offset + r["step"], r["loss"]) for r in rows if "loss" in r]
        val += [(offset + r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        starts.append(offset)
        offset = train[-1][0] if train else offset
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for s in starts[1:]:
        ax.axvline(s, color="grey", ls=":", lw=0.8)
    if train:
        steps, losses = zip(*train)
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, lw=0.8, label="train")
        k = len(losses) // 50  # running mean over ~2% of the run
        if k > 1:
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, color="tab:blue", lw=1.5, label=f"train (mean of {k})")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:orange", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns a summary: steps, best and last validation loss, paths, tokens/s."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    d = _init_distributed(use_cuda)
    try:
        return _train(cfg, d, torch.device(f"cuda:{d.local_rank}" if use_cuda else "cpu"))
    finally:
        if d.world > 1:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: _Dist, device: torch.device) -> dict[str, Any]:
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    data_dir, out = Path(cfg.data), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data_meta = read_meta(data_dir)
    vocab = int(data_meta["vocab_size"])
    last_path, log_path = out / "last.pt", out / "log.jsonl"

    resume = torch.load(last_path, map_location="cpu", weights_only=True) if cfg.resume and last_path.exists() else None
    if cfg.resume and resume is None and d.main:
        print(f"--resume: {last_path} not found, starting fresh")
    if resume is not None:
        model = RWKV6(RWKV6Config.from_dict(resume["model_config"]))
        model.load_state_dict(resume["model"])
    elif cfg.init_from:
        model = load(cfg.init_from)
    else:
        torch.manual_seed(cfg.seed)  # every process builds the same initial weights
        model = RWKV6(RWKV6Config(cfg.n_layer, cfg.n_embd, vocab, cfg.ctx_len))
    mcfg = model.config
    if mcfg.vocab_size != vocab:
        raise ValueError(f"model vocab_size {mcfg.vocab_size} != data vocab_size {vocab}")
    model.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
    step, best_val, tokens_seen = 0, math.inf, 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        step, best_val, tokens_seen = resume["step"], resume["best_val"], resume["tokens_seen"]
        cfg = replace(cfg, seed=resume["config"]["seed"])  # the windows of step s depend on (seed, s)
    if d.main and log_path.exists():
        # keep what led to the resumed step; drop rows a crash left after the last checkpoint (or all, if fresh)
        rows = [r for r in log_path.read_text().splitlines() if r.strip() and json.loads(r)["step"] <= step]
        log_path.write_text("".join(r + "\n" for r in rows) if resume is not None else "")
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if device.type == "cuda" else None)

    train_shard = TokenShard(data_dir, "train", cfg.ctx_len, vocab)
    val_shard = TokenShard(data_dir, "val", cfg.ctx_len, vocab)
    meta = {"data": data_meta, "train": {**asdict(cfg), "model_config": mcfg.to_dict()}}

    def log(row: dict[str, Any]) -> None:
        if d.main:
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    def checkpoint(val: float) -> None:
        nonlocal best_val
        if val < best_val:
            best_val = val
            if d.main:
                save(model, out / "model.pth", meta={**meta, "step": step, "val_loss": val, "tokens_seen": tokens_seen},
                     dtype=SAVE_DTYPES[cfg.save_dtype])
        if d.main:
            _save_atomic(dict(model=model.state_dict(), model_config=mcfg.to_dict(), optimizer=optimizer.state_dict(),
                              step=step, best_val=best_val, tokens_seen=tokens_seen, config=asdict(cfg)), last_path)
            plot_losses(log_path, out / "loss.png")

    start, start_step, val = time.monotonic(), step, math.nan
    bar = tqdm(total=cfg.steps, initial=step, disable=not d.main, desc="train", dynamic_ncols=True)
    while step < cfg.steps:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        x, y = train_batch(train_shard, cfg, step, d.rank, d.world)
        with _autocast(device):
            logits = net(x.to(device))
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer.step()
        step += 1
        tokens_seen += x.numel() * d.world
        loss = loss.detach()
        if d.world > 1:  # log the global batch's loss, not this process's share
            dist.all_reduce(loss)
            loss /= d.world
        elapsed = time.monotonic() - start
        log(dict(step=step, loss=round(loss.item(), 5), lr=lr, grad_norm=round(grad_norm.item(), 4),
                 tokens=tokens_seen, elapsed_s=round(elapsed, 2)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")

        out_of_time = ((cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s)
                       or (cfg.stop_after is not None and step >= cfg.stop_after))
        if d.world > 1 and cfg.time_budget_s is not None:  # every process must stop at the same step
            flag = torch.tensor([float(out_of_time)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            val = evaluate(model, val_shard, cfg, d, device)
            log(dict(step=step, val_loss=round(val, 5), elapsed_s=round(time.monotonic() - start, 2)))
            if d.main:
                bar.write(f"step {step}: val loss {val:.4f}")
            checkpoint(val)
        if out_of_time:
            if d.main:
                bar.write(f"stopped early at step {step} (time budget {cfg.time_budget_s} s, stop after "
                          f"{cfg.stop_after})")
            break
    bar.close()
    elapsed = time.monotonic() - start
    return dict(step=step, best_val_loss=best_val, last_val_loss=val, model=str(out / "model.pth"),
                tokens_per_s=(step - start_step) * cfg.batch_size * cfg.ctx_len * d.world / max(elapsed, 1e-9))


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field: --n-layer for n_layer, and so on."""
    p = argparse.ArgumentParser(prog="python -m rwkv_core.train", description=__doc__.split("\n")[0])
    return add_config_args(p, TrainConfig, choices={"save_dtype": sorted(SAVE_DTYPES), "device": ["auto", "cpu", "cuda"]})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    cfg = config_from_args(TrainConfig, parser.parse_args(argv))
    if cfg.stop_after is not None and not 1 <= cfg.stop_after <= cfg.steps:
        parser.error(f"--stop-after must be a step in 1..--steps ({cfg.steps}), got {cfg.stop_after}")
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
