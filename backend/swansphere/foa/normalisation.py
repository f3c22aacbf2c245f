"""Conversions between first-order channel orders and normalisations.

AmbiX  : ACN order (W, Y, Z, X), SN3D. The project-wide convention.
FuMa   : (W, X, Y, Z) with W scaled by 1/sqrt(2); first-order dipoles equal SN3D.
N3D    : ACN order, dipoles are SN3D x sqrt(3); W is unchanged.
All functions take and return arrays shaped (4, ...) and never modify their input.
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import InputError

_SQRT2 = np.sqrt(2.0)
_SQRT3 = np.sqrt(3.0)


def _check(foa: np.ndarray) -> np.ndarray:
    a = np.asarray(foa, dtype=np.float64)
    if a.ndim < 1 or a.shape[0] != 4:
        raise InputError(f"expected 4 first-order channels on axis 0, got shape {a.shape}")
    return a


def ambix_to_fuma(foa: np.ndarray) -> np.ndarray:
    """AmbiX (W, Y, Z, X; SN3D) -> FuMa (W/sqrt2, X, Y, Z)."""
    a = _check(foa)
    return np.stack([a[0] / _SQRT2, a[3], a[1], a[2]])


def fuma_to_ambix(foa: np.ndarray) -> np.ndarray:
    """FuMa (W/sqrt2, X, Y, Z) -> AmbiX (W, Y, Z, X; SN3D)."""
    a = _check(foa)
    return np.stack([a[0] * _SQRT2, a[2], a[3], a[1]])


def sn3d_to_n3d(foa: np.ndarray) -> np.ndarray:
    """ACN/SN3D -> ACN/N3D: dipoles x sqrt(3)."""
    a = _check(foa).copy()
    a[1:] *= _SQRT3
    return a


def n3d_to_sn3d(foa: np.ndarray) -> np.ndarray:
    """ACN/N3D -> ACN/SN3D: dipoles / sqrt(3)."""
    a = _check(foa).copy()
    a[1:] /= _SQRT3
    return a
