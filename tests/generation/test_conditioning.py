"""Field-of-view frames land at the directions they show; frame checks; patch alignment."""

from __future__ import annotations

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.panorama import direction_to_equirect
from swansphere.foa.rotation import ypr_to_quat
from swansphere.generation.conditioning import (
    check_rgb_frame,
    patch_frame_index,
    view_to_panorama,
)


def marked_view(h: int = 60, w: int = 80) -> np.ndarray:
    """A grey frame with a red square in the middle and a green one at the right edge."""
    frame = np.full((h, w, 3), 100, np.uint8)
    frame[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3] = (255, 0, 0)
    frame[h // 2 - 3 : h // 2 + 3, w - 6 :] = (0, 255, 0)
    return frame


def pixel_at(canvas: np.ndarray, az_deg: float, el_deg: float = 0.0) -> np.ndarray:
    h, w = canvas.shape[:2]
    u, v = direction_to_equirect(np.radians(az_deg), np.radians(el_deg), w, h)
    return canvas[int(v), int(u)]


@pytest.mark.parametrize("yaw", [0.0, 90.0, -135.0])
def test_view_centre_lands_at_the_camera_direction(yaw):
    q = ypr_to_quat(yaw, 0.0, 0.0)
    canvas, seen = view_to_panorama(marked_view(), q, 90.0, 256, 128)
    assert tuple(pixel_at(canvas, yaw)) == (255, 0, 0)
    # The right edge of a 90-degree view is 45 degrees clockwise (azimuth - 45).
    assert tuple(pixel_at(canvas, yaw - 43)) == (0, 255, 0)
    # Behind the camera nothing is seen.
    assert not seen[64, int(direction_to_equirect(np.radians(yaw + 180), 0, 256, 128)[0])]
    assert 0.07 < seen.mean() < 0.15  # about 90 x 74 degrees of 360 x 180


def test_pitched_camera_looks_up():
    canvas, _ = view_to_panorama(marked_view(), ypr_to_quat(0.0, -40.0, 0.0), 60.0, 256, 128)
    # Ry(pitch) with negative pitch turns the front axis upwards (z up).
    assert tuple(pixel_at(canvas, 0.0, 40.0)) == (255, 0, 0)


def test_bad_views_are_refused():
    with pytest.raises(InputError, match="field of view"):
        view_to_panorama(marked_view(), [1, 0, 0, 0], 180.0, 64, 32)
    with pytest.raises(InputError, match="quaternion"):
        view_to_panorama(marked_view(), [1, 0, 0], 90.0, 64, 32)
    with pytest.raises(InputError, match="non-finite"):
        view_to_panorama(marked_view(), [np.nan, 0, 0, 0], 90.0, 64, 32)


def test_frame_checks():
    assert check_rgb_frame(np.zeros((4, 6), np.uint8)).shape == (4, 6, 3)
    assert check_rgb_frame(np.ones((4, 6, 3), np.float32)).max() == 255
    with pytest.raises(InputError, match=r"RGB image \(H, W, 3\)"):
        check_rgb_frame(np.zeros((4, 6, 4), np.uint8))
    with pytest.raises(InputError, match="dtype"):
        check_rgb_frame(np.zeros((4, 6, 3), np.int32))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        check_rgb_frame(np.full((4, 6, 3), 3.0))


def test_patch_alignment_uses_the_newest_frame_before_the_midpoint():
    times = np.array([0.0, 0.25, 0.5, 2.0])  # a gap between 0.5 s and 2 s
    index = patch_frame_index(12, 0.186, times)
    mids = (np.arange(12) + 0.5) * 0.186
    for i, m in zip(index, mids, strict=True):
        assert times[i] <= m or i == 0
        assert i == len(times) - 1 or times[i + 1] > m
    assert patch_frame_index(2, 0.186, np.array([1.0])).tolist() == [0, 0]
