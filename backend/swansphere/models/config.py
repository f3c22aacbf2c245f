"""What every network config shares: building a config dataclass from its JSON dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from swansphere.errors import InputError

ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
    """``cls(**data)`` for a config dataclass read from a checkpoint or bundle (the
    inverse of its ``to_dict``): InputError names unknown fields and missing required
    ones; the dataclass's own checks (``__post_init__``) name bad values."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    try:
        return cls(**dict(data))
    except TypeError as err:
        raise InputError(f"incomplete {cls.__name__}: {err}") from err
