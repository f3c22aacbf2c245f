"""Small parsers shared by subcommands."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

from swansphere.errors import InputError
from swansphere.foa.rotation import normalize_quaternion, ypr_to_quat

# ``--accel`` choices: swansphere.generation.accel.ACCEL_MODES, spelt out here so that
# parsing arguments does not import torch (a test keeps the two equal).
ACCEL_CHOICES = ("eager", "compile", "aot", "tensorrt")


def parse_floats(text: str, count: int, what: str) -> np.ndarray:
    """Parse 'a,b,c' into ``count`` floats, or raise InputError naming ``what``."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = np.array([float(p) for p in parts])
    except ValueError:
        raise InputError(f"{what} must be {count} comma-separated numbers, got {text!r}") from None
    if values.size != count:
        raise InputError(f"{what} must be {count} comma-separated numbers, got {values.size}")
    return values


def head_quaternion(ypr: str | None, quat: str | None) -> np.ndarray:
    """Head orientation from --ypr 'Y,P,R' (degrees) or --quat 'W,X,Y,Z'; identity if neither."""
    if ypr and quat:
        raise InputError("give either --ypr or --quat, not both")
    if ypr:
        return ypr_to_quat(*parse_floats(ypr, 3, "--ypr"))
    if quat:
        return normalize_quaternion(parse_floats(quat, 4, "--quat"))
    return np.array([1.0, 0.0, 0.0, 0.0])


def print_json(data: Any) -> None:
    """Print JSON to stdout and flush, so pipes see it immediately."""
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
    sys.stdout.flush()
