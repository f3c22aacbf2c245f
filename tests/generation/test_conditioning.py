"""Field-of-view frames land at the directions they show; frame checks; patch alignment;
the saliency of each patch's frame against the frames of the recent patches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.foa.panorama import direction_to_equirect
from swansphere.foa.rotation import ypr_to_quat
from swansphere.generation.conditioning import (
    FrameCues,
    SaliencyWindow,
    check_rgb_frame,
    frame_cues,
    panorama_canvas,
    panorama_canvases,
    patch_frame_index,
    patch_saliency,
    view_to_panorama,
)
from swansphere.models.bundle import load_bundle
from swansphere.models.svac import SVAC, SVAC_PRESETS


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


def test_canvases_are_the_antialiased_resize_rounded_within_one_level():
    """The uint8 kernel is fixed-point: within 1 of the float resize rounded, and a frame
    already at the canvas size passes through untouched."""
    frames = np.random.default_rng(3).integers(0, 256, (2, 96, 192, 3), dtype=np.uint8)
    canvases = panorama_canvases(frames, (32, 64))
    assert canvases.shape == (2, 3, 32, 64) and canvases.dtype == torch.uint8
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    exact = torch.nn.functional.interpolate(
        video, size=(32, 64), mode="bilinear", align_corners=False, antialias=True
    )
    assert (canvases.float() - exact.round()).abs().max() <= 1.0
    assert torch.equal(panorama_canvas(frames[0], (32, 64)), canvases[0])
    same = panorama_canvas(frames[0], (96, 192))
    assert torch.equal(same, torch.from_numpy(frames[0]).permute(2, 0, 1))


def test_patch_alignment_uses_the_newest_frame_before_the_midpoint():
    times = np.array([0.0, 0.25, 0.5, 2.0])  # a gap between 0.5 s and 2 s
    index = patch_frame_index(12, 0.186, times)
    mids = (np.arange(12) + 0.5) * 0.186
    for i, m in zip(index, mids, strict=True):
        assert times[i] <= m or i == 0
        assert i == len(times) - 1 or times[i + 1] > m
    assert patch_frame_index(2, 0.186, np.array([1.0])).tolist() == [0, 0]


@pytest.fixture(scope="module")
def svac() -> SVAC:
    return load_bundle("default").build("svac")


@pytest.fixture(scope="module")
def moving_object() -> torch.Tensor:
    """Six panorama frames (6, 3, 64, 128): a still grey scene with a bright square that
    moves one token cell to the right every frame."""
    frames = torch.full((6, 3, 64, 128), 90, dtype=torch.uint8)
    frames[:, :, :32, 64:] = 60  # some still structure
    for i in range(6):
        frames[i, :, 20:36, 16 * i + 2 : 16 * i + 14] = 250
    return frames


def test_frame_cues_are_single_frame_tokens_and_the_spatial_codes_embeddings(svac, moving_object):
    cues = frame_cues(svac, moving_object, patch_embeddings=True)
    # Each frame alone, repeated over the VideoMAE window (and the spatial code's tubelet).
    for i in (0, 3):
        alone = moving_object[i : i + 1, None].expand(-1, svac.video_encoder.window, -1, -1, -1)
        torch.testing.assert_close(cues.tokens[i : i + 1], svac.video_tokens(alone)[:, 0])
    pixels = svac.video_encoder.pixels(moving_object[:2, None].expand(-1, 2, -1, -1, -1))
    torch.testing.assert_close(cues.patch_embeddings[:2], svac.spatial.pixel_tokens(pixels)[:, 0])
    assert frame_cues(svac, moving_object).patch_embeddings is None
    both = FrameCues.cat([cues[:2], cues[2:]])
    torch.testing.assert_close(both.patch_embeddings, cues.patch_embeddings)
    assert len(cues[torch.tensor([0, 0, 5])]) == 3


def test_saliency_departs_from_the_mean_of_the_last_window_frames(svac, moving_object):
    cues = frame_cues(svac, moving_object, patch_embeddings=True)
    window = SaliencyWindow(svac, window=3)
    got = [window.push(cues[i : i + 1]) for i in range(len(cues))]
    for i, sal in enumerate(got):
        recent = slice(max(0, i - 2), i + 1)
        expected = svac.spatial.saliency_against(
            cues.tokens[i : i + 1],
            cues.patch_embeddings[i : i + 1],
            cues.tokens[recent].mean(dim=0),
            cues.patch_embeddings[recent].mean(dim=0),
        )
        torch.testing.assert_close(sal, expected)
        assert sal.shape == (1, 32) and float(sal.sum()) == pytest.approx(1.0, abs=1e-5)
    # The whole sequence at once (the training features) is the same stream.
    torch.testing.assert_close(patch_saliency(svac, cues, 3), torch.cat(got))
    # Undo (a patch whose sampling failed) puts the window back: frames 4, 5, then 5 again.
    state = window.state()
    window.push(cues[:1])
    window.restore(state)
    recent = cues[torch.tensor([4, 5, 5])]
    expected = svac.spatial.saliency_against(
        cues.tokens[5:6],
        cues.patch_embeddings[5:6],
        recent.tokens.mean(dim=0),
        recent.patch_embeddings.mean(dim=0),
    )
    torch.testing.assert_close(window.push(cues[5:6]), expected)


def test_svac_clip_saliency_is_the_saliency_against_the_clip_mean(svac, moving_object):
    video = moving_object[None]  # one clip of six frames
    pixels = svac.video_encoder.pixels(video)
    tokens = svac.video_encoder.encode(pixels)
    local = svac.spatial.pixel_tokens(pixels)
    expected = svac.spatial.saliency_against(
        tokens, local, tokens.mean(dim=1, keepdim=True), local.mean(dim=1, keepdim=True)
    )
    with torch.no_grad():
        torch.testing.assert_close(svac.video_saliency(video), expected)


def test_saliency_needs_a_spatial_code_and_a_window():
    plain = SVAC(dataclasses.replace(SVAC_PRESETS["tiny"], spatial_weight=0.0))
    with pytest.raises(InputError, match="no spatial code"):
        SaliencyWindow(plain, 4)
    with pytest.raises(InputError, match="no spatial code"):
        frame_cues(plain, torch.zeros(1, 3, 64, 128, dtype=torch.uint8), patch_embeddings=True)
    with pytest.raises(InputError, match="at least one patch"):
        SaliencyWindow(load_bundle("default").build("svac"), 0)
