"""Tests for swansphere.foa.fields: noise colours, isotropic diffuse fields, DRR mixing."""

from __future__ import annotations

import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.encode import encode_mono, sh_gains
from swansphere.foa.fields import (
    ISOTROPIC_COVARIANCE,
    diffuse_field,
    mix_at_drr,
    spectrally_shaped_noise,
)

FS = 48000


def _covariance(foa: np.ndarray) -> np.ndarray:
    """Channel covariance (4, 4) of a zero-mean (4, n) signal."""
    return foa @ foa.T / foa.shape[1]


def _band_power(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / FS)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


# ---------------------------------------------------------------- reference values


def test_isotropic_covariance_matches_a_literal_sum_of_plane_waves() -> None:
    # Independent of diffuse_field: encode 600 uncorrelated noises from uniform directions
    # one by one and measure the channel covariance. The SN3D theory says diag(1, 1/3, 1/3, 1/3).
    rng = np.random.default_rng(1)
    count, n = 600, 8000
    azimuth = rng.uniform(-np.pi, np.pi, count)
    elevation = np.arcsin(rng.uniform(-1, 1, count))
    field = np.zeros((4, n))
    for az, el in zip(azimuth, elevation, strict=True):
        field += encode_mono(rng.standard_normal(n) / np.sqrt(count), az, el)
    np.testing.assert_allclose(_covariance(field), ISOTROPIC_COVARIANCE, atol=0.05)
    # The ideal covariance is also the exact sphere average of g g^T for the SN3D gains.
    gains = sh_gains(azimuth, elevation)
    np.testing.assert_allclose(gains.T @ gains / count, ISOTROPIC_COVARIANCE, atol=0.05)


def test_diffuse_field_has_isotropic_sn3d_statistics() -> None:
    foa = diffuse_field(200_000, FS, np.random.default_rng(0))
    assert foa.shape == (4, 200_000)
    # Each dipole carries a third of W's power and all channels are uncorrelated.
    np.testing.assert_allclose(_covariance(foa), ISOTROPIC_COVARIANCE, atol=0.01)


def test_finite_plane_wave_count_is_close_to_isotropic() -> None:
    foa = diffuse_field(100_000, FS, np.random.default_rng(2), n_plane_waves=2000)
    np.testing.assert_allclose(_covariance(foa), ISOTROPIC_COVARIANCE, atol=0.03)


def test_one_plane_wave_is_a_plane_wave() -> None:
    # One plane wave: every sample has W^2 == X^2 + Y^2 + Z^2 (SN3D unit direction) and the
    # dipoles are W times a fixed unit vector.
    foa = diffuse_field(5000, FS, np.random.default_rng(3), n_plane_waves=1)
    np.testing.assert_allclose(foa[0] ** 2, np.sum(foa[1:] ** 2, axis=0), rtol=1e-9, atol=1e-12)
    direction = foa[1:, 0] / foa[0, 0]
    np.testing.assert_allclose(foa[1:], np.outer(direction, foa[0]), atol=1e-9)


def test_pink_diffuse_field_keeps_the_statistics_and_the_colour() -> None:
    foa = diffuse_field(200_000, FS, np.random.default_rng(4), colour="pink")
    np.testing.assert_allclose(_covariance(foa), ISOTROPIC_COVARIANCE, atol=0.02)
    # Pink: equal power per octave.
    ratio = _band_power(foa[0], 4000, 8000) / _band_power(foa[0], 500, 1000)
    assert ratio == pytest.approx(1.0, rel=0.15)


def test_noise_colours() -> None:
    rng = np.random.default_rng(5)
    white = spectrally_shaped_noise(FS * 4, FS, rng, "white")
    pink = spectrally_shaped_noise(FS * 4, FS, rng, "pink")
    for x in (white, pink):
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-12)
    # White: power proportional to bandwidth; an octave 8x higher holds 8x the power.
    white_ratio = _band_power(white, 8000, 16000) / _band_power(white, 1000, 2000)
    assert white_ratio == pytest.approx(8.0, rel=0.1)
    pink_ratio = _band_power(pink, 8000, 16000) / _band_power(pink, 1000, 2000)
    assert pink_ratio == pytest.approx(1.0, rel=0.1)


def test_diffuse_field_is_deterministic_by_seed() -> None:
    a = diffuse_field(1000, FS, np.random.default_rng(7), n_plane_waves=50)
    b = diffuse_field(1000, FS, np.random.default_rng(7), n_plane_waves=50)
    c = diffuse_field(1000, FS, np.random.default_rng(8), n_plane_waves=50)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# ---------------------------------------------------------------- DRR mixing


@pytest.mark.parametrize("drr_db", [-10.0, 0.0, 3.0, 10.0, 30.0])
def test_mix_at_drr_is_measured_back(drr_db: float) -> None:
    rng = np.random.default_rng(9)
    direct = encode_mono(rng.standard_normal(20_000) * 0.3, 0.7, -0.2)
    diffuse = diffuse_field(20_000, FS, rng) * 5.0
    mixed = mix_at_drr(direct, diffuse, drr_db)
    residual = mixed - direct
    measured = 10 * np.log10(np.sum(direct[0] ** 2) / np.sum(residual[0] ** 2))
    assert measured == pytest.approx(drr_db, abs=1e-9)
    # The added part is the diffuse field, only scaled.
    scale = residual[0] @ diffuse[0] / (diffuse[0] @ diffuse[0])
    np.testing.assert_allclose(residual, scale * diffuse, atol=1e-12)


def test_mix_at_drr_rejects_bad_input() -> None:
    rng = np.random.default_rng(10)
    direct = encode_mono(rng.standard_normal(100), 0.0, 0.0)
    diffuse = diffuse_field(100, FS, rng)
    with pytest.raises(InputError, match="same shape"):
        mix_at_drr(direct, diffuse[:, :50], 10.0)
    with pytest.raises(InputError, match="silent W"):
        mix_at_drr(direct, np.zeros((4, 100)), 10.0)
    with pytest.raises(InputError, match="drr_db"):
        mix_at_drr(direct, diffuse, float("nan"))
    with pytest.raises(InputError, match=r"shape \(4, n\)"):
        mix_at_drr(direct[:3], diffuse[:3], 10.0)
    bad = diffuse.copy()
    bad[2, 5] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        mix_at_drr(direct, bad, 10.0)


# ---------------------------------------------------------------- bad input


def test_field_generators_reject_bad_input() -> None:
    rng = np.random.default_rng(11)
    with pytest.raises(InputError, match="n_samples"):
        diffuse_field(0, FS, rng)
    with pytest.raises(InputError, match="sample_rate"):
        diffuse_field(100, -1.0, rng)
    with pytest.raises(InputError, match="rng"):
        diffuse_field(100, FS, 42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n_plane_waves"):
        diffuse_field(100, FS, rng, n_plane_waves=0)
    with pytest.raises(InputError, match="colour"):
        spectrally_shaped_noise(100, FS, rng, "brown")
    with pytest.raises(InputError, match="sample_rate"):
        spectrally_shaped_noise(100, float("nan"), rng)
