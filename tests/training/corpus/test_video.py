import itertools
import os
import re

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.panorama import direction_to_equirect, roll_equirect, rotate_equirect
from swansphere.generation.video import read_video as read_mp4
from swansphere_training.corpus import video
from swansphere_training.corpus.classes import SOUND_CLASSES
from swansphere_training.corpus.video import (
    VisualObject,
    angular_radius,
    class_colour,
    draw_markers,
    render_frames,
    write_mp4,
)

W, H = 256, 128
SEED = 7


def still(name, az_deg, el_deg, distance=3.0, n=1, seed=0, sounding=True):
    """A VisualObject standing still at a direction in degrees."""
    full = lambda value: np.full(n, value, dtype=np.float64)  # noqa: E731
    return VisualObject(
        name, full(np.deg2rad(az_deg)), full(np.deg2rad(el_deg)), full(distance), sounding, seed
    )


def object_mask(objects, n=1, frame=0, **kwargs):
    """Pixels (H, W) bool where the objects change the background, and the frame itself.

    Comparing with an empty render of the same background isolates the object pixels
    independently of how they are coloured.
    """
    empty = render_frames([], n, background_seed=SEED, **kwargs)[frame].astype(int)
    image = render_frames(objects, n, background_seed=SEED, **kwargs)[frame]
    return np.abs(image.astype(int) - empty).sum(axis=-1) > 24, image


def centroid(mask):
    v, u = np.nonzero(mask)
    return u.mean() + 0.5, v.mean() + 0.5


def circular_mean_u(mask, width=W):
    """Mean column of a mask on the periodic axis (handles shapes split by the seam)."""
    _, u = np.nonzero(mask)
    angle = 2 * np.pi * (u + 0.5) / width
    mean = np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())
    return np.mod(mean, 2 * np.pi) / (2 * np.pi) * width


def test_render_is_deterministic_and_seeded():
    objs = [still("siren", 30, 10, n=4, seed=1), still("dog_bark", -100, -20, n=4, seed=2)]
    a = render_frames(objs, 4, background_seed=3)
    b = render_frames(objs, 4, background_seed=3)
    assert a.shape == (4, H, W, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - render_frames(objs, 4, background_seed=4)).mean() > 5
    other_seed = [still("siren", 30, 10, n=4, seed=99), objs[1]]
    assert not np.array_equal(a, render_frames(other_seed, 4, background_seed=3))


def test_background_is_sky_above_ground_below_and_seamless():
    frame = render_frames([], 1, background_seed=SEED)[0].astype(float)
    sky, ground = frame[: H // 8], frame[-H // 8 :]
    assert sky[..., 2].mean() > ground[..., 2].mean() + 30  # bluer and brighter up top
    assert sky.mean() > ground.mean()
    # The seam is invisible: the jump between the last and first column is like any other.
    seam = np.abs(frame[:, 0] - frame[:, -1]).mean()
    typical = np.abs(np.diff(frame, axis=1)).mean()
    assert seam < 3 * typical + 2


def test_front_object_is_centred():
    # alarm_beeps is mirror-symmetric left-right, so its centroid is exactly its column.
    mask, _ = object_mask([still("alarm_beeps", 0, 0)])
    u, v = centroid(mask)
    assert abs(u - W / 2) < 1.0
    assert abs(v - H / 2) < 5  # the shape sits a little below its centre
    for name in SOUND_CLASSES:  # every class lands on its direction
        mask, _ = object_mask([still(name, 0, 0)])
        u, v = centroid(mask)
        radius_px = np.rad2deg(angular_radius(name, 3.0)) * W / 360
        assert abs(u - W / 2) < 0.45 * radius_px and abs(v - H / 2) < 0.45 * radius_px, name


def test_left_object_is_at_a_quarter_width():
    mask, _ = object_mask([still("alarm_beeps", 90, 0)])
    u, _ = centroid(mask)
    assert abs(u - W / 4) < 1.0
    mask, _ = object_mask([still("alarm_beeps", -90, 0)])
    assert abs(centroid(mask)[0] - 3 * W / 4) < 1.0


def test_object_behind_straddles_the_seam():
    mask, _ = object_mask([still("alarm_beeps", 180, 0)])
    columns = np.nonzero(mask.any(axis=0))[0]
    assert columns.min() == 0 and columns.max() == W - 1
    assert mask[:, :10].sum() > 30 and mask[:, -10:].sum() > 30
    assert not mask[:, W // 4 : 3 * W // 4].any()
    u = circular_mean_u(mask)
    assert min(u, W - u) < 1.0
    # The two halves are the same drawing as the front object rolled by 180 degrees.
    front_mask, _ = object_mask([still("alarm_beeps", 0, 0)])
    rolled = roll_equirect(front_mask.astype(float), 180.0) > 0.5
    assert (rolled & mask).sum() / (rolled | mask).sum() > 0.9


def test_object_near_the_pole_spans_many_columns():
    equator, _ = object_mask([still("church_bell", 0, 0)])
    polar, _ = object_mask([still("church_bell", 0, 82)])
    assert np.count_nonzero(equator.any(axis=0)) < W / 5
    assert np.count_nonzero(polar.any(axis=0)) > W / 2
    assert not polar[H // 3 :].any()  # it stays near the top


def test_drawing_is_rotation_consistent_on_the_sphere():
    # Pitching the whole panorama up by 60 degrees must match drawing the object at
    # elevation 60: the matrix maps the front (1,0,0) to (cos 60, 0, sin 60).
    c, s = np.cos(np.deg2rad(60)), np.sin(np.deg2rad(60))
    pitch = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    flat, _ = object_mask([still("car_engine", 0, 0, distance=2.0)])
    high, _ = object_mask([still("car_engine", 0, 60, distance=2.0)])
    rotated = rotate_equirect(flat.astype(float), pitch) > 0.5
    assert (rotated & high).sum() / (rotated | high).sum() > 0.85


def test_angular_size_shrinks_with_distance():
    near, _ = object_mask([still("drum_kit", 20, 0, distance=2.0)])
    far, _ = object_mask([still("drum_kit", 20, 0, distance=8.0)])
    assert near.sum() > 4 * far.sum() > 0
    assert angular_radius("drum_kit", 2.0) > angular_radius("drum_kit", 8.0)
    # Never smaller than the floor nor larger than the ceiling.
    assert angular_radius("drum_kit", 1e4) == pytest.approx(video.MIN_ANGULAR_RADIUS)
    assert angular_radius("drum_kit", 1e-3) == pytest.approx(video.MAX_ANGULAR_RADIUS)


def test_objects_are_drawn_far_to_near():
    # Two objects in the same direction: the near one hides the far one where it is opaque.
    def frame(rain_d, bell_d):
        objs = [still("rain", 0, 0, distance=rain_d), still("church_bell", 0, 0, distance=bell_d)]
        return render_frames(objs, 1, background_seed=SEED)[0]

    bell_alone = render_frames([still("church_bell", 0, 0, distance=2.5)], 1, background_seed=SEED)[
        0
    ]
    bell_mask, _ = object_mask([still("church_bell", 0, 0, distance=2.5)])
    bell_front = frame(rain_d=5.0, bell_d=2.5)
    assert np.mean(np.all(bell_front[bell_mask] == bell_alone[bell_mask], axis=-1)) > 0.8
    # The order is by distance, not by list position: swap the distances and the rain
    # (drawn last, but now farther) must no longer win everywhere.
    rain_front = frame(rain_d=1.5, bell_d=4.0)
    assert not np.array_equal(rain_front, bell_front)
    rain_alone = render_frames([still("rain", 0, 0, distance=1.5)], 1, background_seed=SEED)[0]
    rain_mask, _ = object_mask([still("rain", 0, 0, distance=1.5)])
    opaque = rain_mask & np.all(rain_alone == rain_front, axis=-1)
    assert opaque.sum() > 0.5 * rain_mask.sum()


def test_animation_changes_frames_and_distractors_look_the_same():
    objs = [still("siren", 0, 0, n=3), still("helicopter", 90, 10, n=3)]
    frames = render_frames(objs, 3, background_seed=SEED)
    assert np.abs(frames[0].astype(int) - frames[1]).sum() > 1000
    silent = [
        VisualObject(o.class_name, o.azimuth, o.elevation, o.distance, False, o.seed) for o in objs
    ]
    np.testing.assert_array_equal(frames, render_frames(silent, 3, background_seed=SEED))


def test_moving_object_follows_its_trajectory():
    n = 3
    az = np.deg2rad([0.0, 45.0, 90.0])
    obj = VisualObject("alarm_beeps", az, np.zeros(n), np.full(n, 3.0), True, 0)
    for i in range(n):
        mask, _ = object_mask([obj], n=n, frame=i)
        expected, _ = direction_to_equirect(az[i], 0.0, W, H)
        assert abs(centroid(mask)[0] - expected) < 1.0


def test_class_visuals_are_distinct():
    means = {}
    for name in SOUND_CLASSES:
        mask, image = object_mask([still(name, 0, 0, distance=2.0, seed=3)])
        assert mask.sum() > 100, name
        means[name] = image[mask].astype(float).mean(axis=0)
    for a, b in itertools.combinations(SOUND_CLASSES, 2):
        assert np.linalg.norm(means[a] - means[b]) > 15, (a, b, means[a], means[b])


def test_class_colour():
    assert class_colour("siren") == (235, 30, 30)
    colours = {class_colour(name) for name in SOUND_CLASSES}
    assert len(colours) == len(SOUND_CLASSES)
    with pytest.raises(InputError, match="unknown visual class"):
        class_colour("kazoo")


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="unknown visual class"):
        still("kazoo", 0, 0)
    with pytest.raises(InputError, match="differ in length"):
        VisualObject("siren", np.zeros(3), np.zeros(2), np.ones(3), True, 0)
    with pytest.raises(InputError, match="distance"):
        VisualObject("siren", np.zeros(2), np.zeros(2), np.zeros(2), True, 0)
    with pytest.raises(InputError, match="non-finite"):
        VisualObject("siren", np.array([0.0, np.nan]), np.zeros(2), np.ones(2), True, 0)
    with pytest.raises(InputError, match="one per frame"):
        render_frames([still("siren", 0, 0, n=3)], 4, background_seed=0)
    with pytest.raises(InputError, match="fps"):
        render_frames([], 2, fps=0.0, background_seed=0)


def test_markers_wrap_at_the_seam_and_keep_the_input():
    frame = np.zeros((H, W, 3), dtype=np.uint8)
    marked = draw_markers(frame, [(np.pi, 0.0, "siren"), (0.0, 0.0, "")])
    assert not frame.any()  # input untouched
    red = np.all(marked == np.array(class_colour("siren"), dtype=np.uint8), axis=-1)
    columns = np.nonzero(red.any(axis=0))[0]
    assert columns.min() < 8 and columns.max() > W - 8  # ring split by the seam
    assert red[H // 2 + 6 : H // 2 + 14].sum() > 10  # the label is written below it
    white = np.all(marked == 255, axis=-1)
    u, v = centroid(white)
    assert abs(u - W / 2) < 1.0 and abs(v - H / 2) < 1.0  # unlabelled marker is white
    with pytest.raises(InputError):
        draw_markers(frame[..., 0], [])


def test_mp4_round_trip(tmp_path):
    objs = [still("car_engine", 0, 0, n=8), still("crowd", 120, -10, n=8, sounding=False)]
    frames = render_frames(objs, 8, background_seed=SEED)
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames, fps=4.0)
    assert os.listdir(tmp_path) == ["clip.mp4"]  # the temporary file is gone
    back, fps = read_mp4(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == pytest.approx(4.0)
    assert np.abs(back.astype(float) - frames).mean() < 4.0
    with pytest.raises(InputError, match="even"):
        write_mp4(path, frames[:, :, :-1], fps=4.0)


def test_mp4_overwrite_is_atomic(tmp_path, monkeypatch):
    frames = render_frames([still("siren", 0, 0, n=4)], 4, background_seed=SEED)
    path = tmp_path / "clip.mp4"
    write_mp4(path, frames)
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    # A write that fails at the last step leaves the old file and no temporary behind.
    monkeypatch.setattr(video.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_mp4(path, frames[::-1])
    assert os.listdir(tmp_path) == ["clip.mp4"]
    assert path.read_bytes() == before


def test_unreadable_videos_raise_input_error(tmp_path):
    corrupt = tmp_path / "noise.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match=re.escape(str(corrupt))):
        read_mp4(corrupt)
    with pytest.raises(InputError, match="no such file"):
        read_mp4(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=re.escape(str(empty))):
        read_mp4(empty)


def test_drawing_window_never_clips_a_shape(monkeypatch):
    # Rendering only inside the computed pixel window must equal evaluating every
    # class over the whole panorama, for directions near the poles and the seam too.
    rng = np.random.default_rng(5)
    objs = [
        still(name, rng.uniform(-180, 180), el, distance=d, seed=i)
        for i, (name, el, d) in enumerate(
            zip(
                SOUND_CLASSES,
                [0, 30, 60, 75, 84, -88, -60, -30, 45, 89.5, -10, 10, 70, -75, 20, 0],
                [1.0, 1.5, 2.0, 1.0, 3.0, 1.2, 1.0, 6.0, 1.0, 2.0, 20.0, 1.0, 1.3, 1.0, 2.5, 1.0],
                strict=True,
            )
        )
    ]
    objs.append(still("siren", 179.0, 5, distance=1.0))
    objs.append(still("crowd", -178.0, -40, distance=1.0))
    windowed = render_frames(objs, 1, background_seed=SEED)
    monkeypatch.setattr(video, "_window", lambda *args: (slice(0, H), slice(0, W)))
    whole = render_frames(objs, 1, background_seed=SEED)
    assert np.abs(windowed.astype(int) - whole).max() <= 1


@pytest.mark.parametrize("az_deg, el_deg", [(0, 0), (90, 30), (180, -45), (-120, 70)])
def test_shapes_are_upright_and_not_mirrored(az_deg, el_deg):
    # The local frame of a shape: x to the image right (decreasing azimuth), y up, both
    # in object radii; a pixel 3 columns right / 3 rows up of the centre lies there.
    az, el = np.deg2rad(az_deg), np.deg2rad(el_deg)
    u, v = direction_to_equirect(az, el, W, H)
    grid = video._pixel_grid(W, H)
    basis = video._tangent_basis(az, el)
    col, row = int(u), int(v)
    x_right, y_right = video._local_coords(grid[row, (col + 3) % W], basis, 1.0)
    x_up, y_up = video._local_coords(grid[row - 3, col], basis, 1.0)
    assert x_right > 0 and abs(y_right) < 0.5 * x_right
    assert y_up > 0 and abs(x_up) < 0.5 * y_up
    # Radial distance is the great-circle angle (azimuthal-equidistant frame).
    x0, y0 = video._local_coords(grid[row, col], basis, 1.0)
    centre = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    expected = np.arccos(np.clip(grid[row, col] @ centre, -1, 1))
    assert np.hypot(x0, y0) == pytest.approx(expected, abs=1e-5)


def test_mpeg4_fallback_round_trip(tmp_path, monkeypatch):
    # PyAV builds without libx264 fall back to MPEG-4 part 2; that path must work too.
    monkeypatch.setattr(video, "_video_codec", lambda: "mpeg4")
    frames = render_frames([still("birdsong", 40, 10, n=6)], 6, background_seed=SEED)
    write_mp4(tmp_path / "fallback.mp4", frames, fps=4.0)
    back, fps = read_mp4(tmp_path / "fallback.mp4")
    assert back.shape == frames.shape and fps == pytest.approx(4.0)
    assert np.abs(back.astype(float) - frames).mean() < 6.0
