"""Errors raised on bad input. Each message names the offending value and what was expected."""

from __future__ import annotations

import numpy as np


class InputError(ValueError):
    """Bad input from a user, a file or a client. The message says what is wrong."""


def require_finite(name: str, values: np.ndarray) -> None:
    """Raise :class:`InputError` if ``values`` holds NaN or Inf, saying where the first one is."""
    values = np.asarray(values)
    if values.size and not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))[0]
        count = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(
            f"{name} contains {count} non-finite value(s) (NaN or Inf); first at index {tuple(bad)}"
        )
