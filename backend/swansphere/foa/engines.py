"""Mappings from game-engine coordinates to the ambisonic frame (x front, y left, z up).

Unity   : left-handed, x right, y up, z forward, metres.
Unreal  : left-handed, x forward, y right, z up, centimetres.
The axis maps are reflections (det = -1), so rotation angles change sign where the
axis keeps its direction, and quaternion vector parts pick up an extra minus sign.
Checked against each engine's own Euler and quaternion definitions in the tests.
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import require_finite


def unity_position(position: np.ndarray) -> np.ndarray:
    """Unity position(s) (..., 3) -> ambisonic (z, -x, y), metres."""
    p = np.asarray(position, dtype=np.float64)
    require_finite("Unity position", p)
    return np.stack([p[..., 2], -p[..., 0], p[..., 1]], -1)


def unity_euler_to_ypr(euler_deg: np.ndarray) -> tuple[float, float, float]:
    """Unity ``transform.eulerAngles`` (x, y, z) degrees -> ambisonic (yaw, pitch, roll) degrees."""
    ex, ey, ez = np.asarray(euler_deg, dtype=np.float64)
    return -ey, ex, -ez


def unity_quaternion(q_xyzw: np.ndarray) -> np.ndarray:
    """Unity ``Quaternion`` given as its fields (x, y, z, w) -> ambisonic (w, x, y, z)."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64)
    return np.array([w, -z, x, -y])


def unreal_position(position_cm: np.ndarray) -> np.ndarray:
    """Unreal location(s) (..., 3) in cm -> ambisonic (x, -y, z) / 100, metres."""
    p = np.asarray(position_cm, dtype=np.float64)
    require_finite("Unreal position", p)
    return np.stack([p[..., 0], -p[..., 1], p[..., 2]], -1) / 100.0


def unreal_rotator_to_ypr(pitch: float, yaw: float, roll: float) -> tuple[float, float, float]:
    """Unreal ``FRotator(Pitch, Yaw, Roll)`` degrees -> ambisonic (yaw, pitch, roll) degrees."""
    return -float(yaw), -float(pitch), float(roll)


def unreal_quaternion(q_xyzw: np.ndarray) -> np.ndarray:
    """Unreal ``FQuat`` given as its fields (X, Y, Z, W) -> ambisonic (w, x, y, z)."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64)
    return np.array([w, -x, y, -z])
