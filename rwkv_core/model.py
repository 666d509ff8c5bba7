"""RWKV-6 ("x060") language model.

Two ways to run the same weights:
- parallel (`model(idx)`): all T positions at once with the chunked WKV; training and prompt prefill.
- recurrent (`model.step(tokens, state)`): one token per stream, O(1) memory per step; the generation engine.
Parameter names are the de-facto RWKV checkpoint layout, so `state_dict()` is the file format (see checkpoint.py).
Shapes: B batch, T time, C n_embd, H heads, N head size, F ffn width, V vocab.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rwkv_core.state import RWKVState
from rwkv_core.wkv import wkv6

D_MIX = 32          # LoRA width of the five data-dependent token-shift mixes (w, k, v, r, g)
D_DECAY = 64        # LoRA width of the data-dependent decay
LN_EPS = 1e-5
GN_EPS = 1e-5 * 8 ** 2   # GroupNorm eps of ln_x (head_size_divisor 8 in the original)


@dataclass
class RWKV6Config:
    n_layer: int
    n_embd: int            # C; attention width equals C
    vocab_size: int
    ctx_len: int           # training context; generation is unlimited
    head_size: int = 64    # N; the rwkv package assumes 64

    def __post_init__(self) -> None:
        if self.n_layer < 1 or self.n_embd % 32 or self.n_embd % self.head_size:
            raise ValueError(f"need n_layer >= 1 and n_embd a multiple of 32 and of head_size: {self}")

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    @property
    def dim_ffn(self) -> int:
        return int(3.5 * self.n_embd) // 32 * 32

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RWKV6Config":
        return cls(**{k: int(d[k]) for k in ("n_layer", "n_embd", "vocab_size", "ctx_len", "head_size") if k in d})


def _shifted(x: Tensor, prev: Tensor | None) -> Tensor:
    """x (B, T, C) -> the previous position's x; prev (B, C) is the position before x[:, 0] (zeros if None)."""
    first = torch.zeros_like(x[:, :1]) if prev is None else prev[:, None].to(x.dtype)
    return torch.cat([first, x[:, :-1]], dim=1)


class TimeMix(nn.Module):
    def __init__(self, cfg: RWKV6Config, layer_id: int):
        super().__init__()
        C, H, N = cfg.n_embd, cfg.n_head, cfg.head_size
        self.n_head, self.head_size = H, N
        # registration order = state_dict order = what the rwkv package expects
        self.time_maa_x = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_w = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_v = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_r = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_g = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_w1 = nn.Parameter(torch.empty(C, 5 * D_MIX))
        self.time_maa_w2 = nn.Parameter(torch.empty(5, D_MIX, C))
        self.time_decay = nn.Parameter(torch.empty(1, 1, C))
        self.time_decay_w1 = nn.Parameter(torch.empty(C, D_DECAY))
        self.time_decay_w2 = nn.Parameter(torch.empty(D_DECAY, C))
        self.time_faaaa = nn.Parameter(torch.empty(H, N))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.gate = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=GN_EPS)
        self._init(layer_id, cfg.n_layer)

    @torch.no_grad()
    def _init(self, layer_id: int, n_layer: int) -> None:
        C = self.time_maa_x.shape[-1]
        r01 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0   # ratio_0_to_1 (L = 1 would divide by zero)
        r10 = 1.0 - layer_id / n_layer                           # ratio_1_to_almost0
        ddd = torch.arange(C, dtype=torch.float32) / C
        self.time_maa_x.copy_(1 - ddd ** r10)
        self.time_maa_w.copy_(1 - ddd ** r10)
        self.time_maa_k.copy_(1 - ddd ** r10)
        self.time_maa_v.copy_(1 - (ddd ** r10 + 0.3 * r01))
        self.time_maa_r.copy_(1 - ddd ** (0.5 * r10))
        self.time_maa_g.copy_(1 - ddd ** (0.5 * r10))
        self.time_maa_w1.zero_()
        self.time_maa_w2.uniform_(-0.01, 0.01)
        n = torch.arange(C, dtype=torch.float32)
        self.time_decay.copy_(-6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r01))
        self.time_decay_w1.zero_()
        self.time_decay_w2.uniform_(-0.01, 0.01)
        self.time_faaaa.copy_((r01 * (1 - n / (C - 1)) + ((n + 1) % 3 - 1) * 0.1).view_as(self.time_faaaa))
        nn.init.orthogonal_(self.receptance.weight)
        nn.init.orthogonal_(self.key.weight, gain=0.1)
        nn.init.orthogonal_(self.value.weight)
        nn.init.orthogonal_(self.gate.weight, gain=0.1)
        self.output.weight.zero_()

    def forward(self, x: Tensor, prev: Tensor | None, wkv_state: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (B, T, C) layer-normed; prev (B, C) the token before; wkv_state (B, H, N, N) -> (out, new wkv state)."""
        B, T, C = x.shape
        H, N = self.n_head, self.head_size
        xx = _shifted(x, prev) - x
        xxx = x + xx * self.time_maa_x
        mix = torch.tanh(xxx @ self.time_maa_w1).view(B * T, 5, D_MIX).transpose(0, 1)   # (5, B*T, D_MIX)
        mw, mk, mv, mr, mg = torch.bmm(mix, self.time_maa_w2).view(5, B, T, C).unbind(0)
        x_w = x + xx * (self.time_maa_w + mw)
        x_k = x + xx * (self.time_maa_k + mk)
        x_v = x + xx * (self.time_maa_v + mv)
        x_r = x + xx * (self.time_maa_r + mr)
        x_g = x + xx * (self.time_maa_g + mg)
        r, k, v = self.receptance(x_r), self.key(x_k), self.value(x_v)
        g = F.silu(self.gate(x_g))
        w = self.time_decay.float() + torch.tanh(x_w @ self.time_decay_w1) @ self.time_decay_w2   # raw decay, fp32
        y, wkv_state = wkv6(r.view(B, T, H, N), k.view(B, T, H, N), v.view(B, T, H, N), w.view(B, T, H, N),
                            self.time_faaaa, wkv_state)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * g), wkv_state


class ChannelMix(nn.Module):
    def __init__(self, cfg: RWKV6Config, layer_id: int):
        super().__init__()
        C, Fd = cfg.n_embd, cfg.dim_ffn
        self.time_maa_k = nn.Parameter(torch.empty(1, 1, C))
        self.time_maa_r = nn.Parameter(torch.empty(1, 1, C))
        self.key = nn.Linear(C, Fd, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(Fd, C, bias=False)
        with torch.no_grad():
            r10 = 1.0 - layer_id / cfg.n_layer
            ddd = torch.arange(C, dtype=torch.float32) / C
            self.time_maa_k.copy_(1 - ddd ** r10)
            self.time_maa_r.copy_(1 - ddd ** r10)
            nn.init.orthogonal_(self.key.weight)
            self.receptance.weight.zero_()
            self.value.weight.zero_()

    def forward(self, x: Tensor, prev: Tensor | None) -> Tensor:
        xx = _shifted(x, prev) - x
        k = torch.relu(self.key(x + xx * self.time_maa_k)).square()
        return torch.sigmoid(self.receptance(x + xx * self.time_maa_r)) * self.value(k)


class Block(nn.Module):
    def __init__(self, cfg: RWKV6Config, layer_id: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd, eps=LN_EPS)
        self.att = TimeMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg, layer_id)


class RWKV6(nn.Module):
    def __init__(self, config: RWKV6Config):
        super().__init__()
        self.config = config
        self.meta: dict[str, Any] = {}     # filled by checkpoint.load from the JSON sidecar
        C, V = config.n_embd, config.vocab_size
        self.emb = nn.Embedding(V, C)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_out = nn.LayerNorm(C, eps=LN_EPS)
        self.head = nn.Linear(C, V, bias=False)
        with torch.no_grad():
            nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
            nn.init.orthogonal_(self.head.weight, gain=0.5 * math.sqrt(V / C) if V > C else 0.5)
        self._recurrent: RecurrentStep | None = None

    # ---- parallel mode -----------------------------------------------------------------------------------------
    def forward(self, idx: Tensor, state: RWKVState | None = None,
                return_state: bool = False) -> Tensor | tuple[Tensor, RWKVState]:
        """idx (B, T) long -> logits (B, T, V); with state, continue from it; return_state adds the final state."""
        x = self.emb(idx)                                              # (B, T, C)
        x = self.blocks[0].ln0(x)
        shifts, wkvs = [], []
        for i, block in enumerate(self.blocks):
            prev_att = prev_ffn = wkv_in = None
            if state is not None:
                prev_att, prev_ffn, wkv_in = state.shift[i, 0], state.shift[i, 1], state.wkv[i]
            xa = block.ln1(x)
            att, wkv_out = block.att(xa, prev_att, wkv_in)
            x = x + att
            xf = block.ln2(x)
            x = x + block.ffn(xf, prev_ffn)
            if return_state:
                shifts.append(torch.stack([xa[:, -1], xf[:, -1]]))
                wkvs.append(wkv_out)
        logits = self.head(self.ln_out(x))
        if not return_state:
            return logits
        dtype = state.shift.dtype if state is not None else self.emb.weight.dtype
        return logits, RWKVState(torch.stack(shifts).to(dtype), torch.stack(wkvs).float())

    # ---- recurrent mode ----------------------------------------------------------------------------------------
    def init_state(self, batch_size: int) -> RWKVState:
        """Zero state for batch_size independent streams, on the model's device."""
        cfg, p = self.config, self.emb.weight
        return RWKVState(
            torch.zeros(cfg.n_layer, 2, batch_size, cfg.n_embd, dtype=p.dtype, device=p.device),
            torch.zeros(cfg.n_layer, batch_size, cfg.n_head, cfg.head_size, cfg.head_size,
                        dtype=torch.float32, device=p.device))

    def step(self, tokens: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        """tokens (B,) long -> (logits (B, V), next state). Inference only (no autograd); `state` is not modified."""
        return self.recurrent()(tokens, state)

    def recurrent(self) -> "RecurrentStep":
        """The step function over a snapshot of the weights, rebuilt here whenever a parameter changed in place or
        moved (optimizer step, load_state_dict, .to(device)). A generation takes it once and steps it without this
        check, which lists every parameter (about 90 us, 5 % of a CPU step)."""
        if self._recurrent is None or self._recurrent.key != _weights_key(self._recurrent.params):
            self._recurrent = _cpu_step(self) if NumpyStep.runs(self) else TorchStep(self)
        return self._recurrent


def _cpu_step(model: RWKV6) -> "RecurrentStep":
    """The C step where it builds on this machine, else NumpyStep (same arithmetic; composing about 1.5x slower),
    the reason said once."""
    from rwkv_core.cpu_step import CStep, load_library

    try:
        load_library()
    except (RuntimeError, OSError) as e:
        _say_once(f"{e}; stepping in numpy instead")
        return NumpyStep(model)
    return CStep(model)


@functools.cache
def _say_once(message: str) -> None:
    logging.getLogger(__name__).warning(message)


def _weights_key(params: list[nn.Parameter]) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in params)


class RecurrentStep:
    """`step(tokens (B,), state) -> (logits (B, V), next state)` on weights rearranged for one token at a time.

    At batch sizes up to a few streams a step is all dispatch overhead: about 25 small ops per layer. Three forms
    of the same arithmetic (tests hold each to the parallel form):
    - TorchStep, any device and dtype (the GPU path);
    - NumpyStep, fp32 on CPU: numpy dispatches a small op in about 1 us where torch takes 3-20 us (a 1 x 192 @
      192 x 672 product: 8 us against 20 us), so a step costs about half. Its logits differ from torch's by about
      1e-6;
    - CStep (rwkv_core/cpu_step.py), NumpyStep's weights and arithmetic in one C call a token, what the app and
      the CLI run where a C compiler is found: about 2.5x faster again at batch 1, and it lets go of the GIL.
    Measurements: benchmarks/RESULTS.md, "Speed (issue 15)".
    """

    def __init__(self, model: RWKV6):
        self.params = list(model.parameters())   # listing them is the slow part of the staleness check
        self.key = _weights_key(self.params)

    def __call__(self, tokens: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        raise NotImplementedError


class TorchStep(RecurrentStep):
    def __init__(self, model: RWKV6):
        super().__init__(model)
        with torch.no_grad():
            ln0 = model.blocks[0].ln0
            self.emb = F.layer_norm(model.emb.weight, (model.config.n_embd,), ln0.weight, ln0.bias, LN_EPS)
            self.layers = [_TorchLayer(b) for b in model.blocks]
            self.ln_out_w, self.ln_out_b = model.ln_out.weight.detach(), model.ln_out.bias.detach()
            self.head = model.head.weight.detach()

    @torch.no_grad()
    def __call__(self, tokens: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        new = RWKVState(torch.empty_like(state.shift), torch.empty_like(state.wkv))
        x = self.emb[tokens]                                              # (B, C), ln0 already applied
        for i, lw in enumerate(self.layers):
            x = lw.step(x, state.shift[i], state.wkv[i], new.shift[i], new.wkv[i])
        logits = F.linear(F.layer_norm(x, x.shape[-1:], self.ln_out_w, self.ln_out_b, LN_EPS), self.head)
        return logits, new


class _TorchLayer:
    """One block's weights rearranged for a single-token step: the five mixes and the k/v/r/g projections are
    each one batched op, so a step costs few kernel launches."""
    def __init__(self, block: Block):
        a, f = block.att, block.ffn
        self.H, self.N = a.n_head, a.head_size
        self.ln1 = (block.ln1.weight, block.ln1.bias)
        self.ln2 = (block.ln2.weight, block.ln2.bias)
        self.maa_x = a.time_maa_x.view(-1)
        self.maa_5 = torch.cat([a.time_maa_w, a.time_maa_k, a.time_maa_v, a.time_maa_r, a.time_maa_g])  # (5, 1, C)
        self.maa_w1, self.maa_w2 = a.time_maa_w1, a.time_maa_w2
        self.decay = a.time_decay.view(-1).float()
        self.decay_w1, self.decay_w2 = a.time_decay_w1, a.time_decay_w2
        self.u = a.time_faaaa.float().view(self.H, self.N, 1)
        # (4, C_in, C_out) for bmm over the k, v, r, g mixes (mix order w, k, v, r, g; w goes to the decay LoRA)
        self.w_kvrg = torch.stack([a.key.weight.t(), a.value.weight.t(), a.receptance.weight.t(), a.gate.weight.t()])
        self.ln_x = (a.ln_x.weight, a.ln_x.bias)
        self.w_out = a.output.weight
        self.ffn_maa_k, self.ffn_maa_r = f.time_maa_k.view(-1), f.time_maa_r.view(-1)
        self.ffn_key, self.ffn_rec, self.ffn_value = f.key.weight, f.receptance.weight, f.value.weight

    def step(self, x: Tensor, shift: Tensor, S: Tensor, shift_out: Tensor, S_out: Tensor) -> Tensor:
        """x (B, C); shift (2, B, C) previous ln1/ln2 outputs; S (B, H, N, N) fp32. Writes the next shift and
        WKV state into shift_out and S_out (preallocated, so no per-step stacking) and returns the block's output."""
        B, C = x.shape
        H, N = self.H, self.N
        xa = F.layer_norm(x, (C,), *self.ln1, LN_EPS)
        xx = shift[0].to(x.dtype) - xa
        mix = torch.tanh(torch.addcmul(xa, xx, self.maa_x) @ self.maa_w1)                # (B, 5 * D_MIX)
        mix = torch.bmm(mix.view(B, 5, D_MIX).transpose(0, 1), self.maa_w2)               # (5, B, C)
        xm = torch.addcmul(xa, xx, self.maa_5 + mix)                                       # (5, B, C): w k v r g
        k, v, r, g = torch.bmm(xm[1:], self.w_kvrg).unbind(0)                               # each (B, C)
        w = self.decay + torch.tanh(xm[0] @ self.decay_w1) @ self.decay_w2
        d = torch.exp(-torch.exp(w.float())).view(B, H, N, 1)                              # decay per key, fp32
        kv = k.float().view(B, H, N, 1) * v.float().view(B, H, 1, N)                       # (B, H, N, N)
        y = r.float().view(B, H, 1, N) @ torch.addcmul(S, self.u, kv)                      # (B, H, 1, N)
        torch.addcmul(kv, d, S, out=S_out)
        y = F.group_norm(y.view(B, C), H, *self.ln_x, GN_EPS).to(x.dtype)
        x = x + F.linear(y * F.silu(g), self.w_out)
        xf = F.layer_norm(x, (C,), *self.ln2, LN_EPS)
        xx = shift[1].to(x.dtype) - xf
        kf = torch.relu(F.linear(torch.addcmul(xf, xx, self.ffn_maa_k), self.ffn_key)).square()
        rf = torch.sigmoid(F.linear(torch.addcmul(xf, xx, self.ffn_maa_r), self.ffn_rec))
        shift_out[0].copy_(xa)
        shift_out[1].copy_(xf)
        return x + rf * F.linear(kf, self.ffn_value)


def _np(t: Tensor, transpose: bool = False) -> np.ndarray:
    """A weight as a C-contiguous fp32 numpy copy, (in, out) when transposed so that x @ w is F.linear(x, t)."""
    t = t.detach().float()
    return np.ascontiguousarray((t.t() if transpose else t).cpu().numpy())


def _np_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    """Normalize x over its last axis and return w * x + b as (B, C): layer norm for x (B, C), group norm (groups =
    heads) for x (B, H, N). The means are products with a (n, 1) column of 1/n: cheaper than sum() or mean()."""
    avg = _averager(x.shape[-1])
    x = x - x @ avg
    x = x / np.sqrt((x * x) @ avg + eps)
    return x.reshape(x.shape[0], -1) * w + b


@functools.cache
def _averager(n: int) -> np.ndarray:
    return np.full((n, 1), 1.0 / n, np.float32)


class NumpyStep(RecurrentStep):
    @staticmethod
    def runs(model: RWKV6) -> bool:
        p = model.emb.weight
        return p.device.type == "cpu" and p.dtype == torch.float32

    def __init__(self, model: RWKV6):
        super().__init__(model)
        with torch.no_grad():
            ln0 = model.blocks[0].ln0
            self.emb = _np(F.layer_norm(model.emb.weight, (model.config.n_embd,), ln0.weight, ln0.bias, LN_EPS))
        self.layers = [_NumpyLayer(b) for b in model.blocks]
        self.ln_out = (_np(model.ln_out.weight), _np(model.ln_out.bias))
        self.head = _np(model.head.weight, transpose=True)

    def __call__(self, tokens: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        shift, wkv = state.shift.detach().numpy(), state.wkv.detach().numpy()   # views, not copies
        new_shift, new_wkv = np.empty_like(shift), np.empty_like(wkv)
        x = self.emb[tokens.numpy()]                                     # (B, C), ln0 already applied
        with np.errstate(over="ignore"):     # exp overflowing to inf gives the limit (a decay of 0), as in torch
            for i, layer in enumerate(self.layers):
                x = layer.step(x, shift[i], wkv[i], new_shift[i], new_wkv[i])
        logits = _np_norm(x, *self.ln_out, LN_EPS) @ self.head
        return torch.from_numpy(logits), RWKVState(torch.from_numpy(new_shift), torch.from_numpy(new_wkv))


class _NumpyLayer:
    """_TorchLayer's arithmetic in numpy, with the same batching of the mixes and projections."""

    def __init__(self, block: Block):
        a, f = block.att, block.ffn
        self.H, self.N = a.n_head, a.head_size
        self.ln1 = (_np(block.ln1.weight), _np(block.ln1.bias))
        self.ln2 = (_np(block.ln2.weight), _np(block.ln2.bias))
        self.maa_x = _np(a.time_maa_x).reshape(-1)
        self.maa_5 = _np(torch.cat([a.time_maa_w, a.time_maa_k, a.time_maa_v, a.time_maa_r, a.time_maa_g]))
        self.maa_w1, self.maa_w2 = _np(a.time_maa_w1), _np(a.time_maa_w2)
        self.decay = _np(a.time_decay).reshape(-1)
        self.decay_w1, self.decay_w2 = _np(a.time_decay_w1), _np(a.time_decay_w2)
        self.u = _np(a.time_faaaa).reshape(self.H, self.N)
        self.w_kvrg = np.stack([_np(a.key.weight, True), _np(a.value.weight, True), _np(a.receptance.weight, True),
                                _np(a.gate.weight, True)])                                   # (4, C_in, C_out)
        self.ln_x = (_np(a.ln_x.weight), _np(a.ln_x.bias))
        self.w_out = _np(a.output.weight, True)
        self.ffn_maa_k, self.ffn_maa_r = _np(f.time_maa_k).reshape(-1), _np(f.time_maa_r).reshape(-1)
        self.ffn_key, self.ffn_rec = _np(f.key.weight, True), _np(f.receptance.weight, True)
        self.ffn_value = _np(f.value.weight, True)

    def step(self, x: np.ndarray, shift: np.ndarray, S: np.ndarray, shift_out: np.ndarray,
             S_out: np.ndarray) -> np.ndarray:
        """As _TorchLayer.step, on numpy arrays: x (B, C); shift (2, B, C); S (B, H, N, N)."""
        B = len(x)
        H, N = self.H, self.N
        xa = shift_out[0] = _np_norm(x, *self.ln1, LN_EPS)
        xx = shift[0] - xa
        mix = np.tanh((xa + xx * self.maa_x) @ self.maa_w1)                              # (B, 5 * D_MIX)
        mix = np.matmul(mix.reshape(B, 5, D_MIX).transpose(1, 0, 2), self.maa_w2)        # (5, B, C)
        xm = xa + xx * (self.maa_5 + mix)                                                  # (5, B, C): w k v r g
        k, v, r, g = np.matmul(xm[1:], self.w_kvrg)                                       # each (B, C)
        w = self.decay + np.tanh(xm[0] @ self.decay_w1) @ self.decay_w2
        k, v, r = k.reshape(B, H, N), v.reshape(B, H, 1, N), r.reshape(B, H, 1, N)
        kv = k[..., None] * v                                                              # (B, H, N, N)
        # r @ (S + u k v^T) = r @ S + (r . u k) v: the bonus term without a second (B, H, N, N) array
        y = np.matmul(r, S) + np.matmul(r, (self.u * k)[..., None]) * v                   # (B, H, 1, N)
        np.multiply(np.exp(-np.exp(w)).reshape(B, H, N, 1), S, out=S_out)
        S_out += kv
        y = _np_norm(y.reshape(B, H, N), *self.ln_x, GN_EPS)
        x = x + (y * g / (1.0 + np.exp(-g))) @ self.w_out
        xf = shift_out[1] = _np_norm(x, *self.ln2, LN_EPS)
        xx = shift[1] - xf
        kf = np.maximum((xf + xx * self.ffn_maa_k) @ self.ffn_key, 0.0)
        rf = 1.0 / (1.0 + np.exp(-((xf + xx * self.ffn_maa_r) @ self.ffn_rec)))
        return x + rf * ((kf * kf) @ self.ffn_value)
