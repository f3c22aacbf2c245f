"""Encoding of mono sources into First-Order Ambisonics.

Convention: AmbiX, i.e. ACN channel order (W, Y, Z, X) with SN3D normalisation.
Directions: azimuth counter-clockwise from the front (+x) towards the left (+y),
elevation up from the horizontal plane, both in radians. Plane-wave gains are
W = 1, Y = sin(az) cos(el), Z = sin(el), X = cos(az) cos(el).
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import InputError, require_finite

ACN_CHANNELS = ("W", "Y", "Z", "X")


def direction_to_vector(azimuth: np.ndarray | float, elevation: np.ndarray | float) -> np.ndarray:
    """Unit vectors (..., 3) as (x, y, z) for azimuth/elevation in radians."""
    az = np.asarray(azimuth, dtype=np.float64)
    el = np.asarray(elevation, dtype=np.float64)
    return np.stack(
        [np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el) * np.ones_like(az)], -1
    )


def vector_to_direction(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation in radians of vectors (..., 3) given as (x, y, z).

    Azimuth is in (-pi, pi]; elevation in [-pi/2, pi/2]. Vectors need not be unit length.
    """
    v = np.asarray(vectors, dtype=np.float64)
    horizontal = np.hypot(v[..., 0], v[..., 1])
    return np.arctan2(v[..., 1], v[..., 0]), np.arctan2(v[..., 2], horizontal)


def sh_gains(azimuth: np.ndarray | float, elevation: np.ndarray | float) -> np.ndarray:
    """First-order real spherical-harmonic gains (..., 4), AmbiX (ACN order, SN3D)."""
    v = direction_to_vector(azimuth, elevation)
    return np.stack([np.ones(v.shape[:-1]), v[..., 1], v[..., 2], v[..., 0]], -1)


def encode_mono(
    signal: np.ndarray,
    azimuth: np.ndarray | float,
    elevation: np.ndarray | float,
    gain: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Encode a mono signal (n,) as a plane wave into AmbiX FOA (4, n).

    ``azimuth``, ``elevation`` (radians) and ``gain`` (linear) are scalars for a
    fixed source, or arrays of shape (n,) for a source moving sample by sample.
    """
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim != 1:
        raise InputError(f"encode_mono expects a mono signal of shape (n,), got shape {s.shape}")
    require_finite("signal", s)
    for name, value in (("azimuth", azimuth), ("elevation", elevation), ("gain", gain)):
        arr = np.asarray(value)
        require_finite(name, arr)
        if arr.ndim not in (0, 1) or (arr.ndim == 1 and arr.shape[0] != s.shape[0]):
            raise InputError(
                f"{name} must be a scalar or have one value per sample ({s.shape[0]}), "
                f"got shape {arr.shape}"
            )
    gains = sh_gains(azimuth, elevation) * np.asarray(gain, dtype=np.float64)[..., None]
    return (gains.T * s) if gains.ndim == 2 else gains[:, None] * s[None, :]


def pseudo_foa(audio: np.ndarray, axis: str) -> np.ndarray:
    """Curriculum pseudo-FOA (4, n) from mono (n,) or stereo (2, n) audio (SwanSphere paper).

    Stereo: W = L + R and the dipole named by ``axis`` ('x', 'y' or 'z') carries L - R;
    the other two dipoles are zero. Mono is treated as L = R = s / 2, i.e. W = s and
    silent dipoles. Output is AmbiX (ACN W, Y, Z, X; SN3D).
    """
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 1:
        left = right = a / 2.0
    elif a.ndim == 2 and a.shape[0] == 2:
        left, right = a
    else:
        raise InputError(
            f"pseudo_foa expects mono (n,) or stereo (2, n) audio, got shape {a.shape}"
        )
    require_finite("audio", a)
    acn_index = {"y": 1, "z": 2, "x": 3}
    if axis not in acn_index:
        raise InputError(f"pseudo_foa axis must be 'x', 'y' or 'z', got {axis!r}")
    out = np.zeros((4, a.shape[-1]))
    out[0] = left + right
    out[acn_index[axis]] = left - right
    return out


def random_pseudo_foa(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`pseudo_foa` with the dipole axis drawn uniformly from x, y, z."""
    return pseudo_foa(audio, str(rng.choice(["x", "y", "z"])))
