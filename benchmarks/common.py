"""Shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this folder is on sys.path)."""
from __future__ import annotations

import argparse
from typing import TypeVar

T = TypeVar("T")


def config_from_args(cls: type[T], description: str) -> T:
    """A flag per field of the config dataclass (--n-layer for n_layer), typed by its default."""
    p = argparse.ArgumentParser(description=description)
    for name, value in vars(cls()).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    return cls(**vars(p.parse_args()))
