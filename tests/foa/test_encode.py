import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.encode import (
    direction_to_vector,
    encode_mono,
    pseudo_foa,
    random_pseudo_foa,
    sh_gains,
    vector_to_direction,
)


@pytest.mark.parametrize(
    ("az_deg", "el_deg", "expected"),
    [
        (0, 0, [1, 0, 0, 1]),  # front: W and X
        (90, 0, [1, 1, 0, 0]),  # left: W and Y
        (-90, 0, [1, -1, 0, 0]),  # right
        (180, 0, [1, 0, 0, -1]),  # behind
        (0, 90, [1, 0, 1, 0]),  # above
        (45, 0, [1, np.sqrt(0.5), 0, np.sqrt(0.5)]),
    ],
)
def test_sh_gains_reference_values(az_deg, el_deg, expected):
    gains = sh_gains(np.deg2rad(az_deg), np.deg2rad(el_deg))
    np.testing.assert_allclose(gains, expected, atol=1e-12)


def test_direction_round_trip():
    rng = np.random.default_rng(0)
    az = rng.uniform(-np.pi, np.pi, 100)
    el = rng.uniform(-1.5, 1.5, 100)
    back_az, back_el = vector_to_direction(direction_to_vector(az, el))
    np.testing.assert_allclose(back_az, az, atol=1e-12)
    np.testing.assert_allclose(back_el, el, atol=1e-12)


def test_dipoles_are_unit_vector_sn3d():
    rng = np.random.default_rng(1)
    g = sh_gains(rng.uniform(-np.pi, np.pi, 50), rng.uniform(-1.5, 1.5, 50))
    np.testing.assert_allclose(np.sum(g[:, 1:] ** 2, axis=1), 1.0, atol=1e-12)


def test_encode_static_and_moving():
    s = np.ones(4)
    static = encode_mono(s, np.pi / 2, 0.0, gain=0.5)
    np.testing.assert_allclose(static[:, 0], [0.5, 0.5, 0, 0], atol=1e-12)
    az = np.array([0.0, np.pi / 2, np.pi, -np.pi / 2])
    moving = encode_mono(s, az, 0.0)
    np.testing.assert_allclose(moving[1], [0, 1, 0, -1], atol=1e-12)
    np.testing.assert_allclose(moving[3], [1, 0, -1, 0], atol=1e-12)


def test_encode_rejects_bad_input():
    with pytest.raises(InputError, match="mono"):
        encode_mono(np.ones((2, 4)), 0.0, 0.0)
    with pytest.raises(InputError, match="non-finite"):
        encode_mono(np.array([0.0, np.nan]), 0.0, 0.0)
    with pytest.raises(InputError, match="azimuth"):
        encode_mono(np.ones(4), np.zeros(3), 0.0)


def test_pseudo_foa_curriculum_format():
    left, right = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    out = pseudo_foa(np.stack([left, right]), "x")
    np.testing.assert_allclose(out[0], left + right)
    np.testing.assert_allclose(out[3], left - right)
    assert not out[1].any() and not out[2].any()
    mono = pseudo_foa(np.array([1.0, -1.0]), "y")
    np.testing.assert_allclose(mono, [[1, -1], [0, 0], [0, 0], [0, 0]])
    axes = {
        int(
            np.flatnonzero(
                np.abs(
                    random_pseudo_foa(np.stack([left, right]), np.random.default_rng(s))[1:]
                ).sum(1)
            )[0]
        )
        for s in range(20)
    }
    assert axes == {0, 1, 2}
    with pytest.raises(InputError, match="axis"):
        pseudo_foa(left, "w")
