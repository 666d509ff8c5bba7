"""Shared test settings."""
import torch

# Generation runs tiny per-token ops; on a busy 2-core machine extra intra-op threads only spin
# (a 60 s track: 234 s with 2 threads vs 9 s with 1, measured while other jobs ran). Tests that
# need more threads set them themselves.
torch.set_num_threads(1)
