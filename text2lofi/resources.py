"""Where the shipped files are: the one lookup for prompts/ and checkpoints/ (and the data sets' default home).

A wheel carries them as package data under `text2lofi/_shipped/` (pyproject.toml maps the top-level folders
there); a checkout or an editable install reads the top-level folders themselves. Nothing else in the package
computes a path to them.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_NAMES = ("prompts", "checkpoints")


def shipped(name: str) -> Path:
    """The folder of a shipped resource ("prompts" or "checkpoints"), from the wheel or the checkout."""
    if name not in SHIPPED_NAMES:
        raise ValueError(f"unknown shipped folder {name!r}; known: {', '.join(SHIPPED_NAMES)}")
    for folder in (PACKAGE_DIR / "_shipped" / name, PACKAGE_DIR.parent / name):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"text2lofi's {name}/ folder is missing: looked in {PACKAGE_DIR / '_shipped'} "
                            f"(installed wheel) and {PACKAGE_DIR.parent} (checkout)")


def prompts_dir() -> Path:
    return shipped("prompts")


def checkpoints_dir() -> Path:
    return shipped("checkpoints")


def shared_data_dir() -> Path:
    """Where the data sets are by default: ../shared/data beside the checkout (never shipped, never committed;
    every command that reads data takes its path)."""
    return PACKAGE_DIR.parent.parent / "shared" / "data"
