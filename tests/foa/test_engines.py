"""Engine mappings checked against matrices built from each engine's own definitions."""

import numpy as np
import pytest

from swansphere.foa.engines import (
    unity_euler_to_ypr,
    unity_position,
    unity_quaternion,
    unreal_position,
    unreal_quaternion,
    unreal_rotator_to_ypr,
)
from swansphere.foa.rotation import quat_to_matrix, ypr_to_matrix

# Axis maps as matrices: p_ambisonic = P @ p_engine.
P_UNITY = np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], dtype=float)
P_UNREAL = np.array([[1, 0, 0], [0, -1, 0], [0, 0, 1]], dtype=float)


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def unity_euler_matrix(ex, ey, ez):
    """Unity's Quaternion.Euler: rotate about z, then x, then y (extrinsic), column vectors."""
    ex, ey, ez = np.deg2rad([ex, ey, ez])
    return _ry(ey) @ _rx(ex) @ _rz(ez)


def unity_quat_matrix(x, y, z, w):
    """Unity's Matrix4x4.Rotate(q): the standard Hamilton quaternion matrix."""
    return quat_to_matrix(np.array([w, x, y, z]))


def unreal_rotator_matrix(pitch, yaw, roll):
    """Unreal's FRotationMatrix (row-vector convention, v' = v M), transposed to column form."""
    sp, cp = np.sin(np.deg2rad(pitch)), np.cos(np.deg2rad(pitch))
    sy, cy = np.sin(np.deg2rad(yaw)), np.cos(np.deg2rad(yaw))
    sr, cr = np.sin(np.deg2rad(roll)), np.cos(np.deg2rad(roll))
    m = np.array(
        [
            [cp * cy, cp * sy, sp],
            [sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp],
            [-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp],
        ]
    )
    return m.T


def unreal_quat_matrix(x, y, z, w):
    """FQuat::RotateVector is q v q*, the standard Hamilton rotation."""
    return quat_to_matrix(np.array([w, x, y, z]))


def test_unity_axes():
    np.testing.assert_allclose(unity_position([0, 0, 1]), [1, 0, 0])  # forward -> front
    np.testing.assert_allclose(unity_position([1, 0, 0]), [0, -1, 0])  # right -> -y
    np.testing.assert_allclose(unity_position([0, 1, 0]), [0, 0, 1])  # up -> z
    np.testing.assert_allclose(unity_position([0, 1, 0]), P_UNITY @ [0, 1, 0])


def test_unreal_axes_and_units():
    np.testing.assert_allclose(unreal_position([100, 0, 0]), [1, 0, 0])
    np.testing.assert_allclose(unreal_position([0, 100, 0]), [0, -1, 0])  # right
    np.testing.assert_allclose(unreal_position([0, 0, 250]), [0, 0, 2.5])


@pytest.mark.parametrize("seed", range(20))
def test_unity_euler_and_quaternion_match_engine(seed):
    rng = np.random.default_rng(seed)
    ex, ey, ez = rng.uniform(-180, 180, 3)
    engine = unity_euler_matrix(ex, ey, ez)
    expected = P_UNITY @ engine @ P_UNITY.T
    np.testing.assert_allclose(
        ypr_to_matrix(*unity_euler_to_ypr([ex, ey, ez])), expected, atol=1e-9
    )
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    engine_q = unity_quat_matrix(*q)
    np.testing.assert_allclose(
        quat_to_matrix(unity_quaternion(q)), P_UNITY @ engine_q @ P_UNITY.T, atol=1e-9
    )


@pytest.mark.parametrize("seed", range(20))
def test_unreal_rotator_and_quaternion_match_engine(seed):
    rng = np.random.default_rng(100 + seed)
    pitch, yaw, roll = rng.uniform(-89, 89), rng.uniform(-180, 180), rng.uniform(-180, 180)
    engine = unreal_rotator_matrix(pitch, yaw, roll)
    expected = P_UNREAL @ engine @ P_UNREAL.T
    np.testing.assert_allclose(
        ypr_to_matrix(*unreal_rotator_to_ypr(pitch, yaw, roll)), expected, atol=1e-9
    )
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    np.testing.assert_allclose(
        quat_to_matrix(unreal_quaternion(q)),
        P_UNREAL @ unreal_quat_matrix(*q) @ P_UNREAL.T,
        atol=1e-9,
    )


def test_engine_turn_right_is_negative_ambisonic_yaw():
    # Both engines: positive yaw turns to the right, i.e. clockwise seen from above.
    r = ypr_to_matrix(*unity_euler_to_ypr([0, 90, 0]))
    np.testing.assert_allclose(r @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    r = ypr_to_matrix(*unreal_rotator_to_ypr(0, 90, 0))
    np.testing.assert_allclose(r @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    # Unreal positive pitch looks up; Unity positive x looks down.
    np.testing.assert_allclose(
        ypr_to_matrix(*unreal_rotator_to_ypr(30, 0, 0)) @ [1, 0, 0],
        [np.cos(np.pi / 6), 0, np.sin(np.pi / 6)],
        atol=1e-12,
    )
    np.testing.assert_allclose(
        ypr_to_matrix(*unity_euler_to_ypr([30, 0, 0])) @ [1, 0, 0],
        [np.cos(np.pi / 6), 0, -np.sin(np.pi / 6)],
        atol=1e-12,
    )
