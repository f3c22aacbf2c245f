"""Tests of the shoebox room renderer: geometry by hand, levels by formula, statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector
from swansphere_training.corpus.room import (
    NEAR_FIELD_M,
    SPEED_OF_SOUND_M_S,
    Room,
    fit_to_room,
    image_sources,
    random_room,
    render_ambience,
    render_source,
)

FS = 44100
OUTDOOR = Room((200.0, 200.0, 60.0), (100.0, 100.0, 1.6), 0.5, outdoor=True)


def _impulse(n: int) -> np.ndarray:
    x = np.zeros(n)
    x[0] = 1.0
    return x


def _intensity_error_deg(foa: np.ndarray, truth: np.ndarray) -> float:
    """Angle between the clip-mean intensity W * (X, Y, Z) and the true direction."""
    foa = foa.astype(np.float64)
    intensity = (foa[0] * foa[[3, 1, 2]]).mean(axis=1)
    cosine = intensity @ truth / (np.linalg.norm(intensity) * np.linalg.norm(truth))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def test_first_order_images_of_listener_centred_room_match_hand_computation() -> None:
    # Listener in the middle of a 4 x 6 x 3 room: the walls are at x = +-2, y = +-3,
    # z = +-1.5 around it, and mirroring p across the plane at a gives 2a - p.
    absorption = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    room = Room((4.0, 6.0, 3.0), (2.0, 3.0, 1.5), absorption)
    p = np.array([1.0, 0.5, -0.2])
    images, gains, orders = image_sources(room, p, max_order=1)
    expected = {
        (-5.0, 0.5, -0.2): np.sqrt(0.9),  # back wall x = -2
        (3.0, 0.5, -0.2): np.sqrt(0.8),  # front wall x = +2
        (1.0, -6.5, -0.2): np.sqrt(0.7),  # right wall y = -3
        (1.0, 5.5, -0.2): np.sqrt(0.6),  # left wall y = +3
        (1.0, 0.5, -2.8): np.sqrt(0.5),  # floor z = -1.5
        (1.0, 0.5, 3.2): np.sqrt(0.4),  # ceiling z = +1.5
    }
    assert orders[0] == 0 and gains[0] == 1.0
    np.testing.assert_allclose(images[0], p)
    assert sorted(orders[1:]) == [1] * 6
    got = {tuple(np.round(img, 9)): g for img, g in zip(images[1:], gains[1:], strict=True)}
    assert set(got) == set(expected)
    for key, gain in expected.items():
        assert got[key] == pytest.approx(gain)


def test_second_order_image_count_and_a_double_reflection() -> None:
    room = Room((4.0, 6.0, 3.0), (2.0, 3.0, 1.5), (0.1, 0.2, 0.3, 0.4, 0.5, 0.6))
    images, gains, orders = image_sources(room, np.array([1.0, 0.5, -0.2]), max_order=2)
    assert np.bincount(orders).tolist() == [1, 6, 18]  # the octahedral numbers 1, 6, 18
    # Back wall then front wall: x = 1 -> -5 -> 2 * 2 - (-5) = 9, gain beta_back * beta_front.
    hit = np.flatnonzero(np.all(np.isclose(images, [9.0, 0.5, -0.2]), axis=1))
    assert hit.size == 1
    assert gains[hit[0]] == pytest.approx(np.sqrt(0.9 * 0.8))


@pytest.mark.parametrize("direction", [(0.0, 1.0, 0.0), (0.6, -0.8, 0.0), (0.48, 0.6, 0.64)])
def test_static_direct_path_has_the_right_delay_gain_and_direction(direction) -> None:
    delay = 300  # samples: r = 300 c / fs = 2.333 m
    r = delay * SPEED_OF_SOUND_M_S / FS
    u = np.array(direction)
    out = render_source(_impulse(1000), FS, u * r, OUTDOOR, max_order=0)
    assert np.argmax(np.abs(out[0])) == delay
    np.testing.assert_allclose(out[:, delay], np.array([1.0, u[1], u[2], u[0]]) / r, rtol=1e-5)
    others = np.delete(out, delay, axis=1)
    assert np.max(np.abs(others)) < 1e-6


def test_fractional_delay_keeps_gain_and_centre_of_arrival() -> None:
    delay = 300.4
    r = delay * SPEED_OF_SOUND_M_S / FS
    out = render_source(_impulse(1000), FS, [r, 0.0, 0.0], OUTDOOR, max_order=0)[0]
    window = np.arange(295, 306)
    assert out[window].sum() == pytest.approx(1.0 / r, rel=1e-5)  # Lagrange taps sum to 1
    centre = np.sum(window * out[window]) / out[window].sum()
    assert centre == pytest.approx(delay, abs=1e-4)  # and are exact for a linear ramp


def test_near_field_gain_is_clamped() -> None:
    out = render_source(_impulse(200), FS, [0.2, 0.0, 0.0], OUTDOOR, max_order=0)
    assert out[0].sum() == pytest.approx(1.0 / NEAR_FIELD_M, rel=1e-5)


def test_moving_direct_path_follows_distance_and_direction() -> None:
    n = FS  # one second, constant source: W(t) must equal 1 / r(t) once sound arrives
    keys = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.5]])
    out = render_source(np.ones(n), FS, keys, OUTDOOR, max_order=0)
    t = np.arange(n)
    pos = keys[0] + (t / n)[:, None] * (keys[1] - keys[0])
    r = np.linalg.norm(pos, axis=1)
    late = t > 2000
    np.testing.assert_allclose(out[0, late], 1.0 / r[late], rtol=2e-4)
    np.testing.assert_allclose(out[3, late] / out[0, late], pos[late, 0] / r[late], atol=1e-3)
    np.testing.assert_allclose(out[1, late] / out[0, late], pos[late, 1] / r[late], atol=1e-3)
    # The source approaches at first (r = 1.97 m after 256 samples): nothing before that.
    assert np.all(out[:, :250] == 0.0) and np.any(out[:, :260] != 0.0)


def test_doubling_the_distance_lowers_the_direct_path_by_6_db() -> None:
    room = Room((8.0, 6.0, 3.0), (4.0, 3.0, 1.5), 0.3)
    peaks = []
    for distance in (1.0, 2.0):
        out = render_source(
            _impulse(4000), FS, [distance, 0.0, 0.0], room, 2, np.random.default_rng(0)
        )
        arrival = int(round(distance / SPEED_OF_SOUND_M_S * FS))
        peaks.append(np.sum(out[0, arrival - 2 : arrival + 3]))  # the taps' DC gain
    assert 20 * np.log10(peaks[1] / peaks[0]) == pytest.approx(-6.02, abs=0.05)


def test_static_source_direction_dominates_in_random_rooms() -> None:
    # White noise 1.5 m away in corpus rooms (small, medium, hall, outdoor).
    errors = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        room = random_room(rng)
        for _ in range(2):
            az = rng.uniform(-np.pi, np.pi)
            el = np.arcsin(rng.uniform(np.sin(np.radians(-40)), np.sin(np.radians(60))))
            truth = direction_to_vector(az, el)
            position = fit_to_room(room, truth * 1.5)
            out = render_source(rng.standard_normal(10 * FS), FS, position, room, 2, rng)
            errors.append(_intensity_error_deg(out, truth))
    assert max(errors) < 3.0, errors


def test_moving_source_intensity_follows_the_trajectory() -> None:
    room = Room(
        (9.0, 7.0, 3.5),
        (4.5, 3.5, 1.6),
        (0.2, 0.2, 0.2, 0.2, 0.5, 0.6),
        scattering=0.5,
        reflection_cutoff_hz=4000.0,
    )
    rng = np.random.default_rng(3)
    az = np.linspace(np.radians(-60), np.radians(60), 11)
    keys = direction_to_vector(az, np.zeros_like(az)) * 1.5
    out = render_source(rng.standard_normal(10 * FS), FS, keys, room, 2, rng)
    for second in (1, 5, 8):  # keyframes every second: second s sweeps az[s] -> az[s + 1]
        chunk = out[:, second * FS : (second + 1) * FS]
        middle = direction_to_vector((az[second] + az[second + 1]) / 2, 0.0)
        assert _intensity_error_deg(chunk, middle) < 4.0


def test_moving_render_equals_static_render_for_a_still_source() -> None:
    # A "moving" source whose keyframes differ by a nanometre goes through the per-sample
    # direct path and the segment convolution of images; it must match the static path.
    room = Room((6.0, 5.0, 3.0), (2.5, 2.0, 1.6), 0.3, reflection_cutoff_hz=5000.0)
    signal = np.random.default_rng(1).standard_normal(FS // 2)
    p = np.array([1.5, 0.7, 0.3])
    static = render_source(signal, FS, p, room, 2, np.random.default_rng(5))
    moving = render_source(signal, FS, np.stack([p, p + 1e-9]), room, 2, np.random.default_rng(5))
    np.testing.assert_allclose(moving, static, atol=2e-5 * np.abs(static).max())


def test_tail_is_isotropic_decorrelated_and_at_the_diffuse_field_level() -> None:
    room = Room((10.0, 8.0, 4.0), (4.0, 3.0, 1.6), 0.15, rt60_hf_ratio=1.0)
    out = render_source(_impulse(FS), FS, [2.0, 0.0, 0.0], room, 0, np.random.default_rng(2))
    direct = int(round(2.0 / SPEED_OF_SOUND_M_S * FS))
    tail = out[:, direct + 3 :].astype(np.float64)
    power = np.sum(tail**2, axis=1)
    np.testing.assert_allclose(power[1:] / power[0], 1.0 / 3.0, rtol=0.1)
    correlation = np.corrcoef(tail)
    assert np.max(np.abs(correlation - np.eye(4))) < 0.05
    # Expected W energy: E(t) = (4 pi c / V) exp(-t / tau) under the raised-cosine fade-in,
    # which (without image sources) runs over one mean free path 4V/S.
    t = np.arange(FS) / FS
    tau = room.rt60_s / (6 * np.log(10))
    full = 4 * room.volume_m3 / room.surface_m2 / SPEED_OF_SOUND_M_S
    fade = np.sin(0.5 * np.pi * np.clip(t / full, 0, 1)) ** 2
    density = 4 * np.pi * SPEED_OF_SOUND_M_S / room.volume_m3
    expected = np.sum(density * np.exp(-t / tau) * fade**2) / FS
    assert power[0] == pytest.approx(expected, rel=0.1)


def test_room_acoustics_formulas() -> None:
    room = Room((5.0, 4.0, 3.0), (2.0, 2.0, 1.5), 0.2)
    # Eyring by hand: V = 60, S = 94, RT60 = 0.1611 V / (-S ln 0.8).
    assert room.rt60_s == pytest.approx(0.16111 * 60 / (94 * -np.log(0.8)), rel=1e-3)
    # Textbook critical distance 0.057 sqrt(V / RT60).
    assert room.critical_distance_m == pytest.approx(0.0566 * np.sqrt(60 / room.rt60_s), rel=2e-3)
    assert room.drr_db(room.critical_distance_m) == pytest.approx(0.0)
    given = Room((5.0, 4.0, 3.0), (2.0, 2.0, 1.5), 0.2, rt60_s=1.2)
    assert given.rt60_s == 1.2


def test_outdoor_rooms_have_ground_reflection_only_and_no_tail() -> None:
    rng = np.random.default_rng(0)
    room = next(r for r in (random_room(rng) for _ in range(100)) if r.outdoor)
    assert room.rt60_s == 0.0 and not room.has_tail and room.critical_distance_m == np.inf
    images, _, orders = image_sources(room, np.array([2.0, 0.0, 0.0]), max_order=3)
    assert orders.tolist() == [0, 1]  # the direct path and the ground
    out = render_source(_impulse(FS // 2), FS, [2.0, 0.0, 0.0], room, 3, rng)
    ground = int(np.linalg.norm(images[1]) / SPEED_OF_SOUND_M_S * FS)
    peak = np.abs(out).max()
    # After the (low-passed) ground reflection has rung down: FFT round-off only.
    assert np.abs(out[:, ground + 100 :]).max() < 1e-6 * peak
    assert np.abs(out[:, ground - 2 : ground + 100]).max() > 0.05 * peak


def test_random_rooms_place_the_listener_at_least_a_metre_from_walls() -> None:
    rng = np.random.default_rng(7)
    kinds = set()
    for _ in range(200):
        room = random_room(rng)
        kinds.add(room.kind)
        listener, size = np.array(room.listener), np.array(room.size)
        assert np.all(listener >= 1.0) and np.all(size - listener >= 1.0)
        assert 0.0 <= room.rt60_s < 4.0
    assert kinds == {"small", "medium", "hall", "outdoor"}


def test_render_is_deterministic_by_seed() -> None:
    room = random_room(np.random.default_rng(11))
    signal = np.random.default_rng(0).standard_normal(FS)
    keys = np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.2]])
    a = render_source(signal, FS, keys, room, 2, np.random.default_rng(9))
    b = render_source(signal, FS, keys, room, 2, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
    if room.has_tail:
        c = render_source(signal, FS, keys, room, 2, np.random.default_rng(10))
        assert not np.array_equal(a, c)
    assert random_room(np.random.default_rng(4)) == random_room(np.random.default_rng(4))


def test_fit_to_room_keeps_direction_and_stays_inside() -> None:
    room = Room((4.0, 3.0, 2.5), (1.5, 1.5, 1.2), 0.3)
    rng = np.random.default_rng(0)
    p = rng.normal(size=(50, 3)) * 5
    fitted = fit_to_room(room, p, margin_m=0.25)
    norms = np.linalg.norm(fitted, axis=1) * np.linalg.norm(p, axis=1)
    cosines = np.sum(fitted * p, axis=1) / norms
    np.testing.assert_allclose(cosines, 1.0)
    absolute = fitted + np.array(room.listener)
    assert np.all(absolute >= 0.25 - 1e-9) and np.all(absolute <= np.array(room.size) - 0.25 + 1e-9)
    inside = np.array([[0.5, 0.2, 0.1]])
    np.testing.assert_allclose(fit_to_room(room, inside), inside)


def test_room_json_round_trip() -> None:
    room = random_room(np.random.default_rng(3))
    data = json.loads(json.dumps(room.to_json()))
    assert Room.from_json(data) == room


@pytest.mark.parametrize(
    "call",
    [
        lambda: render_source(np.ones(100), FS, [np.nan, 0.0, 0.0], OUTDOOR),
        lambda: render_source(np.ones(100), FS, np.ones((101, 3)), OUTDOOR),
        lambda: render_source(np.ones(100), FS, np.ones((5, 2)), OUTDOOR),
        lambda: render_source(np.ones((2, 100)), FS, [1.0, 0.0, 0.0], OUTDOOR),
        lambda: render_source(np.ones(100), FS, np.ones((3, 3)), OUTDOOR, times_s=[0.0, 1.0]),
        lambda: render_source(np.ones(100), FS, [1.0, 0.0, 0.0], OUTDOOR, max_order=9),
        lambda: render_source(np.ones(100), FS, [1.0, 0.0, 0.0], Room((4, 4, 3), (2, 2, 1.5))),
        lambda: render_source(
            np.ones(100),
            FS,
            [5.0, 0.0, 0.0],
            Room((4, 4, 3), (2, 2, 1.5)),
            rng=np.random.default_rng(0),
        ),
        lambda: Room((4.0, 4.0, 3.0), (5.0, 2.0, 1.5)),
        lambda: Room((4.0, 4.0, 3.0), (2.0, 2.0, 1.5), absorption=1.5),
        lambda: Room((4.0, 4.0, 3.0), (2.0, 2.0, 1.5), absorption=0.0),
        lambda: Room((4.0, 4.0, np.nan), (2.0, 2.0, 1.5)),
        lambda: render_ambience(0, FS, np.random.default_rng(0), -30.0),
    ],
)
def test_bad_input_raises_input_error(call) -> None:
    with pytest.raises(InputError):
        call()


def test_ambience_is_diffuse_at_the_requested_level() -> None:
    raw = render_ambience(5 * FS, FS, np.random.default_rng(0), -30.0)
    assert raw.shape == (4, 5 * FS) and raw.dtype == np.float32
    bed = raw.astype(np.float64)
    assert 20 * np.log10(np.sqrt(np.mean(bed[0] ** 2))) == pytest.approx(-30.0, abs=1e-6)
    power = np.mean(bed**2, axis=1)
    np.testing.assert_allclose(power[1:] / power[0], 1.0 / 3.0, rtol=0.05)
    assert np.max(np.abs(np.corrcoef(bed) - np.eye(4))) < 0.05
    spectrum = np.abs(np.fft.rfft(bed[0])) ** 2
    freqs = np.fft.rfftfreq(bed.shape[1], 1.0 / FS)
    low = spectrum[(freqs > 100) & (freqs < 200)].mean()
    high = spectrum[(freqs > 1600) & (freqs < 3200)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(12.0, abs=2.0)  # pink: -3 dB/octave
    again = render_ambience(5 * FS, FS, np.random.default_rng(0), -30.0)
    np.testing.assert_array_equal(again, raw)


def test_keyframe_times_default_to_an_even_spread_over_the_clip() -> None:
    room = Room((6.0, 5.0, 3.0), (2.5, 2.0, 1.6), 0.3)
    signal = np.random.default_rng(0).standard_normal(FS)
    keys = np.array([[1.0, 1.0, 0.0], [1.5, -1.0, 0.2], [-1.0, -1.0, 0.5]])
    default = render_source(signal, FS, keys, room, 2, np.random.default_rng(1))
    timed = render_source(
        signal, FS, keys, room, 2, np.random.default_rng(1), times_s=np.array([0.0, 0.5, 1.0])
    )
    np.testing.assert_array_equal(default, timed)
    shifted = render_source(
        signal, FS, keys, room, 2, np.random.default_rng(1), times_s=np.array([0.0, 0.2, 1.0])
    )
    assert not np.allclose(default, shifted)
