import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector, encode_mono, vector_to_direction
from swansphere.foa.rotation import (
    foa_rotation_matrix,
    head_compensation,
    inverse_rotation,
    matrix_to_quat,
    matrix_to_ypr,
    normalize_quaternion,
    quat_conjugate,
    quat_multiply,
    quat_slerp,
    quat_to_matrix,
    rotate_foa,
    ypr_to_matrix,
    ypr_to_quat,
)


def random_quats(rng, n):
    q = rng.standard_normal((n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def direction_after(matrix, az_deg, el_deg):
    v = matrix @ direction_to_vector(np.deg2rad(az_deg), np.deg2rad(el_deg))
    az, el = vector_to_direction(v)
    return np.rad2deg(az), np.rad2deg(el)


def test_rotating_encoded_source_equals_encoding_rotated_direction():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(64)
    for q in random_quats(rng, 200):
        az, el = rng.uniform(-np.pi, np.pi), np.arcsin(rng.uniform(-1, 1))
        r = quat_to_matrix(q)
        new_az, new_el = vector_to_direction(r @ direction_to_vector(az, el))
        rotated = rotate_foa(encode_mono(signal, az, el), r)
        np.testing.assert_allclose(rotated, encode_mono(signal, new_az, new_el), atol=1e-6)


@pytest.mark.parametrize(
    ("ypr", "source", "expected"),
    [
        ((90, 0, 0), (0, 0), (90, 0)),  # scene yaw +90: a front source ends up on the left
        ((-90, 0, 0), (0, 0), (-90, 0)),  # yaw -90: front goes right
        ((30, 0, 0), (0, 0), (30, 0)),  # DESIGN.md: yaw +30 moves a front source to +30
        ((0, 90, 0), (0, 0), (0, -90)),  # pitch +90: the front turns downwards
        ((0, 0, 90), (90, 0), (0, 90)),  # roll +90: the left turns upwards
        ((90, 0, 0), (90, 0), (180, 0)),  # yaw +90: the left goes behind
    ],
)
def test_sign_examples(ypr, source, expected):
    az, el = direction_after(ypr_to_matrix(*ypr), *source)
    assert el == pytest.approx(expected[1], abs=1e-9)
    if abs(expected[1]) < 89:
        assert (az - expected[0] + 180) % 360 - 180 == pytest.approx(0, abs=1e-9)


def test_foa_rotation_front_source_yaw_90_is_left():
    foa = encode_mono(np.ones(1), 0.0, 0.0)  # W=1, X=1
    out = rotate_foa(foa, ypr_to_matrix(90, 0, 0))[:, 0]
    np.testing.assert_allclose(out, [1, 1, 0, 0], atol=1e-12)  # W=1, Y=1: left


def test_foa_rotation_matrix_layout_and_orthogonality():
    rng = np.random.default_rng(1)
    r = quat_to_matrix(random_quats(rng, 1)[0])
    m = foa_rotation_matrix(r)
    assert m[0, 0] == 1 and not m[0, 1:].any() and not m[1:, 0].any()
    assert m[1, 1] == r[1, 1] and m[1, 3] == r[1, 0] and m[3, 2] == r[0, 2]
    np.testing.assert_allclose(m @ m.T, np.eye(4), atol=1e-12)


def test_quaternion_matrix_round_trip_and_composition():
    rng = np.random.default_rng(2)
    qs = random_quats(rng, 50)
    for a, b in zip(qs[:25], qs[25:], strict=True):
        ra = quat_to_matrix(a)
        np.testing.assert_allclose(ra @ ra.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(ra) == pytest.approx(1.0)
        back = matrix_to_quat(ra)
        assert abs(abs(np.dot(back, a)) - 1) < 1e-9
        np.testing.assert_allclose(
            quat_to_matrix(quat_multiply(a, b)), ra @ quat_to_matrix(b), atol=1e-12
        )
        np.testing.assert_allclose(quat_to_matrix(quat_conjugate(a)), ra.T, atol=1e-12)


def test_ypr_composition_order_and_round_trip():
    r = ypr_to_matrix(30, 20, 10)
    rz = ypr_to_matrix(30, 0, 0)
    ry = ypr_to_matrix(0, 20, 0)
    rx = ypr_to_matrix(0, 0, 10)
    np.testing.assert_allclose(r, rz @ ry @ rx, atol=1e-12)
    np.testing.assert_allclose(matrix_to_ypr(r), (30, 20, 10), atol=1e-9)
    np.testing.assert_allclose(quat_to_matrix(ypr_to_quat(30, 20, 10)), r, atol=1e-12)


def test_inverse_is_not_negated_angles():
    r = ypr_to_matrix(40, 25, -30)
    np.testing.assert_allclose(inverse_rotation(r) @ r, np.eye(3), atol=1e-12)
    assert not np.allclose(ypr_to_matrix(-40, -25, 30), r.T, atol=1e-3)


def test_head_compensation_keeps_world_fixed_source():
    # Head turned left by 90: a source straight ahead in the world is heard on the right.
    comp = head_compensation(ypr_to_quat(90, 0, 0))
    az, el = direction_after(comp, 0, 0)
    assert az == pytest.approx(-90) and el == pytest.approx(0, abs=1e-9)


def test_slerp_endpoints_and_midpoint():
    a, b = ypr_to_quat(0, 0, 0), ypr_to_quat(90, 0, 0)
    np.testing.assert_allclose(quat_slerp(a, b, 0.0), a, atol=1e-12)
    mid = quat_to_matrix(quat_slerp(a, b, 0.5))
    np.testing.assert_allclose(mid, ypr_to_matrix(45, 0, 0), atol=1e-9)


@pytest.mark.parametrize("bad", [[np.nan, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0], [np.inf, 1, 0, 0]])
def test_bad_quaternions_are_rejected(bad):
    with pytest.raises(InputError, match="quaternion"):
        normalize_quaternion(np.array(bad, dtype=float))
