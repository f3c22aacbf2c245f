"""Rotations: quaternions, yaw/pitch/roll, and their action on FOA signals.

Frame: right-handed, x front, y left, z up. Quaternions are (w, x, y, z), Hamilton
product, rotating column vectors as v' = q v q*. Yaw/pitch/roll are in degrees and
compose as R = Rz(yaw) @ Ry(pitch) @ Rx(roll) with right-hand-rule elemental
rotations: yaw +90 turns the front towards the left, pitch +90 turns the front
downwards, roll +90 turns the left side upwards.

Scene rotation R moves a source at direction v to R v. Head compensation applies
the inverse, R.T (the conjugate quaternion): with the head turned by R_head, a
world-fixed source is heard at R_head.T v. Negating the three angles under the same
sequence is *not* that inverse.

FOA convention: AmbiX (ACN W, Y, Z, X; SN3D).
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import InputError, require_finite

# Indices of (y, z, x) in (x, y, z): ACN orders the dipoles Y, Z, X.
_ACN_DIPOLE_AXES = np.array([1, 2, 0])


def normalize_quaternion(q: np.ndarray) -> np.ndarray:
    """Validate and normalise quaternions (..., 4) as (w, x, y, z).

    Raises :class:`InputError` for NaN/Inf components or a (near-)zero norm, since
    such a quaternion names no rotation.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise InputError(f"quaternion must have 4 components (w, x, y, z), got shape {q.shape}")
    require_finite("quaternion", q)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-8):
        raise InputError("quaternion has zero norm: it does not describe a rotation")
    return q / norm


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) as (w, x, y, z)."""
    w, x, y, z = np.moveaxis(normalize_quaternion(q), -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 from a 3x3 rotation matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise InputError(f"rotation matrix must be 3x3, got shape {m.shape}")
    require_finite("rotation matrix", m)
    # Shepperd's method: pick the largest diagonal combination for stability.
    trace = np.trace(m)
    candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
    k = int(np.argmax(candidates))
    if k == 0:
        s = np.sqrt(1.0 + trace) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif k == 1:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif k == 2:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """Conjugate (w, -x, -y, -z): the inverse rotation of a unit quaternion."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of quaternions (..., 4): rotate by b, then by a."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def quat_slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions, along the shorter arc."""
    a, b = normalize_quaternion(q0), normalize_quaternion(q1)
    dot = float(np.dot(a, b))
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:
        return normalize_quaternion(a + t * (b - a))
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


def _rz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rx(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def ypr_to_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll), angles in degrees (see module docstring)."""
    angles = np.array([yaw_deg, pitch_deg, roll_deg], dtype=np.float64)
    require_finite("yaw/pitch/roll", angles)
    yaw, pitch, roll = np.deg2rad(angles)
    return _rz(yaw) @ _ry(pitch) @ _rx(roll)


def ypr_to_quat(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of :func:`ypr_to_matrix`."""
    return matrix_to_quat(ypr_to_matrix(yaw_deg, pitch_deg, roll_deg))


def matrix_to_ypr(matrix: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees such that ypr_to_matrix(*result) == matrix.

    Pitch is in [-90, 90]; at pitch +-90 (gimbal lock) roll is set to 0.
    """
    m = np.asarray(matrix, dtype=np.float64)
    pitch = np.arcsin(np.clip(-m[2, 0], -1.0, 1.0))
    if abs(m[2, 0]) < 1 - 1e-9:
        yaw = np.arctan2(m[1, 0], m[0, 0])
        roll = np.arctan2(m[2, 1], m[2, 2])
    else:
        yaw = np.arctan2(-m[0, 1], m[1, 1])
        roll = 0.0
    return float(np.rad2deg(yaw)), float(np.rad2deg(pitch)), float(np.rad2deg(roll))


def inverse_rotation(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a rotation matrix (its transpose); (..., 3, 3)."""
    return np.swapaxes(np.asarray(matrix, dtype=np.float64), -1, -2)


def foa_rotation_matrix(matrix: np.ndarray) -> np.ndarray:
    """4x4 (or (..., 4, 4)) AmbiX mixing matrix that rotates the sound field by ``matrix``.

    W is unchanged; the dipole block is the 3x3 rotation reordered to (y, z, x):
    [[Ryy, Ryz, Ryx], [Rzy, Rzz, Rzx], [Rxy, Rxz, Rxx]].
    """
    r = np.asarray(matrix, dtype=np.float64)
    if r.shape[-2:] != (3, 3):
        raise InputError(f"rotation matrix must be 3x3, got shape {r.shape}")
    out = np.zeros((*r.shape[:-2], 4, 4))
    out[..., 0, 0] = 1.0
    out[..., 1:, 1:] = r[..., _ACN_DIPOLE_AXES[:, None], _ACN_DIPOLE_AXES[None, :]]
    return out


def rotate_foa(foa: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Rotate an AmbiX FOA signal (4, n) by the scene rotation ``matrix`` (3x3).

    A source encoded at direction v comes out encoded at ``matrix @ v``.
    """
    a = np.asarray(foa, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != 4:
        raise InputError(f"FOA signal must have shape (4, n), got {a.shape}")
    return foa_rotation_matrix(matrix) @ a


def head_compensation(head_quat: np.ndarray) -> np.ndarray:
    """Scene rotation (3x3) that renders a world-fixed field for a head oriented by ``head_quat``.

    It is the inverse of the head rotation: quat_to_matrix(conjugate(head_quat)).
    """
    return inverse_rotation(quat_to_matrix(head_quat))
