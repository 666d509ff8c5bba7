"""Dataclass configs on the command line: one `--flag` per field, so a config's fields are its CLI.

`--n-layer` sets `n_layer`; the type comes from the annotation (`X | None` takes X), a field's `help` from its
metadata, a bool field is a switch, a field without a default is a required flag.
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def opt(default: Any, help: str) -> Any:
    """A config field with its command-line help: `lr: float = opt(6e-4, "peak learning rate")`."""
    from dataclasses import field
    return field(default=default, metadata={"help": help})


def _flag_type(f: Field, hints: Mapping[str, Any]) -> type:
    hint = hints[f.name]
    return next((t for t in typing.get_args(hint) if t is not type(None)), hint)


def add_config_args(parser: argparse.ArgumentParser, cls: type, choices: Mapping[str, Any] | None = None,
                    skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """Add one flag per field of the dataclass `cls` (those in `skip` excepted) to `parser`."""
    hints = typing.get_type_hints(cls)
    choices = choices or {}
    for f in fields(cls):
        if f.name in skip:
            continue
        flag, help_ = "--" + f.name.replace("_", "-"), f.metadata.get("help")
        kind = _flag_type(f, hints)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=bool(f.default), help=help_)
        elif f.default is MISSING and f.default_factory is MISSING:
            parser.add_argument(flag, type=kind, required=True, choices=choices.get(f.name), help=help_)
        else:
            default = f.default if f.default is not MISSING else f.default_factory()
            parser.add_argument(flag, type=kind, default=default, choices=choices.get(f.name), help=help_)
    return parser


def config_from_args(cls: type[T], args: argparse.Namespace, **fixed: Any) -> T:
    """The dataclass built from parsed flags (as added by add_config_args), `fixed` fields given directly."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **fixed})
