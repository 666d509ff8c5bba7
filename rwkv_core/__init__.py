"""rwkv_core: RWKV-6 language model, WKV kernels, checkpoints and the sampling engine. Knows nothing about music."""
from rwkv_core.checkpoint import load, save
from rwkv_core.model import RWKV6, RWKV6Config
from rwkv_core.state import RWKVState
from rwkv_core.wkv import wkv6

__all__ = ["RWKV6", "RWKV6Config", "RWKVState", "load", "save", "wkv6"]
