"""Tests for swansphere.foa.doa: estimators, diffuseness, distance, error metrics, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.doa import (
    Trajectory,
    angular_error,
    angular_error_deg,
    azimuth_error,
    azimuth_error_deg,
    clip_direction,
    direction_errors,
    doa_trajectory,
    elevation_error,
    elevation_error_deg,
    evaluate_doa,
    evaluate_moving_source,
)
from swansphere.foa.encode import direction_to_vector, encode_mono
from swansphere.foa.fields import diffuse_field, mix_at_drr
from swansphere.foa.rotation import quat_to_matrix, rotate_foa, ypr_to_matrix

FS = 16000  # a low rate keeps the tests fast; 8 kHz (the band's top) is exactly Nyquist


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(round(seconds * FS))


def _plane_wave(az_deg: float, el_deg: float, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    return encode_mono(_noise(seconds, seed), np.deg2rad(az_deg), np.deg2rad(el_deg))


def _haversine(az1, el1, az2, el2):
    """Great-circle angle by the haversine formula: an independent reference."""
    h = np.sin((el2 - el1) / 2) ** 2 + np.cos(el1) * np.cos(el2) * np.sin((az2 - az1) / 2) ** 2
    return 2 * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


# ---------------------------------------------------------------- reference directions

DIRECTIONS_DEG = [
    (0.0, 0.0),  # front
    (90.0, 0.0),  # left
    (-90.0, 0.0),  # right
    (0.0, 90.0),  # up
    (135.0, 0.0),  # behind left
    (180.0, 0.0),  # behind
    (-120.0, -30.0),  # behind right, below
    (45.0, 60.0),  # front left, high
]


@pytest.mark.parametrize(("az_deg", "el_deg"), DIRECTIONS_DEG)
def test_plane_wave_gives_its_own_direction(az_deg: float, el_deg: float) -> None:
    foa = _plane_wave(az_deg, el_deg)
    az, el = clip_direction(foa)
    assert np.rad2deg(angular_error(az, el, np.deg2rad(az_deg), np.deg2rad(el_deg))) < 1e-9
    trajectory = doa_trajectory(foa, FS)
    errors = angular_error_deg(
        np.rad2deg(trajectory.azimuth), np.rad2deg(trajectory.elevation), az_deg, el_deg
    )
    assert np.max(errors) < 1e-9
    if abs(el_deg) < 90:  # azimuth is undefined at the poles
        assert np.max(azimuth_error_deg(np.rad2deg(trajectory.azimuth), az_deg)) < 1e-9
    np.testing.assert_allclose(trajectory.diffuseness, 0.0, atol=1e-9)


def test_explicit_direction_values() -> None:
    # Pins the axis convention: +y is left (+90 deg), +z is up.
    az, el = clip_direction(_plane_wave(90.0, 0.0))
    assert np.rad2deg(az) == pytest.approx(90.0, abs=1e-9)
    assert np.rad2deg(el) == pytest.approx(0.0, abs=1e-9)
    az, el = clip_direction(_plane_wave(135.0, 0.0))
    assert np.rad2deg(az) == pytest.approx(135.0, abs=1e-9)
    _, el = clip_direction(_plane_wave(0.0, 90.0))
    assert np.rad2deg(el) == pytest.approx(90.0, abs=1e-9)


def test_clip_direction_is_the_mean_of_w_times_dipoles() -> None:
    # Hand-made AmbiX (W, Y, Z, X) with intensity (Ix, Iy, Iz) = (1, 1, sqrt 2): az 45, el 45.
    w = np.array([1.0, -1.0, 1.0, -1.0])
    foa = np.stack([w, w, np.sqrt(2) * w, w])
    az, el = clip_direction(foa)
    assert np.rad2deg(az) == pytest.approx(45.0)
    assert np.rad2deg(el) == pytest.approx(45.0)


def test_w_only_signal_has_no_direction_and_is_fully_diffuse() -> None:
    foa = np.zeros((4, 2 * FS))
    foa[0] = _noise(2.0)
    assert clip_direction(foa) == (0.0, 0.0)
    trajectory = doa_trajectory(foa, FS)
    np.testing.assert_allclose(trajectory.diffuseness, 1.0)
    np.testing.assert_allclose(trajectory.azimuth, 0.0)


# ---------------------------------------------------------------- error metrics


def test_wrapped_azimuth_error() -> None:
    assert azimuth_error_deg(179.0, -179.0) == pytest.approx(2.0)
    assert azimuth_error_deg(-179.0, 179.0) == pytest.approx(2.0)
    assert azimuth_error(0.0, np.pi) == pytest.approx(np.pi)
    assert azimuth_error(3 * np.pi, -np.pi) == pytest.approx(0.0, abs=1e-12)
    assert azimuth_error_deg(10.0, 350.0) == pytest.approx(20.0)
    np.testing.assert_allclose(azimuth_error_deg([0, 90, 270], [360, -90, 0]), [0, 180, 90])


def test_elevation_error() -> None:
    assert elevation_error_deg(30.0, -10.0) == pytest.approx(40.0)
    assert elevation_error(-0.5, 0.25) == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("az1", "el1", "az2", "el2", "expected"),
    [
        (0, 0, 90, 0, 90),
        (0, 0, 180, 0, 180),
        (0, 0, 0, 45, 45),
        (0, 0, 90, 90, 90),
        (0, 90, 123, 90, 0),  # both straight up: azimuth is irrelevant
        (0, 90, 0, -90, 180),
        (179, 0, -179, 0, 2),
        (45, 30, -135, -30, 180),  # antipodes
    ],
)
def test_great_circle_reference_values(az1, el1, az2, el2, expected) -> None:
    assert angular_error_deg(az1, el1, az2, el2) == pytest.approx(expected, abs=1e-9)


def test_great_circle_matches_haversine_and_is_accurate_for_tiny_angles() -> None:
    rng = np.random.default_rng(0)
    az1, az2 = rng.uniform(-np.pi, np.pi, (2, 500))
    el1, el2 = np.arcsin(rng.uniform(-1, 1, (2, 500)))
    np.testing.assert_allclose(
        angular_error(az1, el1, az2, el2), _haversine(az1, el1, az2, el2), atol=1e-12
    )
    # acos(dot) would give 0 or ~1e-8 here; the atan2 form keeps full relative precision.
    assert angular_error(0.3, 0.2, 0.3 + 1e-10, 0.2) == pytest.approx(1e-10 * np.cos(0.2), rel=1e-6)


def test_direction_errors_means_over_clips() -> None:
    est_az, est_el = np.deg2rad([179.0, 0.0]), np.deg2rad([0.0, 10.0])
    ref_az, ref_el = np.deg2rad([-179.0, 0.0]), np.deg2rad([0.0, 0.0])
    errors = direction_errors(est_az, est_el, ref_az, ref_el)
    assert errors["azimuth_deg"] == pytest.approx(1.0)  # (2 + 0) / 2
    assert errors["elevation_deg"] == pytest.approx(5.0)  # (0 + 10) / 2
    assert errors["angle_deg"] == pytest.approx(6.0)  # (2 + 10) / 2
    for name in ("azimuth", "elevation", "angle"):
        assert errors[name] == pytest.approx(np.deg2rad(errors[f"{name}_deg"]))


def test_metrics_reject_non_finite_and_empty() -> None:
    with pytest.raises(InputError, match="non-finite"):
        azimuth_error(np.nan, 0.0)
    with pytest.raises(InputError, match="non-finite"):
        angular_error(0.0, np.inf, 0.0, 0.0)
    with pytest.raises(InputError, match="at least one"):
        direction_errors([], [], [], [])


# ---------------------------------------------------------------- properties


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    return quat_to_matrix(rng.standard_normal(4))


def test_rotating_the_field_rotates_the_estimates() -> None:
    rng = np.random.default_rng(3)
    n = 3 * FS
    foa = mix_at_drr(encode_mono(_noise(3.0), 0.4, 0.3), diffuse_field(n, FS, rng), 3.0)
    for _ in range(3):
        rotation = _random_rotation(rng)
        rotated = rotate_foa(foa, rotation)
        expected = rotation @ direction_to_vector(*clip_direction(foa))
        np.testing.assert_allclose(
            direction_to_vector(*clip_direction(rotated)), expected, atol=1e-9
        )
        before, after = doa_trajectory(foa, FS), doa_trajectory(rotated, FS)
        expected = direction_to_vector(before.azimuth, before.elevation) @ rotation.T
        np.testing.assert_allclose(
            direction_to_vector(after.azimuth, after.elevation), expected, atol=1e-9
        )
        # Diffuseness and distance do not depend on the orientation.
        np.testing.assert_allclose(after.diffuseness, before.diffuseness, atol=1e-9)
        np.testing.assert_allclose(after.distance, before.distance, rtol=1e-9)


def test_scene_yaw_moves_a_front_source_to_the_left() -> None:
    rotated = rotate_foa(_plane_wave(0.0, 0.0), ypr_to_matrix(90.0, 0.0, 0.0))
    az, el = clip_direction(rotated)
    assert np.rad2deg(az) == pytest.approx(90.0, abs=1e-9)
    assert el == pytest.approx(0.0, abs=1e-12)


def test_estimates_do_not_depend_on_level() -> None:
    foa = mix_at_drr(
        _plane_wave(-70.0, 20.0), diffuse_field(2 * FS, FS, np.random.default_rng(4)), 5
    )
    a, b = doa_trajectory(foa, FS), doa_trajectory(foa * 1e-3, FS)
    np.testing.assert_allclose(b.azimuth, a.azimuth, atol=1e-12)
    np.testing.assert_allclose(b.diffuseness, a.diffuseness, atol=1e-12)
    assert clip_direction(foa * 1e-3) == pytest.approx(clip_direction(foa))


# ---------------------------------------------------------------- diffuseness


def test_diffuseness_of_an_isotropic_field_is_near_one() -> None:
    foa = diffuse_field(4 * FS, FS, np.random.default_rng(5))
    psi = doa_trajectory(foa, FS).diffuseness
    assert np.all(psi > 0.95)
    # A finite set of plane waves is nearly as diffuse.
    psi = doa_trajectory(diffuse_field(4 * FS, FS, np.random.default_rng(6), 500), FS).diffuseness
    assert np.all(psi > 0.9)


@pytest.mark.parametrize("drr_db", [0.0, 10.0])
def test_diffuseness_follows_the_direct_to_diffuse_ratio(drr_db: float) -> None:
    # Direct energy density P_d and diffuse P_n (both equal to W's power under SN3D) give
    # psi = P_n / (P_d + P_n) = 1 / (1 + DRR): 0.5 at 0 dB, 1/11 at 10 dB.
    rng = np.random.default_rng(7)
    foa = mix_at_drr(_plane_wave(30.0, -10.0, 4.0), diffuse_field(4 * FS, FS, rng), drr_db)
    expected = 1.0 / (1.0 + 10.0 ** (drr_db / 10.0))
    assert np.mean(doa_trajectory(foa, FS).diffuseness) == pytest.approx(expected, abs=0.02)


# ---------------------------------------------------------------- segments, smoothing, distance


def test_level_steps_give_inverse_square_distances() -> None:
    # Amplitude 1, 1/2, 1/4 for 2 s each: energy 1, 1/4, 1/16 -> distance 1, 2, 4.
    gain = np.repeat([1.0, 0.5, 0.25], 2 * FS)
    foa = encode_mono(_noise(6.0), 1.0, 0.2, gain)
    trajectory = doa_trajectory(foa, FS)
    np.testing.assert_allclose(trajectory.distance, [1, 1, 2, 2, 4, 4], rtol=0.1)
    assert np.min(trajectory.distance) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("seconds", "ends"),
    [
        (3.0, [1.0, 2.0, 3.0]),
        (3.3, [1.0, 2.0, 3.3]),  # 0.3 s remainder merged into the last segment
        (3.6, [1.0, 2.0, 3.0, 3.6]),  # 0.6 s remainder kept as its own segment
        (0.7, [0.7]),  # shorter than one segment: one segment
    ],
)
def test_segment_bounds(seconds: float, ends: list[float]) -> None:
    trajectory = doa_trajectory(_plane_wave(20.0, 0.0, seconds), FS)
    np.testing.assert_allclose(trajectory.end_s, ends)
    np.testing.assert_allclose(trajectory.start_s, [0.0, *ends[:-1]])


def test_smoothing_is_a_centred_average_of_unit_vectors() -> None:
    # Front for 2 s then left for 2 s. Unsmoothed: 0, 0, 90, 90. Smoothed over 3 segments:
    # the inner segments average (2 front + 1 left) -> atan2(1, 2) and (1 front + 2 left);
    # the end segments keep their own direction (the window shrinks symmetrically).
    azimuth = np.repeat(np.deg2rad([0.0, 90.0]), 2 * FS)
    foa = encode_mono(_noise(4.0), azimuth, 0.0)
    raw = np.rad2deg(doa_trajectory(foa, FS, smooth=1).azimuth)
    np.testing.assert_allclose(raw, [0, 0, 90, 90], atol=0.5)
    smoothed = np.rad2deg(doa_trajectory(foa, FS).azimuth)
    atan_half = np.rad2deg(np.arctan2(1, 2))
    np.testing.assert_allclose(smoothed, [0, atan_half, 90 - atan_half, 90], atol=0.5)


def test_to_json() -> None:
    trajectory = doa_trajectory(_plane_wave(-45.0, 30.0, 2.0), FS)
    records = json.loads(json.dumps(trajectory.to_json()))
    assert len(records) == len(trajectory) == 2
    assert set(records[0]) == {
        "start_s",
        "end_s",
        "azimuth_deg",
        "elevation_deg",
        "diffuseness",
        "distance",
    }
    assert records[1]["start_s"] == 1.0 and records[1]["end_s"] == 2.0
    assert records[0]["azimuth_deg"] == pytest.approx(-45.0)
    assert records[0]["elevation_deg"] == pytest.approx(30.0)


def test_trajectory_is_read_only_and_checked() -> None:
    trajectory = doa_trajectory(_plane_wave(0.0, 0.0), FS)
    with pytest.raises(ValueError, match="read-only"):
        trajectory.azimuth[0] = 1.0
    with pytest.raises(InputError, match="one length"):
        Trajectory(*[np.zeros(2)] * 5, np.zeros(3))


# ---------------------------------------------------------------- acceptance


def test_acceptance_clean_20_directions() -> None:
    result = evaluate_doa(n_directions=20, seconds=2.0, sample_rate=FS, seed=0)
    assert result["clip_mean_deg"] <= 0.5
    assert result["trajectory_mean_deg"] <= 0.5
    assert result["mean_diffuseness"] < 0.01


def test_acceptance_diffuse_10db_20_directions() -> None:
    result = evaluate_doa(n_directions=20, drr_db=10.0, seconds=2.0, sample_rate=FS, seed=0)
    assert result["clip_mean_deg"] <= 2.0
    assert result["trajectory_mean_deg"] <= 2.0
    assert result["mean_diffuseness"] == pytest.approx(1 / 11, abs=0.02)
    assert result == evaluate_doa(n_directions=20, drr_db=10.0, seconds=2.0, sample_rate=FS, seed=0)


@pytest.mark.parametrize("drr_db", [None, 10.0])
def test_moving_source_is_followed(drr_db: float | None) -> None:
    result = evaluate_moving_source(seconds=8.0, drr_db=drr_db, sample_rate=FS)
    assert len(result["true_azimuth_deg"]) == 8
    assert result["azimuth_max_error_deg"] < 2.0


# ---------------------------------------------------------------- bad input


def test_bad_input_is_rejected() -> None:
    good = _plane_wave(0.0, 0.0, 1.0)
    with pytest.raises(InputError, match=r"shape \(4, n\)"):
        clip_direction(good[:3])
    with pytest.raises(InputError, match=r"shape \(4, n\)"):
        doa_trajectory(good[0], FS)
    bad = good.copy()
    bad[1, 10] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        clip_direction(bad)
    with pytest.raises(InputError, match="STFT frame"):
        doa_trajectory(good[:, :500], FS)
    for rate in (0, -48000, float("nan")):
        with pytest.raises(InputError, match="sample_rate"):
            doa_trajectory(good, rate)
    with pytest.raises(InputError, match="signal is silent; no direction can be estimated"):
        clip_direction(np.zeros((4, FS)))
    with pytest.raises(InputError, match="signal is silent; no direction can be estimated"):
        doa_trajectory(np.zeros((4, FS)), FS)
    with pytest.raises(InputError, match="smooth"):
        doa_trajectory(good, FS, smooth=2)
    with pytest.raises(InputError, match="segment_s"):
        doa_trajectory(good, FS, segment_s=0.01)
    with pytest.raises(InputError, match="band_hz"):
        doa_trajectory(good, 8000, band_hz=(5000, 8000))  # above Nyquist (4 kHz)
    with pytest.raises(InputError, match="n_directions"):
        evaluate_doa(n_directions=0)
    with pytest.raises(InputError, match="drr_db"):
        evaluate_doa(drr_db=float("inf"))
