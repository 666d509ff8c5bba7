"""The two transformer nets the interpreter runs, as numpy forward passes for inference: the instruction LM (a
GPT-2 trained with transformers in instruct.train) and all-MiniLM-L6-v2 (a BERT encoder). Importing transformers
costs about 2.5 s here (it pulls in torch._dynamo and torch.distributed) and torch about 1 s, against 20 ms of
work for a prompt, so `text2lofi interpret` loads neither: the weights are read from the same safetensors files
as memory maps. Training stays on transformers; tests/test_instruct.py holds both nets to it.

Shapes: T tokens, C width, H heads, D = C / H head size, V vocabulary. Everything is float32.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def _load(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """config.json and the tensors of model.safetensors as read-only memory maps of the file: nothing is copied,
    the pages are the file cache's, and a table only partly used costs only what is read (MiniLM's 47 MB word
    embeddings: the rows of the words in the prompts). The format: an 8-byte little-endian header length, a
    JSON header {name: {dtype, shape, data_offsets: [begin, end]}}, then the data."""
    path = folder / "model.safetensors"
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}; these nets read {', '.join(_DTYPES)}")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == begin:
            tensors[name] = np.zeros(shape, _DTYPES[info["dtype"]])
            continue
        tensors[name] = np.memmap(path, _DTYPES[info["dtype"]], "r", offset=8 + size + begin,
                                  shape=shape).view(np.ndarray)
    return json.loads((folder / "config.json").read_text()), tensors


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    x = x - x.mean(-1, keepdims=True)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w + b


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.exp(x - x.max(-1, keepdims=True))
    return x / x.sum(-1, keepdims=True)


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, about float32's resolution (scipy.special would add 0.2 s
    of import for this one function)."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """(..., T, C) -> (..., H, T, D)."""
    *lead, T, C = x.shape
    return x.reshape(*lead, T, n_head, C // n_head).swapaxes(-2, -3)


def _merge(x: np.ndarray) -> np.ndarray:
    """(..., H, T, D) -> (..., T, C)."""
    x = x.swapaxes(-2, -3)
    return x.reshape(*x.shape[:-2], -1)


class Gpt2Net:
    """transformers' GPT2LMHeadModel at inference (no dropout, no cache; the prompts are under 96 tokens)."""

    def __init__(self, folder: Path):
        cfg, w = _load(folder)
        self.n_head, self.eps = cfg["n_head"], cfg["layer_norm_epsilon"]
        if cfg.get("activation_function", "gelu_new") != "gelu_new" or not cfg.get("scale_attn_weights", True):
            raise ValueError(f"{folder}: only the GPT-2 this project trains (gelu_new, scaled attention) is supported")
        p = "transformer."
        self.wte, self.wpe = w[p + "wte.weight"], w[p + "wpe.weight"]                # (V, C), (positions, C)
        self.layers = [{k[len(f"{p}h.{i}."):]: v for k, v in w.items() if k.startswith(f"{p}h.{i}.")}
                       for i in range(cfg["n_layer"])]                                # Conv1D weights: (in, out)
        self.ln_f = (w[p + "ln_f.weight"], w[p + "ln_f.bias"])
        self.head = w.get("lm_head.weight", self.wte)                                  # tied to wte when absent

    def last_logits(self, ids: list[int]) -> np.ndarray:
        """token ids (T,) -> logits (V,) for the token after them."""
        T = len(ids)
        if T > len(self.wpe):
            raise ValueError(f"{T} tokens, the model has {len(self.wpe)} positions")
        x = self.wte[ids] + self.wpe[:T]                                                # (T, C)
        future = np.triu(np.full((T, T), -np.inf, np.float32), 1)
        for L in self.layers:
            h = _layer_norm(x, L["ln_1.weight"], L["ln_1.bias"], self.eps)
            q, k, v = np.split(h @ L["attn.c_attn.weight"] + L["attn.c_attn.bias"], 3, axis=-1)
            q, k, v = (_heads(t, self.n_head) for t in (q, k, v))                       # (H, T, D)
            att = _softmax(q @ k.swapaxes(-1, -2) / np.float32(np.sqrt(q.shape[-1])) + future)
            x = x + _merge(att @ v) @ L["attn.c_proj.weight"] + L["attn.c_proj.bias"]
            h = _layer_norm(x, L["ln_2.weight"], L["ln_2.bias"], self.eps)
            h = h @ L["mlp.c_fc.weight"] + L["mlp.c_fc.bias"]
            h = 0.5 * h * (1.0 + np.tanh(np.float32(np.sqrt(2.0 / np.pi)) * (h + 0.044715 * h ** 3)))   # gelu_new
            x = x + h @ L["mlp.c_proj.weight"] + L["mlp.c_proj.bias"]
        return _layer_norm(x[-1], *self.ln_f, self.eps) @ self.head.T


class BertNet:
    """transformers' BertModel at inference: last_hidden_state for a padded batch (token type 0 throughout)."""

    def __init__(self, folder: Path):
        cfg, w = _load(folder)
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{folder}: only BERT with gelu and absolute positions is supported")
        self.n_head, self.eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        w = {k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}
        e = "embeddings."
        self.word, self.position = w[e + "word_embeddings.weight"], w[e + "position_embeddings.weight"]
        self.type0 = w[e + "token_type_embeddings.weight"][0]
        self.ln_e = (w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])
        # nn.Linear weights are (out, in): x @ W.T is the layer (a transposed view, nothing copied)
        self.layers = [{k[len(f"encoder.layer.{i}."):]: (v.T if v.ndim == 2 else v) for k, v in w.items()
                        if k.startswith(f"encoder.layer.{i}.")} for i in range(cfg["num_hidden_layers"])]

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids, mask (B, T) (mask 1 = token, 0 = padding) -> last hidden states (B, T, C)."""
        B, T = ids.shape
        x = _layer_norm(self.word[ids] + self.position[:T] + self.type0, *self.ln_e, self.eps)
        padding = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        for L in self.layers:
            q, k, v = (_heads(x @ L[f"attention.self.{n}.weight"] + L[f"attention.self.{n}.bias"], self.n_head)
                       for n in ("query", "key", "value"))                             # (B, H, T, D)
            att = _softmax(q @ k.swapaxes(-1, -2) / np.float32(np.sqrt(q.shape[-1])) + padding)
            h = _merge(att @ v) @ L["attention.output.dense.weight"] + L["attention.output.dense.bias"]
            x = _layer_norm(x + h, L["attention.output.LayerNorm.weight"], L["attention.output.LayerNorm.bias"],
                            self.eps)
            h = x @ L["intermediate.dense.weight"] + L["intermediate.dense.bias"]
            h = 0.5 * h * (1.0 + _erf(h / np.float32(np.sqrt(2.0))))                   # exact (erf) gelu
            h = h @ L["output.dense.weight"] + L["output.dense.bias"]
            x = _layer_norm(x + h, L["output.LayerNorm.weight"], L["output.LayerNorm.bias"], self.eps)
        return x
