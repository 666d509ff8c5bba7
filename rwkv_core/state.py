"""RWKVState: everything a recurrent RWKV-6 needs to continue a batch of sequences.

Two stacked tensors, so copying, branching and picking streams are one tensor op each:
    shift (n_layer, 2, B, C)      the previous token's layer-normed input to TimeMix [0] and ChannelMix [1]
    wkv   (n_layer, B, H, N, N)   the WKV state per layer, [key, value], always fp32
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class RWKVState:
    shift: Tensor
    wkv: Tensor

    @property
    def batch_size(self) -> int:
        return self.shift.shape[2]

    def clone(self) -> "RWKVState":
        """An independent copy (for branching a generation)."""
        return RWKVState(self.shift.clone(), self.wkv.clone())

    def select(self, index: int | Sequence[int] | Tensor) -> "RWKVState":
        """The streams at `index` along the batch (an int keeps a batch dim of 1); always a copy."""
        if isinstance(index, int):
            index = [index]
        index = torch.as_tensor(index, dtype=torch.long, device=self.shift.device)
        return RWKVState(self.shift.index_select(2, index), self.wkv.index_select(1, index))

    @staticmethod
    def cat(states: Sequence["RWKVState"]) -> "RWKVState":
        """Concatenate states along the batch: independent streams become one batch."""
        return RWKVState(torch.cat([s.shift for s in states], dim=2), torch.cat([s.wkv for s in states], dim=1))
