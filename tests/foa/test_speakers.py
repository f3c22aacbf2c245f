"""Tests for swansphere.foa.speakers: layouts and AllRAD max-rE loudspeaker decoders.

Reference values are derived here independently (Legendre roots, hand-written SN3D
gains, speaker angles from ITU-R BS.2051 in our counter-clockwise convention);
properties are measured on dense grids of source directions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.decoder import Decoder
from swansphere.foa.encode import encode_mono
from swansphere.foa.speakers import (
    LAYOUTS,
    SpeakerLayout,
    decoder_gains,
    design_speaker_decoder,
    energy_vector,
    equalise_energy,
    evaluate_decoder,
    fibonacci_sphere,
    get_layout,
    max_re_weights,
    normalise_diffuse_energy,
)

NAMES = ("stereo", "5.1", "7.1.4")


@pytest.fixture(scope="module")
def decoders() -> dict[str, Decoder]:
    return {name: design_speaker_decoder(name) for name in NAMES}


def sphere_grid(n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    v = fibonacci_sphere(n)
    return np.arctan2(v[:, 1], v[:, 0]), np.arcsin(v[:, 2])


def upper_hemisphere() -> tuple[np.ndarray, np.ndarray]:
    az, el = sphere_grid(4000)
    return az[el >= 0], el[el >= 0]


def horizontal(step_deg: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    az = np.deg2rad(np.arange(-180.0, 180.0, step_deg))
    return az, np.zeros_like(az)


def mirror_pairs(layout: SpeakerLayout) -> list[tuple[int, int]]:
    """(i, j) channel pairs with az_j = -az_i and equal elevation (LFE excluded)."""
    pairs = []
    for i in layout.main_indices:
        for j in layout.main_indices:
            if (
                math.isclose(layout.azimuth_deg[j], -layout.azimuth_deg[i], abs_tol=1e-9)
                and layout.elevation_deg[j] == layout.elevation_deg[i]
            ):
                pairs.append((int(i), int(j)))
    return pairs


# --------------------------------------------------------------------------- layouts


def test_layout_names_and_wav_channel_order() -> None:
    assert set(LAYOUTS) == {"stereo", "5.1", "7.1.4"}
    assert get_layout("stereo").labels == ("L", "R")
    assert get_layout("5.1").labels == ("FL", "FR", "FC", "LFE", "BL", "BR")
    assert get_layout("7.1.4").labels == (
        "FL",
        "FR",
        "FC",
        "LFE",
        "BL",
        "BR",
        "SL",
        "SR",
        "TFL",
        "TFR",
        "TBL",
        "TBR",
    )


@pytest.mark.parametrize(
    ("name", "label", "azimuth", "elevation"),
    [
        ("stereo", "L", 30, 0),
        ("stereo", "R", -30, 0),
        ("5.1", "FC", 0, 0),
        ("5.1", "BL", 110, 0),
        ("5.1", "BR", -110, 0),
        ("7.1.4", "BL", 135, 0),
        ("7.1.4", "SR", -90, 0),
        ("7.1.4", "TFL", 45, 45),
        ("7.1.4", "TBR", -135, 45),
    ],
)
def test_bs2051_angles_counter_clockwise(name: str, label: str, azimuth: float, elevation: float):
    layout = get_layout(name)
    k = layout.labels.index(label)
    assert layout.azimuth_deg[k] == azimuth
    assert layout.elevation_deg[k] == elevation


def test_left_speakers_have_positive_azimuth_and_lfe_flags() -> None:
    for layout in LAYOUTS.values():
        for label, az, lfe in zip(layout.labels, layout.azimuth_deg, layout.lfe, strict=True):
            assert lfe == (label == "LFE")
            if label.endswith("L") and label != "LFE":
                assert az > 0, f"{layout.name} {label} should be on the left (az > 0)"
            if label.endswith("R"):
                assert az < 0


def test_get_layout_unknown_lists_known_names() -> None:
    with pytest.raises(InputError, match=r"7\.1\.4.*stereo|stereo"):
        get_layout("9.1.6")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(labels=("L", "R"), azimuth_deg=(30.0,), elevation_deg=(0.0, 0.0), lfe=(False, False)),
        dict(labels=("L", "L"), azimuth_deg=(30, -30), elevation_deg=(0, 0), lfe=(False, False)),
        dict(labels=("L", "R"), azimuth_deg=(30, -30), elevation_deg=(0, 95), lfe=(False, False)),
        dict(labels=("L", "R"), azimuth_deg=(30, np.nan), elevation_deg=(0, 0), lfe=(False, False)),
        dict(labels=("LFE",), azimuth_deg=(0,), elevation_deg=(0,), lfe=(True,)),
        dict(labels=(), azimuth_deg=(), elevation_deg=(), lfe=()),
    ],
)
def test_bad_layout_raises(kwargs: dict) -> None:
    with pytest.raises(InputError):
        SpeakerLayout(name="bad", **kwargs)


# --------------------------------------------------------------------------- max-rE weights


def test_max_re_weights_are_legendre_root_and_2d_cosine() -> None:
    a0, a1 = max_re_weights(3)
    assert a0 == 1.0
    assert (3 * a1**2 - 1) / 2 == pytest.approx(0.0, abs=1e-15)  # P2(a1) = 0
    assert a1 == pytest.approx(0.57735, abs=1e-5)
    # The empirical formula cos(137.9 deg / (N + 1.51)) is within 0.003 of the exact root.
    assert math.cos(math.radians(137.9 / 2.51)) == pytest.approx(a1, abs=3e-3)
    assert max_re_weights(2)[1] == pytest.approx(math.cos(math.pi / 4), abs=1e-15)
    with pytest.raises(InputError):
        max_re_weights(4)


def test_max_re_weight_maximises_re_of_virtual_pattern() -> None:
    """|rE| of the 3D pattern a0 + 3 a1 cos(g) peaks at a1 = 1/sqrt(3) with value a1."""
    mu = fibonacci_sphere(20000)[:, 2]  # cos(angle to the pattern's axis, +z), equal-area

    def r_e(a1: float) -> float:
        g2 = (1 + 3 * a1 * mu) ** 2
        return float(np.sum(g2 * mu) / np.sum(g2))

    candidates = np.linspace(0.3, 1.0, 141)
    best = candidates[np.argmax([r_e(a) for a in candidates])]
    assert best == pytest.approx(max_re_weights(3)[1], abs=0.01)
    assert r_e(max_re_weights(3)[1]) == pytest.approx(1 / math.sqrt(3), abs=1e-3)
    # 2D: pattern a0 + 2 a1 cos(phi) on a ring peaks at a1 = cos(45 deg), |rE| = a1.
    phi = np.linspace(0, 2 * np.pi, 3600, endpoint=False)

    def r_e_2d(a1: float) -> float:
        g2 = (1 + 2 * a1 * np.cos(phi)) ** 2
        return float(np.sum(g2 * np.cos(phi)) / np.sum(g2))

    best_2d = candidates[np.argmax([r_e_2d(a) for a in candidates])]
    assert best_2d == pytest.approx(max_re_weights(2)[1], abs=0.01)
    assert r_e_2d(max_re_weights(2)[1]) == pytest.approx(1 / math.sqrt(2), abs=1e-6)


# --------------------------------------------------------------------------- decoder structure


@pytest.mark.parametrize("name", NAMES)
def test_decoder_structure_and_lfe_silent(decoders: dict[str, Decoder], name: str) -> None:
    layout, decoder = get_layout(name), decoders[name]
    assert decoder.taps == 1
    assert decoder.labels == layout.labels
    assert decoder.name == f"allrad-{name}"
    assert decoder.filters.shape == (layout.channels, 4, 1)
    for k, lfe in enumerate(layout.lfe):
        if lfe:
            assert np.all(decoder.filters[k] == 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_energy_averaged_over_sphere_is_one(decoders: dict[str, Decoder], name: str) -> None:
    az, el = sphere_grid(6000)
    energy = np.sum(decoder_gains(decoders[name], az, el) ** 2, axis=-1)
    assert energy.mean() == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("name", NAMES)
def test_left_right_mirror_symmetry(decoders: dict[str, Decoder], name: str) -> None:
    layout = get_layout(name)
    az, el = sphere_grid(500)
    gains = decoder_gains(decoders[name], az, el)
    mirrored = decoder_gains(decoders[name], -az, el)
    pairs = mirror_pairs(layout)
    assert len(pairs) == len(layout.main_indices)  # every speaker has a mirror image
    for i, j in pairs:
        np.testing.assert_allclose(gains[:, i], mirrored[:, j], atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_source_at_speaker_is_loudest_there(decoders: dict[str, Decoder], name: str) -> None:
    layout = get_layout(name)
    for k in layout.main_indices:
        gains = decoder_gains(
            decoders[name],
            math.radians(layout.azimuth_deg[k]),
            math.radians(layout.elevation_deg[k]),
        )
        assert int(np.argmax(gains)) == k, f"{name}: source at {layout.labels[k]} -> {gains}"


@pytest.mark.parametrize("name", NAMES)
def test_own_speaker_margin_is_met(decoders: dict[str, Decoder], name: str) -> None:
    layout = get_layout(name)
    main = layout.main_indices
    for k in main:
        gains = decoder_gains(
            decoders[name],
            math.radians(layout.azimuth_deg[k]),
            math.radians(layout.elevation_deg[k]),
        )[main]
        own = gains[list(main).index(k)]
        others = np.delete(gains, list(main).index(k))
        assert 20 * math.log10(own / np.max(others)) >= 1.0 - 1e-4


def test_plain_allrad_misses_own_speaker_priority() -> None:
    """Why the priority step exists: plain AllRAD plays a front source louder in FL/FR."""
    layout = get_layout("5.1")
    plain = design_speaker_decoder(layout, energy_equalisation=0.0, speaker_margin_db=None)
    front = decoder_gains(plain, 0.0, 0.0)
    assert front[layout.labels.index("FL")] > front[layout.labels.index("FC")]


def test_own_speaker_priority_infeasible_for_coincident_speakers() -> None:
    twins = SpeakerLayout(
        name="twins",
        labels=("A", "B", "C", "D"),
        azimuth_deg=(0.0, 0.0, 120.0, -120.0),
        elevation_deg=(0.0, 0.0, 0.0, 0.0),
        lfe=(False,) * 4,
    )
    with pytest.raises(InputError, match="speaker_margin_db"):
        design_speaker_decoder(twins)
    assert design_speaker_decoder(twins, speaker_margin_db=None).outputs == 4


def test_decoder_apply_on_encoded_signal_gives_channel_gains(decoders: dict[str, Decoder]) -> None:
    rng = np.random.default_rng(3)
    signal = rng.standard_normal(256)
    az, el = math.radians(70.0), math.radians(20.0)
    for name in NAMES:
        decoder = decoders[name]
        out = decoder.apply(encode_mono(signal, az, el))
        # Hand-written AmbiX SN3D plane-wave gains (W, Y, Z, X).
        y = np.array([1.0, math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        expected = decoder.filters[:, :, 0] @ y
        np.testing.assert_allclose(out, expected[:, None] * signal[None, :], atol=1e-12)
        np.testing.assert_allclose(decoder_gains(decoder, az, el), expected, atol=1e-12)


# --------------------------------------------------------------------------- reference values


def test_stereo_front_equal_left_clear_and_mid_side_form(decoders: dict[str, Decoder]) -> None:
    decoder = decoders["stereo"]
    front = decoder_gains(decoder, 0.0, 0.0)
    assert front[0] == pytest.approx(front[1], abs=1e-12)
    left = decoder_gains(decoder, math.pi / 2, 0.0)
    assert 20 * math.log10(abs(left[0] / left[1])) > 15.0
    right = decoder_gains(decoder, -math.pi / 2, 0.0)
    assert abs(right[1]) > abs(right[0])
    # Rear-left stays on the left; the back is centred like the front.
    rear_left = decoder_gains(decoder, math.radians(150.0), 0.0)
    assert rear_left[0] > 2 * abs(rear_left[1])
    back = decoder_gains(decoder, math.pi, 0.0)
    assert back[0] == pytest.approx(back[1], abs=1e-12)
    # Mid/side form L, R = a W +- b Y: no X or Z, so E = 2 (a^2 + b^2 sin^2 az).
    m = decoder.filters[:, :, 0]
    np.testing.assert_allclose(m[:, [2, 3]], 0.0, atol=1e-3)
    a, b = m[0, 0], m[0, 1]
    quality = evaluate_decoder(decoder, get_layout("stereo"), *horizontal())
    assert quality.energy_spread_db == pytest.approx(10 * math.log10(1 + (b / a) ** 2), abs=0.05)
    assert quality.energy_spread_db < 3.0


def test_51_left_source_mostly_in_fl_and_bl(decoders: dict[str, Decoder]) -> None:
    layout = get_layout("5.1")
    gains = decoder_gains(decoders["5.1"], math.pi / 2, 0.0)
    energy = gains**2
    idx = {label: layout.labels.index(label) for label in layout.labels}
    left_share = (energy[idx["FL"]] + energy[idx["BL"]]) / energy.sum()
    assert left_share > 0.8
    assert energy[idx["FL"]] > energy[idx["FR"]] and energy[idx["BL"]] > energy[idx["BR"]]
    front = decoder_gains(decoders["5.1"], 0.0, 0.0)
    assert int(np.argmax(front)) == idx["FC"]
    assert front[idx["FL"]] == pytest.approx(front[idx["FR"]], abs=1e-12)


def test_714_height_source_goes_to_height_speakers(decoders: dict[str, Decoder]) -> None:
    layout = get_layout("7.1.4")
    zenith = decoder_gains(decoders["7.1.4"], 0.0, math.pi / 2) ** 2
    height = [layout.labels.index(k) for k in ("TFL", "TFR", "TBL", "TBR")]
    assert zenith[height].sum() / zenith.sum() > 0.8


# --------------------------------------------------------------------------- measured properties


def test_51_horizontal_energy_and_re() -> None:
    layout = get_layout("5.1")
    quality = evaluate_decoder(design_speaker_decoder(layout), layout, *horizontal())
    assert quality.energy_spread_db <= 2.5
    assert quality.re_error_mean_deg <= 12.0
    assert quality.re_error_max_deg <= 30.0
    assert 0.3 <= quality.re_norm_min and quality.re_norm_max <= 1.0
    # At the speaker directions the image is close and compact.
    az = np.deg2rad(np.array(layout.azimuth_deg)[layout.main_indices])
    at_speakers = evaluate_decoder(design_speaker_decoder(layout), layout, az, 0 * az)
    assert at_speakers.re_error_max_deg <= 12.0
    assert at_speakers.re_norm_min >= 0.7


def test_714_upper_hemisphere_energy_and_re() -> None:
    layout = get_layout("7.1.4")
    decoder = design_speaker_decoder(layout)
    quality = evaluate_decoder(decoder, layout, *upper_hemisphere())
    assert quality.energy_spread_db <= 2.0
    assert quality.re_error_mean_deg <= 10.0
    assert quality.re_error_max_deg <= 20.0
    # First-order max-rE cannot exceed the virtual decoder's |rE| by much; 0.577 in theory.
    assert 0.55 <= quality.re_norm_min and quality.re_norm_max <= 0.75
    # Horizontal sources: the azimuth of rE is accurate (the error is an upward tilt).
    az, el = horizontal(5.0)
    r_e = energy_vector(decoder, layout, az, el)
    azimuth_error = np.angle(np.exp(1j * (np.arctan2(r_e[:, 1], r_e[:, 0]) - az)), deg=True)
    assert np.max(np.abs(azimuth_error)) <= 8.0


def test_equalisation_trades_energy_flatness() -> None:
    """Strength 0 is plain AllRAD; 1 makes energy constant; 0.5 lies in between."""
    layout = get_layout("5.1")
    grid = horizontal(2.0)
    spreads = [
        evaluate_decoder(
            design_speaker_decoder(layout, energy_equalisation=s, speaker_margin_db=None),
            layout,
            *grid,
        ).energy_spread_db
        for s in (0.0, 0.5, 1.0)
    ]
    assert spreads[0] > spreads[1] > spreads[2]
    assert spreads[2] < 1e-6
    full = design_speaker_decoder("7.1.4", energy_equalisation=1.0, speaker_margin_db=None)
    energy = np.sum(decoder_gains(full, *sphere_grid(500)) ** 2, axis=-1)
    np.testing.assert_allclose(energy, 1.0, atol=1e-9)


def test_equalise_energy_keeps_zero_columns_and_identity() -> None:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((5, 4))
    m[:, 2] = 0.0
    np.testing.assert_allclose(equalise_energy(m, 0.0), m, atol=1e-12)
    flat = equalise_energy(m, 1.0)
    np.testing.assert_allclose(flat[:, 2], 0.0, atol=1e-12)
    gram = flat.T @ flat
    np.testing.assert_allclose(gram[np.ix_([0, 1, 3], [0, 1, 3])], np.eye(3), atol=1e-12)
    with pytest.raises(InputError):
        equalise_energy(m, 1.5)


def test_imaginary_nadir_downmix_keeps_floor_sources() -> None:
    layout = get_layout("7.1.4")
    nadir = (0.0, -math.pi / 2)
    kept = np.sum(decoder_gains(design_speaker_decoder(layout), *nadir) ** 2)
    dropped = np.sum(
        decoder_gains(design_speaker_decoder(layout, imaginary="discard"), *nadir) ** 2
    )
    assert 10 * math.log10(kept) > -2.0
    assert kept > dropped


def test_virtual_grid_is_dense_enough() -> None:
    for name in NAMES:
        coarse = design_speaker_decoder(name, virtual_points=600).filters
        fine = design_speaker_decoder(name, virtual_points=4000).filters
        np.testing.assert_allclose(coarse, fine, atol=0.02)


def test_regular_octagon_is_uniform() -> None:
    """On a regular ring AllRAD must be direction-invariant: flat energy, exact rE direction."""
    azimuths = tuple(float(a) for a in np.arange(0.0, 360.0, 45.0))
    ring = SpeakerLayout(
        name="octagon",
        labels=tuple(f"S{k}" for k in range(8)),
        azimuth_deg=azimuths,
        elevation_deg=(0.0,) * 8,
        lfe=(False,) * 8,
    )
    quality = evaluate_decoder(
        design_speaker_decoder(ring, energy_equalisation=0.0), ring, *horizontal()
    )
    assert quality.energy_spread_db < 0.2
    assert quality.re_error_max_deg < 1.0
    # Max-rE on a dense enough ring gives |rE| close to the 2D optimum 1/sqrt(2).
    assert quality.re_norm_mean == pytest.approx(1 / math.sqrt(2), abs=0.03)


def test_octahedron_3d_is_nearly_uniform() -> None:
    directions = [(0, 0), (90, 0), (180, 0), (-90, 0), (0, 90), (0, -90)]
    octahedron = SpeakerLayout(
        name="octahedron",
        labels=tuple(f"S{k}" for k in range(6)),
        azimuth_deg=tuple(float(a) for a, _ in directions),
        elevation_deg=tuple(float(e) for _, e in directions),
        lfe=(False,) * 6,
    )
    decoder = design_speaker_decoder(octahedron, energy_equalisation=0.0)
    quality = evaluate_decoder(decoder, octahedron, *sphere_grid(2000))
    assert quality.energy_spread_db < 1.5
    assert quality.re_error_max_deg < 10.0


def test_normalise_diffuse_energy_matches_grid_average() -> None:
    rng = np.random.default_rng(1)
    m = normalise_diffuse_energy(rng.standard_normal((6, 4)))
    az, el = sphere_grid(20000)
    decoder = Decoder(m[:, :, None], 48000, tuple("abcdef"), "random")
    assert np.mean(np.sum(decoder_gains(decoder, az, el) ** 2, axis=-1)) == pytest.approx(
        1.0, abs=2e-3
    )
    with pytest.raises(InputError):
        normalise_diffuse_energy(np.zeros((2, 4)))


# --------------------------------------------------------------------------- bad input


def test_design_rejects_bad_arguments() -> None:
    with pytest.raises(InputError, match="known layouts"):
        design_speaker_decoder("quad")
    with pytest.raises(InputError):
        design_speaker_decoder(42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="virtual_points"):
        design_speaker_decoder("5.1", virtual_points=10)
    with pytest.raises(InputError, match="imaginary"):
        design_speaker_decoder("5.1", imaginary="mute")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="strength"):
        design_speaker_decoder("stereo", energy_equalisation=-0.1)
    with pytest.raises(InputError, match="speaker_margin_db"):
        design_speaker_decoder("5.1", speaker_margin_db=float("nan"))
    with pytest.raises(InputError, match="sample_rate"):
        design_speaker_decoder("5.1", sample_rate=0)


def test_measurement_rejects_mismatch(decoders: dict[str, Decoder]) -> None:
    with pytest.raises(InputError, match="labels"):
        energy_vector(decoders["5.1"], get_layout("7.1.4"), 0.0, 0.0)
    fir = Decoder(np.zeros((2, 4, 8)), 48000, ("L", "R"), "fir")
    with pytest.raises(InputError, match="taps"):
        decoder_gains(fir, 0.0, 0.0)
    with pytest.raises(InputError):
        evaluate_decoder(decoders["stereo"], get_layout("stereo"), np.zeros(3), np.zeros(2))
