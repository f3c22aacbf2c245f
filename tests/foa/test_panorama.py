import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.doa import clip_direction
from swansphere.foa.encode import encode_mono
from swansphere.foa.panorama import (
    direction_to_equirect,
    equirect_to_direction,
    roll_equirect,
    rotate_equirect,
)
from swansphere.foa.rotation import rotate_foa, ypr_to_matrix

W, H = 360, 180


def dot_frame(az, el):
    """A black panorama with one bright pixel in direction (az, el)."""
    frame = np.zeros((H, W), dtype=np.float64)
    u, v = direction_to_equirect(az, el, W, H)
    frame[int(v), int(u)] = 1.0
    return frame


def brightest_direction(frame):
    v, u = np.unravel_index(np.argmax(frame), frame.shape)
    return equirect_to_direction(u + 0.5, v + 0.5, W, H)


def test_reference_pixels():
    assert direction_to_equirect(0.0, 0.0, W, H) == (W / 2, H / 2)  # front at the centre
    u, _ = direction_to_equirect(np.pi / 2, 0.0, W, H)
    assert u == pytest.approx(W / 4)  # left at a quarter width
    _, v = direction_to_equirect(0.0, np.pi / 2, W, H)
    assert v == 0  # up at the top
    az, el = equirect_to_direction(W / 4, H / 2, W, H)
    assert az == pytest.approx(np.pi / 2) and el == pytest.approx(0)


@pytest.mark.parametrize("yaw", [-135.0, -30.0, 0.0, 17.0, 90.0, 180.0])
def test_roll_matches_foa_yaw_rotation(yaw):
    rng = np.random.default_rng(int(yaw) + 500)
    az, el = rng.uniform(-np.pi, np.pi), rng.uniform(-0.6, 0.6)
    az = np.deg2rad(np.round(np.rad2deg(az))) + np.deg2rad(0.5)  # on a pixel centre
    el = np.deg2rad(np.round(np.rad2deg(el))) + np.deg2rad(0.5)
    frame = roll_equirect(dot_frame(az, el), yaw)
    seen_az, seen_el = brightest_direction(frame)
    foa = rotate_foa(encode_mono(rng.standard_normal(256), az, el), ypr_to_matrix(yaw, 0, 0))
    heard_az, heard_el = clip_direction(foa)
    assert np.rad2deg(abs(np.angle(np.exp(1j * (seen_az - heard_az))))) < 0.51
    assert np.rad2deg(abs(seen_el - heard_el)) < 0.51


def test_fractional_roll_interpolates_and_full_turn_is_identity():
    frame = np.random.default_rng(3).random((8, 16))
    np.testing.assert_allclose(roll_equirect(frame, 360.0), frame)
    half = roll_equirect(frame, 360.0 / 16 / 2)
    np.testing.assert_allclose(half, 0.5 * frame + 0.5 * np.roll(frame, -1, axis=1))


def test_rotate_equirect_matches_foa_rotation():
    rng = np.random.default_rng(4)
    r = ypr_to_matrix(40, 25, -10)
    az, el = np.deg2rad(60.5), np.deg2rad(10.5)
    frame = np.zeros((H, W))
    u, v = direction_to_equirect(az, el, W, H)
    frame[int(v) - 2 : int(v) + 3, int(u) - 2 : int(u) + 3] = 1.0  # small blob survives resampling
    seen_az, seen_el = brightest_direction(rotate_equirect(frame, r))
    heard_az, heard_el = clip_direction(rotate_foa(encode_mono(rng.standard_normal(64), az, el), r))
    assert np.rad2deg(abs(np.angle(np.exp(1j * (seen_az - heard_az))))) < 2.0
    assert np.rad2deg(abs(seen_el - heard_el)) < 2.0


def test_bad_frame():
    with pytest.raises(InputError, match="panorama"):
        roll_equirect(np.zeros(5), 10)
