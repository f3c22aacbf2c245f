"""Equirectangular panoramas and how they relate to sound-field directions.

Image convention (as seen from inside the sphere, the way 360 video is stored):
column u = 0 is the left edge at azimuth +180 deg (behind), the centre column is the
front (azimuth 0), azimuth decreases to the right (the left, +90 deg, is at a quarter
of the width); row v = 0 is the top edge (elevation +90 deg). Pixel centres sit at
half-integer coordinates. Frames are arrays (H, W) or (H, W, C).

Rolling the panorama horizontally by d degrees is the same scene change as rotating
the FOA by yaw d (R = Rz(d)): a front source moves to azimuth +d in both.
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector, vector_to_direction


def direction_to_equirect(
    azimuth: np.ndarray | float, elevation: np.ndarray | float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (u, v) of directions in radians; u in [0, width)."""
    az = np.asarray(azimuth, dtype=np.float64)
    el = np.asarray(elevation, dtype=np.float64)
    u = np.mod((0.5 - az / (2 * np.pi)) * width, width)
    v = (0.5 - el / np.pi) * height
    return u, v


def equirect_to_direction(
    u: np.ndarray | float, v: np.ndarray | float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth in (-pi, pi] and elevation in radians of continuous pixel coordinates."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    az = (0.5 - u / width) * 2 * np.pi
    az = np.mod(az + np.pi, 2 * np.pi) - np.pi
    el = (0.5 - v / height) * np.pi
    return az, el


def pixel_directions(width: int, height: int) -> np.ndarray:
    """Unit vectors (height, width, 3) of every pixel centre."""
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    az, el = equirect_to_direction(u[None, :], v[:, None], width, height)
    return direction_to_vector(np.broadcast_to(az, (height, width)), el)


def grid_directions(rows: int, cols: int) -> np.ndarray:
    """Unit vectors (rows * cols, 3) float32 of the cell centres of an equirectangular grid
    (e.g. a ViT's token grid), in raster order: row 0 at the top, column 0 at azimuth
    +180 deg, the centre column the front."""
    return pixel_directions(cols, rows).reshape(rows * cols, 3).astype(np.float32)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame)
    if f.ndim not in (2, 3) or f.shape[0] < 2 or f.shape[1] < 2:
        raise InputError(f"panorama must be an array (H, W) or (H, W, C), got shape {f.shape}")
    return f


def roll_equirect(frame: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Roll a panorama horizontally to match the scene rotation Rz(yaw_deg).

    Whole-pixel shifts are exact (np.roll); fractional shifts interpolate linearly
    between neighbouring columns, wrapping around the seam. Returns the input dtype.
    """
    f = _check_frame(frame)
    width = f.shape[1]
    shift = float(yaw_deg) / 360.0 * width  # content moves left by this many columns
    whole = int(np.floor(shift))
    frac = shift - whole
    rolled = np.roll(f, -whole, axis=1)
    if frac < 1e-9:
        return rolled
    mixed = (1 - frac) * rolled.astype(np.float64) + frac * np.roll(rolled, -1, axis=1)
    return (
        mixed.astype(f.dtype)
        if np.issubdtype(f.dtype, np.floating)
        else np.round(mixed).astype(f.dtype)
    )


def rotate_equirect(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Rotate a panorama by a 3x3 scene rotation (bilinear resampling, seam-aware).

    The content seen in direction v moves to ``matrix @ v``, matching
    :func:`swansphere.foa.rotation.rotate_foa` with the same matrix.
    """
    f = _check_frame(frame)
    height, width = f.shape[:2]
    dirs = pixel_directions(width, height)
    source = dirs @ np.asarray(matrix, dtype=np.float64)  # R.T v for each output pixel
    az, el = vector_to_direction(source)
    u, v = direction_to_equirect(az, el, width, height)
    x = u - 0.5
    y = np.clip(v - 0.5, 0, height - 1)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx = x - x0
    fy = y - y0
    x0m, x1m = np.mod(x0, width), np.mod(x0 + 1, width)
    y1 = np.minimum(y0 + 1, height - 1)
    data = f.astype(np.float64)
    if data.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    out = (1 - fy) * ((1 - fx) * data[y0, x0m] + fx * data[y0, x1m]) + fy * (
        (1 - fx) * data[y1, x0m] + fx * data[y1, x1m]
    )
    return (
        out.astype(f.dtype)
        if np.issubdtype(f.dtype, np.floating)
        else np.round(out).astype(f.dtype)
    )
