"""The project's one sampling function and its generation engine.

`sample_logits` turns (B, V) logits into (B,) tokens (temperature, top-k, top-p, an allowed-token mask, a seeded
generator). `TokenStream` drives an RWKV6 in recurrent mode for a batch of independent streams: it prefills a prompt
in parallel mode, then samples or force-feeds one step at a time with constant memory. Callers (composer, CLI, app,
evaluation) never write their own sampling loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rwkv_core.model import RWKV6
from rwkv_core.state import RWKVState


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0   # 0 = greedy (argmax)
    top_k: int = 0             # keep the k most likely tokens; 0 = off
    top_p: float = 1.0         # keep the smallest set of tokens whose probability reaches p; 1.0 = off

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1: {self}")


def sample_logits(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator,
                  mask: Tensor | None = None) -> Tensor:
    """logits (B, V) -> tokens (B,) long. mask: bool (B, V), True = allowed; every row must allow a token.
    Deterministic for a given generator state."""
    logits = logits.float()
    neg_inf = float("-inf")
    if mask is not None:
        if mask.shape != logits.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool {tuple(logits.shape)}, got {mask.dtype} {tuple(mask.shape)}")
        empty = ~mask.any(dim=-1)
        if empty.any():
            raise ValueError(f"mask allows no token for stream(s) {empty.nonzero().flatten().tolist()}")
        logits = logits.masked_fill(~mask, neg_inf)
    if cfg.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / cfg.temperature
    if 0 < cfg.top_k < logits.shape[-1]:
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.topk(cfg.top_k, dim=-1).indices, True)
        logits = logits.masked_fill(~keep, neg_inf)
    if cfg.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token once the more likely ones already reach top_p (the most likely token always stays)
        drop = (probs.cumsum(dim=-1) - probs) >= cfg.top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, neg_inf))
    probs = logits.softmax(dim=-1).to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


@dataclass(frozen=True)
class ContextWindow:
    """Keeps each stream of a TokenStream near the context length its model was trained on.

    An RWKV state carries everything since the prompt, and a model trained on ctx_len-token windows has never seen
    a state older than that: past it, generation can drift (the shipped piano, trained 24M tokens at ctx 512, loses
    its bar structure after a few hundred tokens without this). RWKV has no attention window to slide, so a stream
    that holds more than `max_tokens` restarts, at the next `boundary` token it takes in, from a fresh state on its
    prompt plus its most recent whole spans (each beginning at a boundary, e.g. a Bar) that fit in `keep_tokens`.
    That context looks like the start of a training window: prompt, then whole bars.
    """
    max_tokens: int      # prompt included
    keep_tokens: int     # tokens after the prompt that survive a restart (whole spans only)
    boundary: int        # token id that begins a span

    def __post_init__(self) -> None:
        if not 0 < self.keep_tokens < self.max_tokens:
            raise ValueError(f"need 0 < keep_tokens < max_tokens: {self}")

    @classmethod
    def for_model(cls, model: RWKV6, boundary: int) -> "ContextWindow":
        """Restart after 3/4 of the training context, keeping half of it: a span of up to a quarter of ctx_len
        still ends inside the trained length."""
        return cls(max_tokens=model.config.ctx_len * 3 // 4, keep_tokens=model.config.ctx_len // 2, boundary=boundary)


class TokenStream:
    """A batch of B independent generations on one model, advanced one token at a time.

    stream = TokenStream(model, prompt (B, T0), cfg, generator)   # prompt prefilled in parallel mode
    tok = stream.next(mask)     # sample (B,) from the current logits under an optional mask, then advance
    stream.feed(tokens)         # force (B,) or (B, T) tokens without sampling
    stream.logits (B, V): the distribution for the next token; stream.state: RWKVState after everything so far.
    With a ContextWindow, each stream restarts on its prompt + recent spans as it grows (see ContextWindow).
    """

    def __init__(self, model: RWKV6, prompt: Tensor, cfg: SamplingConfig, generator: torch.Generator,
                 window: ContextWindow | None = None):
        if prompt.dim() != 2 or prompt.shape[1] == 0:
            raise ValueError(f"prompt must be (B, T0) with T0 >= 1, got {tuple(prompt.shape)}")
        self.model, self.cfg, self.generator, self.window = model, cfg, generator, window
        self._step = model.recurrent()        # the weights cannot change during a generation: checked once, here
        device = model.emb.weight.device
        with torch.inference_mode():
            logits, self.state = model(prompt.to(device), state=model.init_state(prompt.shape[0]), return_state=True)
        self.logits: Tensor = logits[:, -1]
        # per stream: its prompt, and the tokens taken in since its last (re)start; kept only with a window
        self.prompts = prompt.tolist() if window else []
        self.history: list[list[int]] = [[] for _ in self.prompts]

    @property
    def batch_size(self) -> int:
        return self.logits.shape[0]

    def next(self, mask: Tensor | None = None, active: Tensor | None = None) -> Tensor:
        """Sample one token per stream (B,), feed it, and return it. With `active` (B,) bool, only those streams take
        their token in; the others stay where they were (a finished candidate waits while the rest go on)."""
        with torch.inference_mode():
            tokens = sample_logits(self.logits, self.cfg, self.generator, mask)
            self._advance(tokens, active)
        return tokens

    def _advance(self, tokens: Tensor, active: Tensor | None) -> None:
        """One recurrent step on tokens (B,), kept only for the active streams (all when None)."""
        logits, state = self._step(tokens, self.state)
        if active is not None:
            keep = ~active.to(logits.device)
            logits[keep] = self.logits[keep]
            state.shift[:, :, keep] = self.state.shift[:, :, keep]
            state.wkv[:, keep] = self.state.wkv[:, keep]
        self.logits, self.state = logits, state
        self._took(tokens[:, None], active)

    def feed(self, tokens: Tensor, active: Tensor | None = None) -> None:
        """Teacher-force tokens (B,) or (B, T): long runs go through the parallel form, single tokens recurrently.
        With `active` (B,) bool (single tokens only), the other streams do not take theirs in."""
        tokens = tokens.to(self.logits.device)
        if tokens.dim() == 1:
            tokens = tokens[:, None]
        if tokens.dim() != 2 or tokens.shape[0] != self.batch_size:
            raise ValueError(f"tokens must be ({self.batch_size},) or ({self.batch_size}, T), got {tuple(tokens.shape)}")
        if active is not None and tokens.shape[1] != 1:
            raise ValueError("feed(active=...) takes one token per stream")
        with torch.inference_mode():
            if tokens.shape[1] == 1:
                self._advance(tokens[:, 0], active)
                return
            if tokens.shape[1] > 1:
                logits, self.state = self.model(tokens, state=self.state, return_state=True)
                self.logits = logits[:, -1]
        self._took(tokens)

    def _took(self, tokens: Tensor, active: Tensor | None = None) -> None:
        """Record (B, T) tokens just taken in (by the active streams); restart the streams the window says to."""
        if self.window is None:
            return
        w = self.window
        took = [True] * len(self.history) if active is None else active.tolist()
        for b, new in enumerate(tokens.tolist()):
            if not took[b]:
                continue
            hist = self.history[b]
            hist += new
            if len(self.prompts[b]) + len(hist) <= w.max_tokens or w.boundary not in new:
                continue
            starts = [i for i, t in enumerate(hist) if t == w.boundary]
            keep = next((i for i in starts if len(hist) - i <= w.keep_tokens), starts[-1])
            self.history[b] = hist[keep:]
            context = torch.tensor([self.prompts[b] + self.history[b]], device=self.logits.device)
            with torch.inference_mode():
                logits, fresh = self.model(context, state=self.model.init_state(1), return_state=True)
                self.state.shift[:, :, b] = fresh.shift[:, :, 0]
                self.state.wkv[:, b] = fresh.wkv[:, 0]
                self.logits[b] = logits[0, -1]

    def repeat(self, n: int) -> "TokenStream":
        """n copies of this one stream as a batch (B = n), to sample n candidates side by side for about the cost of
        one (a step's cost is mostly fixed overhead at these sizes)."""
        if self.batch_size != 1:
            raise ValueError(f"repeat() needs a single stream, this one has {self.batch_size}")
        twin = self.clone()
        with torch.inference_mode():
            twin.state = RWKVState.cat([self.state] * n)
            twin.logits = self.logits.repeat(n, 1)
        twin.prompts = self.prompts * n
        twin.history = [list(h) for h in self.history for _ in range(n)]
        return twin

    def select(self, b: int) -> "TokenStream":
        """Stream b alone (B = 1), continuing exactly where it was."""
        twin = self.clone()
        with torch.inference_mode():
            twin.state = self.state.select(b)
            twin.logits = self.logits[b:b + 1].clone()
        twin.prompts = self.prompts[b:b + 1]
        twin.history = [list(self.history[b])] if self.history else []
        return twin

    def clone(self, generator: torch.Generator | None = None) -> "TokenStream":
        """A branch: same model and config, copied state and logits; shares the generator unless given one."""
        twin = object.__new__(TokenStream)
        twin.model, twin.cfg, twin._step = self.model, self.cfg, self._step
        twin.generator = generator if generator is not None else self.generator
        twin.window, twin.prompts, twin.history = self.window, self.prompts, [list(h) for h in self.history]
        with torch.inference_mode():
            twin.state: RWKVState = self.state.clone()
            twin.logits = self.logits.clone()
        return twin
