"""Tests for swansphere.foa.doa: estimators, diffuseness, distance, error metrics, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal

import swansphere.foa.doa as doa
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
    segment_intensity,
)
from swansphere.foa.encode import direction_to_vector, encode_mono, vector_to_direction
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


# ---------------------------------------------------------------- methods: paper and direct


def _errors_deg(trajectory: Trajectory, az_deg: float, el_deg: float) -> np.ndarray:
    return angular_error_deg(
        np.rad2deg(trajectory.azimuth), np.rad2deg(trajectory.elevation), az_deg, el_deg
    )


@pytest.mark.parametrize(("az_deg", "el_deg"), DIRECTIONS_DEG)
@pytest.mark.parametrize("method", ["paper", "direct"])
def test_each_method_gives_a_plane_wave_its_own_direction(
    method: str, az_deg: float, el_deg: float
) -> None:
    trajectory = doa_trajectory(_plane_wave(az_deg, el_deg), FS, method=method)
    assert np.max(_errors_deg(trajectory, az_deg, el_deg)) < 1e-9
    np.testing.assert_allclose(trajectory.diffuseness, 0.0, atol=1e-9)


def test_direct_method_without_any_onset_falls_back_to_the_steady_intensity() -> None:
    # A steady two-partial tone present from the first sample has no onset anywhere; the
    # direct method then uses the plane-wave-weighted intensity, exact for one plane wave.
    t = np.arange(3 * FS) / FS
    tone = np.sin(2 * np.pi * 700 * t) + 0.5 * np.sin(2 * np.pi * 1900 * t + 1.0)
    trajectory = doa_trajectory(encode_mono(tone, np.deg2rad(-40.0), np.deg2rad(25.0)), FS)
    assert np.max(_errors_deg(trajectory, -40.0, 25.0)) < 1e-6


def _reference_paper_trajectory(
    foa: np.ndarray, rate: int, segment_s: float = 1.0, smooth: int = 3, n_fft: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The paper's estimator written out frame by frame: (azimuth, elevation, psi, distance)."""
    hop, n = n_fft // 2, foa.shape[1]
    padded = np.pad(foa, ((0, 0), (hop, hop)))
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    band = (freqs >= 500) & (freqs <= min(8000, rate / 2))
    seg = round(segment_s * rate)
    bounds = list(range(0, (n // seg) * seg + 1, seg))
    if n - bounds[-1] >= seg / 2:
        bounds.append(n)
    else:
        bounds[-1] = n
    k_count = len(bounds) - 1
    sums_i, sums_e, counts = np.zeros((k_count, 3)), np.zeros(k_count), np.zeros(k_count)
    for frame in range(n // hop + 1):
        spec = np.fft.rfft(padded[:, frame * hop : frame * hop + n_fft] * window)[:, band]
        w, x, y, z = spec[0], spec[3], spec[1], spec[2]
        k = min(np.searchsorted(bounds, frame * hop, side="right") - 1, k_count - 1)
        sums_i[k] += [np.sum(np.real(np.conj(w) * d)) for d in (x, y, z)]
        sums_e[k] += 0.5 * np.sum(np.abs(w) ** 2 + np.abs(x) ** 2 + np.abs(y) ** 2 + np.abs(z) ** 2)
        counts[k] += 1
    v = sums_i / sums_e[:, None]
    psi = 1 - np.linalg.norm(v, axis=1)
    units = v / np.linalg.norm(v, axis=1, keepdims=True)
    smoothed = np.array(
        [
            units[k - h : k + h + 1].sum(axis=0)
            for k in range(k_count)
            for h in [min(smooth // 2, k, k_count - 1 - k)]
        ]
    )
    direct = (1 - psi) * sums_e / counts
    azimuth = np.arctan2(smoothed[:, 1], smoothed[:, 0])
    elevation = np.arctan2(smoothed[:, 2], np.hypot(smoothed[:, 0], smoothed[:, 1]))
    return azimuth, elevation, psi, np.sqrt(direct.max() / direct)


def _moving_noise_scene(seconds: float = 3.6, seed: int = 21) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = round(seconds * FS)
    source = encode_mono(rng.standard_normal(n), np.linspace(-1.0, 2.0, n), 0.3)
    return mix_at_drr(source, diffuse_field(n, FS, rng), 3.0)


def test_paper_method_matches_a_frame_by_frame_reference() -> None:
    foa = _moving_noise_scene()
    for kwargs in ({}, {"smooth": 1, "n_fft": 512, "segment_s": 0.5}):
        trajectory = doa_trajectory(foa, FS, method="paper", **kwargs)
        azimuth, elevation, psi, distance = _reference_paper_trajectory(foa, FS, **kwargs)
        np.testing.assert_allclose(trajectory.azimuth, azimuth, atol=1e-9)
        np.testing.assert_allclose(trajectory.elevation, elevation, atol=1e-9)
        np.testing.assert_allclose(trajectory.diffuseness, psi, atol=1e-9)
        np.testing.assert_allclose(trajectory.distance, distance, rtol=1e-9)


def test_paper_method_reproduces_the_previous_default_numbers() -> None:
    # Values of doa_trajectory(foa, FS) before the direct method became the default.
    foa = _moving_noise_scene()
    trajectory = doa_trajectory(foa, FS, method="paper")
    np.testing.assert_allclose(
        trajectory.azimuth,
        [-0.5769623613087, 0.2540202551589, 1.030589979052, 1.745720046269],
        atol=1e-9,
    )
    np.testing.assert_allclose(
        trajectory.elevation,
        [0.3037388599893, 0.3791248702527, 0.3656665316253, 0.310675888496],
        atol=1e-9,
    )
    np.testing.assert_allclose(
        trajectory.diffuseness,
        [0.3549604775994, 0.3554750142216, 0.3475139297495, 0.3434404821029],
        atol=1e-9,
    )
    np.testing.assert_allclose(
        trajectory.distance, [1.026553101697, 1.015035028594, 1.0, 1.004547663946], rtol=1e-9
    )
    half_seconds = doa_trajectory(foa, FS, smooth=1, n_fft=512, segment_s=0.5, method="paper")
    np.testing.assert_allclose(
        half_seconds.azimuth,
        [
            -0.7849372520207,
            -0.3760156794962,
            0.04668124782092,
            0.4564838754831,
            0.870127350368,
            1.285019893082,
            1.751760902025,
        ],
        atol=1e-9,
    )


# A tonal source in a room: struck partials (a bell-like tone, 620 Hz and overtones) from
# az 30, el 10, one coherent reflection 3 dB down from az -100, el -20 arriving `delay_ms`
# later (8 ms: 2.7 m of extra path), and an exponentially decaying diffuse tail
# (independent per channel, isotropic SN3D) carrying half the direct energy. At 16 kHz the
# direct method's windows are 8 ms long (512 / 4 samples); a reflection that arrives well
# within one window is only partly told apart from the direct sound.
SOURCE_AZ_DEG, SOURCE_EL_DEG = 30.0, 10.0


def _struck_partials(
    seconds: float, strikes_s: list[float], rng: np.random.Generator
) -> np.ndarray:
    """Four partials struck at ``strikes_s`` (2 ms attack, 0.25 s decay), random phases."""
    t = np.arange(round(seconds * FS)) / FS
    out = np.zeros_like(t)
    partials = zip([1.0, 0.6, 0.4, 0.25], 620.0 * np.array([1.0, 2.0, 3.0, 4.1]), strict=True)
    for amp, freq in partials:
        for strike in strikes_s:
            after = t >= strike
            tt = t[after] - strike
            envelope = np.minimum(tt / 0.002, 1.0) * np.exp(-tt / 0.25)
            phase = rng.uniform(0, 2 * np.pi)
            out[after] += amp * envelope * np.sin(2 * np.pi * freq * tt + phase)
    return out


def _tonal_room_scene(
    seed: int = 0,
    seconds: float = 4.0,
    strikes_s: list[float] | None = None,
    delay_ms: float = 8.0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    strikes = list(np.arange(0.05, seconds, 0.5)) if strikes_s is None else strikes_s
    source = _struck_partials(seconds, strikes, rng)
    direct = encode_mono(source, np.deg2rad(SOURCE_AZ_DEG), np.deg2rad(SOURCE_EL_DEG))
    delay = round(delay_ms * 1e-3 * FS)
    delayed = np.concatenate([np.zeros(delay), source[:-delay]]) * 10 ** (-3 / 20)
    reflection = encode_mono(delayed, np.deg2rad(-100.0), np.deg2rad(-20.0))
    rt60 = 0.6
    t = np.arange(round(rt60 * FS)) / FS
    envelope = np.exp(-6.91 * t / rt60) * (t > 0.01)
    gains = np.array([1.0, *[3**-0.5] * 3])[:, None]
    responses = rng.standard_normal((4, t.size)) * envelope * gains
    tail = scipy.signal.fftconvolve(responses, source[None], axes=1)[:, : source.size]
    tail *= np.sqrt(0.5 * np.sum(source**2) / np.sum(tail[0] ** 2))
    return direct + reflection + tail


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_direct_method_resists_a_coherent_reflection_of_a_tonal_source(seed: int) -> None:
    foa = _tonal_room_scene(seed)
    paper = _errors_deg(doa_trajectory(foa, FS, method="paper"), SOURCE_AZ_DEG, SOURCE_EL_DEG)
    direct = _errors_deg(doa_trajectory(foa, FS), SOURCE_AZ_DEG, SOURCE_EL_DEG)
    assert np.mean(paper) > 20.0  # the cross terms of the partials bias it by tens of degrees
    # What is left is mostly the diffuse tail in the few onset frames (2 strikes a segment).
    assert np.mean(direct) < 4.0
    assert np.max(direct) < 7.0
    assert np.mean(direct) < 0.15 * np.mean(paper)


def test_segments_without_onsets_take_the_direction_of_their_neighbours() -> None:
    # Strikes only in the first and last of 5 segments; the ringing in between, biased by
    # the reflection, holds no onset, so those segments borrow from the struck ones.
    foa = _tonal_room_scene(seed=3, seconds=5.0, strikes_s=[0.05, 4.05])
    paper = _errors_deg(doa_trajectory(foa, FS, method="paper"), SOURCE_AZ_DEG, SOURCE_EL_DEG)
    direct = _errors_deg(doa_trajectory(foa, FS), SOURCE_AZ_DEG, SOURCE_EL_DEG)
    assert np.min(paper[1:4]) > 10.0
    assert np.max(direct) < 5.0


@pytest.mark.parametrize("method", ["paper", "direct"])
def test_rotating_a_reverberant_scene_rotates_the_estimates(method: str) -> None:
    foa = _tonal_room_scene(seed=4, seconds=3.0)
    before = doa_trajectory(foa, FS, method=method)
    for rotation in (_random_rotation(np.random.default_rng(s)) for s in (8, 9)):
        after = doa_trajectory(rotate_foa(foa, rotation), FS, method=method)
        expected = direction_to_vector(before.azimuth, before.elevation) @ rotation.T
        np.testing.assert_allclose(
            direction_to_vector(after.azimuth, after.elevation), expected, atol=1e-9
        )
        np.testing.assert_allclose(after.diffuseness, before.diffuseness, atol=1e-9)
        np.testing.assert_allclose(after.distance, before.distance, rtol=1e-9)


def test_direct_method_keeps_diffuseness_and_distance_of_all_energy() -> None:
    # Computed from every bin (unweighted), they agree with the paper method's.
    rng = np.random.default_rng(10)
    gain = np.repeat([1.0, 0.5, 0.25], FS)
    source = encode_mono(_noise(3.0, seed=11), 0.5, -0.2, gain)
    foa = mix_at_drr(source, diffuse_field(3 * FS, FS, rng), 6.0)
    paper, direct = doa_trajectory(foa, FS, method="paper"), doa_trajectory(foa, FS)
    np.testing.assert_allclose(direct.diffuseness, paper.diffuseness, atol=0.02)
    np.testing.assert_allclose(direct.distance, paper.distance, rtol=0.05)
    np.testing.assert_allclose(direct.distance, [1, 2, 4], rtol=0.1)


def test_direct_method_does_not_depend_on_its_chunking(monkeypatch) -> None:
    foa = _tonal_room_scene(seed=5, seconds=2.5)
    whole = doa_trajectory(foa, FS)
    monkeypatch.setattr(doa, "_FRAMES_PER_CHUNK", 5)  # chunks of 20 frames, shorter than a strike
    chunked = doa_trajectory(foa, FS)
    for name in ("azimuth", "elevation", "diffuseness", "distance"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), atol=1e-12)


def test_default_frame_follows_the_sample_rate() -> None:
    # direct: the power of two nearest to 23 ms (512 samples at 16 kHz, 1024 at 44.1 kHz);
    # paper: 1024 samples at any rate. A clip must hold one frame.
    short = _plane_wave(10.0, 0.0, seconds=600 / FS)
    assert _errors_deg(doa_trajectory(short, FS), 10.0, 0.0)[0] < 1e-9
    with pytest.raises(InputError, match="STFT frame"):
        doa_trajectory(short, FS, method="paper")
    with pytest.raises(InputError, match="STFT frame"):
        doa_trajectory(short[:, :1000], 44100)
    assert doa_trajectory(short, FS, method="paper", n_fft=512).azimuth.shape == (1,)


@pytest.mark.parametrize("method", ["paper", "direct"])
def test_acceptance_both_methods_on_noise(method: str) -> None:
    clean = evaluate_doa(n_directions=10, seconds=2.0, sample_rate=FS, method=method)
    assert clean["trajectory_mean_deg"] <= 0.5
    assert clean["method"] == method
    diffuse = evaluate_doa(n_directions=10, drr_db=10.0, seconds=2.0, sample_rate=FS, method=method)
    assert diffuse["trajectory_mean_deg"] <= 2.0
    moving = evaluate_moving_source(seconds=8.0, drr_db=10.0, sample_rate=FS, method=method)
    assert moving["azimuth_max_error_deg"] < 2.0


def test_bad_method_and_frame_are_rejected() -> None:
    good = _plane_wave(0.0, 0.0, 1.0)
    for method in ("robust", "", None, 3):
        with pytest.raises(InputError, match="method must be one of"):
            doa_trajectory(good, FS, method=method)
    with pytest.raises(InputError, match="method must be one of"):
        evaluate_doa(n_directions=1, method="onset")
    with pytest.raises(InputError, match="method must be one of"):
        evaluate_moving_source(method="onset")
    with pytest.raises(InputError, match="multiple of 16"):
        doa_trajectory(good, FS, n_fft=1000)
    with pytest.raises(InputError, match="at least 64"):
        doa_trajectory(good, FS, n_fft=32)
    assert len(doa_trajectory(good, FS, n_fft=1000, method="paper")) == 1  # even is enough
    with pytest.raises(InputError, match="n_fft must be even"):
        doa_trajectory(good, FS, n_fft=1001, method="paper")


def test_segment_intensity_sums_to_the_clip_direction() -> None:
    rng = np.random.default_rng(3)
    mono = rng.standard_normal(4000)
    foa = encode_mono(mono, np.deg2rad(60.0), np.deg2rad(-20.0))
    foa = foa + 0.01 * rng.standard_normal(foa.shape)
    seg = segment_intensity(foa, 1000)
    assert seg.shape == (4, 3)
    az, el = vector_to_direction(seg.sum(axis=0))
    assert (float(az), float(el)) == pytest.approx(clip_direction(foa), abs=1e-9)
    assert np.rad2deg(float(az)) == pytest.approx(60.0, abs=1.0)
    assert segment_intensity(foa, 3000).shape == (1, 3)  # the partial segment is dropped
    np.testing.assert_array_equal(segment_intensity(np.zeros((4, 100)), 50), np.zeros((2, 3)))
    with pytest.raises(InputError, match="segment_samples"):
        segment_intensity(foa, 0)
    with pytest.raises(InputError, match="shape"):
        segment_intensity(foa[:3], 10)
