"""Checkpoint I/O in the RWKV layout: `x.pth` is a plain dict of tensors the `rwkv` PyPI package loads as is;
`x.json` (same stem) carries our config and free-form meta (tokenizer, data, training step)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rwkv_core.model import RWKV6, RWKV6Config

FORMAT = "rwkv6-x060"


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _unwrap(model: nn.Module) -> RWKV6:
    # torch.compile wraps in `_orig_mod`, DDP in `module`: their prefixes must not reach the file
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    if not isinstance(model, RWKV6):
        raise TypeError(f"expected an RWKV6 model, got {type(model).__name__}")
    return model


def save(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None,
         dtype: torch.dtype = torch.float32) -> Path:
    """Write the weights (fp32 by default; bf16 halves the file but the rwkv package's logits then differ by ~4e-3)
    and the JSON sidecar. Name the file `*.pth` for the rwkv package. Returns the weights path."""
    model = _unwrap(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # plain dict in natural state_dict order (the rwkv package detects version and heads by walking the keys)
    weights = {name: t.detach().to("cpu", dtype).contiguous() for name, t in model.state_dict().items()}
    torch.save(weights, path)
    sidecar = {"format": FORMAT, "config": model.config.to_dict(), "dtype": str(dtype).removeprefix("torch."),
               "meta": dict(meta if meta is not None else model.meta)}
    sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> RWKV6:
    """Build the model from the sidecar's config and load the weights (as fp32); `model.meta` is the sidecar's meta."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.exists():
        raise FileNotFoundError(f"{side} (config sidecar of {path}) is missing")
    info = json.loads(side.read_text())
    model = RWKV6(RWKV6Config.from_dict(info["config"]))
    weights = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    model.meta = info.get("meta", {})
    return model.to(map_location)
