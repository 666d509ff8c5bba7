"""Process-wide settings the shells apply once: how many threads torch may use."""
from __future__ import annotations

# Sampling runs tiny per-token steps: intra-op threads only spin on them. One thread per generation is 7x faster
# on a busy 2-core CPU; the app runs `--concurrency` generations side by side instead.
GENERATION_THREADS = 1


def use_threads(n: int = GENERATION_THREADS) -> None:
    """Let torch use n intra-op threads in this process (training and evaluation pass their own n)."""
    import torch

    torch.set_num_threads(max(1, int(n)))
