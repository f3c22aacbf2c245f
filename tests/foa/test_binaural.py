"""Tests for swansphere.foa.binaural: decoder designs and their measured accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.binaural import (
    METHODS,
    design_binaural_decoder,
    dodecahedron,
    evaluate_binaural,
    evaluation_directions,
    interaural_level_difference,
    interaural_time_difference,
    quadrature_weights,
)
from swansphere.foa.decoder import Decoder
from swansphere.foa.encode import encode_mono
from swansphere.foa.hrtf import DEFAULT_SOFA, HrirSet, load_default_hrirs

pytestmark = pytest.mark.skipif(not DEFAULT_SOFA.is_file(), reason="libmysofa1 not installed")

RATE = 48000
# Issue acceptance targets for the default decoder on MIT KEMAR.
MAX_ILD_ERROR_DB = 1.5
MAX_ITD_ERROR_US = 200.0
MAX_LSD_DB = 4.0


@pytest.fixture(scope="module")
def hrirs() -> HrirSet:
    return load_default_hrirs(RATE)


@pytest.fixture(scope="module")
def default_decoder(hrirs: HrirSet) -> Decoder:
    return design_binaural_decoder(hrirs, RATE)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(7).standard_normal(RATE // 2)


# --- the design -----------------------------------------------------------------------------


def test_default_decoder_is_a_short_causal_fir_matrix(default_decoder):
    d = default_decoder
    assert d.name == "binaural-hybrid"
    assert d.labels == ("L", "R")
    assert d.sample_rate == RATE
    assert d.filters.shape[:2] == (2, 4)
    assert d.taps <= 512
    energy = np.sum(d.filters**2, axis=(0, 1))
    # Bulk delay: nothing of note before the first ~0.5 ms (0.33 ms look-ahead + HRIR onset).
    assert np.sum(energy[:16]) / np.sum(energy) < 0.01
    assert np.argmax(energy) < RATE * 3e-3


@pytest.mark.parametrize("rate", [48000, 44100])
def test_default_decoder_meets_accuracy_targets(rate):
    hrirs = load_default_hrirs(rate)
    decoder = design_binaural_decoder(hrirs, rate)
    result = evaluate_binaural(decoder, hrirs, evaluation_directions(hrirs, 16), seconds=1.0)
    assert result["ild_error_db"] <= MAX_ILD_ERROR_DB
    assert result["itd_error_us"] <= MAX_ITD_ERROR_US
    assert result["lsd_db"] <= MAX_LSD_DB


def test_hybrid_beats_magls_on_itd_and_keeps_ild(hrirs, default_decoder):
    directions = evaluation_directions(hrirs, 16)
    magls = design_binaural_decoder(hrirs, RATE, "magls")
    ours = evaluate_binaural(default_decoder, hrirs, directions, seconds=1.0)
    theirs = evaluate_binaural(magls, hrirs, directions, seconds=1.0)
    # Measured: MagLS about 290 us, the hybrid about 135 us.
    assert ours["itd_error_us"] < 0.7 * theirs["itd_error_us"]
    assert ours["ild_error_db"] <= theirs["ild_error_db"] + 0.1
    assert theirs["lsd_db"] <= MAX_LSD_DB


@pytest.mark.parametrize("method", METHODS)
def test_source_on_the_left_is_louder_and_earlier_on_the_left(hrirs, noise, method):
    decoder = design_binaural_decoder(hrirs, RATE, method)
    for azimuth, sign in ((np.pi / 2, 1.0), (-np.pi / 2, -1.0)):
        out = decoder.apply(encode_mono(noise, azimuth, 0.0))
        assert sign * interaural_level_difference(out) > 6.0
        assert sign * interaural_time_difference(out, RATE) > 100e-6


def test_left_right_mirror_symmetry(hrirs, default_decoder, noise):
    """MIT KEMAR is left/right symmetric, so the right ear is the left with Y negated."""
    f = default_decoder.filters
    mirrored = f[0] * np.array([1.0, -1.0, 1.0, 1.0])[:, None]
    np.testing.assert_allclose(f[1], mirrored, atol=1e-6 * np.abs(f).max())
    for azimuth, elevation in ((0.6, 0.2), (2.2, -0.3)):
        a = default_decoder.apply(encode_mono(noise, azimuth, elevation))
        b = default_decoder.apply(encode_mono(noise, -azimuth, elevation))
        np.testing.assert_allclose(a, b[::-1], atol=1e-6 * np.abs(a).max())


def test_design_resamples_and_scales_taps(hrirs):
    decoder = design_binaural_decoder(load_default_hrirs(44100), 96000, "virtual")
    assert decoder.sample_rate == 96000 and decoder.taps == 512
    assert design_binaural_decoder(hrirs, RATE, "magls", taps=128).taps == 128
    low = design_binaural_decoder(load_default_hrirs(44100), 16000)
    assert low.sample_rate == 16000 and low.taps == 86  # 5.33 ms at every rate


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"method": "ambisonic-magic"}, "unknown binaural design"),
        ({"taps": 16}, "taps must be an integer in 32..512"),
        ({"taps": 513}, "taps must be an integer in 32..512"),
        ({"taps": 100.5}, "taps must be"),
        ({"taps": "long"}, "taps must be"),
        ({"sample_rate": 12345}, "unsupported sample rate"),
    ],
)
def test_bad_design_arguments_raise_input_error(hrirs, kwargs, problem):
    arguments = {"sample_rate": RATE, **kwargs}
    with pytest.raises(InputError, match=problem):
        design_binaural_decoder(hrirs, **arguments)


# --- geometry helpers -----------------------------------------------------------------------


def test_quadrature_weights_cover_the_sphere_and_clip_the_hole(hrirs):
    weights = quadrature_weights(hrirs.azimuth, hrirs.elevation)
    assert weights.shape == (710,) and np.all(weights > 0)
    assert weights.sum() == pytest.approx(1.0)
    # The -40 deg ring borders the unmeasured cap; its cells are clipped to 1.5x the median.
    lowest = np.isclose(np.degrees(hrirs.elevation), -40.0)
    assert weights[lowest].max() <= 1.5 * np.median(weights) + 1e-12
    # A regular octahedron gets equal weights; a coplanar set falls back to equal weights.
    az = np.array([0, np.pi / 2, np.pi, -np.pi / 2, 0, 0])
    el = np.array([0, 0, 0, 0, np.pi / 2, -np.pi / 2])
    np.testing.assert_allclose(quadrature_weights(az, el), 1 / 6)
    np.testing.assert_allclose(quadrature_weights(az[:4], el[:4]), 1 / 4)


def test_dodecahedron_is_regular_and_mirror_symmetric():
    v = dodecahedron()
    assert v.shape == (20, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    nearest = np.sort(v @ v.T, axis=1)[:, -2]  # cosine to the nearest other vertex
    np.testing.assert_allclose(nearest, np.sqrt(5) / 3)  # edge angle 41.8 deg
    mirrored = v * np.array([1.0, -1.0, 1.0])
    assert np.all(np.max(mirrored @ v.T, axis=1) > 1 - 1e-12)


# --- the evaluation -------------------------------------------------------------------------


def test_itd_and_ild_estimators_on_known_signals():
    x = np.random.default_rng(1).standard_normal(RATE)
    delayed = np.concatenate([np.zeros(12), x[:-12]])  # right ear 12 samples = 250 us late
    assert interaural_time_difference(np.stack([x, delayed]), RATE) == pytest.approx(
        250e-6, abs=2e-6
    )
    assert interaural_time_difference(np.stack([delayed, x]), RATE) == pytest.approx(
        -250e-6, abs=2e-6
    )
    # A fractional delay (12.5 samples, by FFT phase shift) is resolved by interpolation.
    spectrum = np.fft.rfft(x) * np.exp(-2j * np.pi * np.fft.rfftfreq(x.size) * 12.5)
    half = np.fft.irfft(spectrum, x.size)
    assert interaural_time_difference(np.stack([x, half]), RATE) == pytest.approx(
        12.5 / RATE, abs=10e-6
    )
    assert interaural_level_difference(np.stack([x, 0.5 * x])) == pytest.approx(6.0206, abs=1e-3)


def test_evaluation_directions_are_distinct_spread_and_deterministic(hrirs):
    chosen = evaluation_directions(hrirs, 24)
    assert len(set(chosen.tolist())) == 24
    np.testing.assert_array_equal(chosen, evaluation_directions(hrirs, 24))
    elevation = np.degrees(hrirs.elevation[chosen])
    assert elevation.min() == pytest.approx(-40) and elevation.max() == pytest.approx(60)
    quadrants = np.floor(np.mod(hrirs.azimuth[chosen], 2 * np.pi) / (np.pi / 2))
    assert set(quadrants.tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_evaluation_of_an_exact_decoder_reports_no_error(hrirs):
    """A decoder that plays one measured HRIR through W is exact for that direction."""
    m = hrirs.nearest(np.radians(60), np.radians(20))
    filters = np.zeros((2, 4, hrirs.irs.shape[2]))
    filters[:, 0, :] = hrirs.irs[m]
    exact = Decoder(filters, RATE, ("L", "R"), "exact")
    result = evaluate_binaural(exact, hrirs, np.array([m]), seconds=0.5)
    assert result["ild_error_db"] < 1e-9
    assert result["itd_error_us"] < 1e-3
    assert result["lsd_db"] < 1e-9
    assert result["itd_reference_us"][0] > 300  # a source at the left: left ear leads
    np.testing.assert_allclose(result["directions"][0], [hrirs.azimuth[m], hrirs.elevation[m]])


def test_evaluation_result_layout_and_direction_pairs(hrirs, default_decoder):
    pairs = np.radians([[90.0, 0.0], [-30.0, 20.0]])
    result = evaluate_binaural(default_decoder, hrirs, pairs, seconds=0.5)
    for key in ("ild_error_db", "itd_error_us", "lsd_db"):
        assert isinstance(result[key], float)
    for key in ("ild_error_db_per_direction", "itd_error_us_per_direction", "lsd_db_per_direction"):
        assert result[key].shape == (2,)
    assert result["directions"].shape == (2, 2)
    assert result["ild_decoded_db"][0] > 6.0 and result["ild_decoded_db"][1] < 0.0


def test_bad_evaluation_arguments_raise_input_error(hrirs, default_decoder):
    with pytest.raises(InputError, match="seconds"):
        evaluate_binaural(default_decoder, hrirs, seconds=0.1)
    with pytest.raises(InputError, match="directions must be"):
        evaluate_binaural(default_decoder, hrirs, np.zeros((3, 3)))
    with pytest.raises(InputError, match="indices must lie"):
        evaluate_binaural(default_decoder, hrirs, np.array([0, 9999]))
    stereo = Decoder(np.zeros((3, 4, 1)), RATE, ("L", "C", "R"), "three")
    with pytest.raises(InputError, match="2 outputs"):
        evaluate_binaural(stereo, hrirs)
    with pytest.raises(InputError, match="count must be"):
        evaluation_directions(hrirs, 1)
