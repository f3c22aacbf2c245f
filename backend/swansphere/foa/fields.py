"""Test sound fields: spectrally shaped noise, isotropic diffuse FOA, and mixing at a given DRR.

Convention: AmbiX, i.e. ACN channel order (W, Y, Z, X) with SN3D normalisation; axes x front,
y left, z up; signals are float64 arrays shaped (4, n).

An isotropic diffuse field is the sum of many mutually uncorrelated plane waves arriving
uniformly from all directions. With SN3D gains W = 1 and (X, Y, Z) = u (a unit vector), the
channel covariance of such a field is E[g g^T] over the sphere:

    E[W^2] = 1,   E[X^2] = E[Y^2] = E[Z^2] = E[u_i^2] = 1/3,   all cross terms 0,

because the three squared components of a uniform unit vector sum to 1 and are equal by
symmetry, and odd moments vanish. Each dipole therefore carries one third of W's power and
all four channels are uncorrelated. (In N3D the dipoles would carry W's full power.)
"""

from __future__ import annotations

import numpy as np

from swansphere.errors import InputError, require_finite
from swansphere.foa.encode import sh_gains

NOISE_COLOURS = ("white", "pink")

# Pink noise is shaped as 1/f in power above this frequency and flat below it, so the
# lowest bins (and DC) do not dominate the signal's power.
PINK_CORNER_HZ = 20.0

# Channel covariance of an ideal isotropic diffuse field in AmbiX/SN3D (see module docstring).
ISOTROPIC_COVARIANCE = np.diag([1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0])


def _check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_sample_rate(sample_rate: float) -> float:
    rate = float(sample_rate)
    if not np.isfinite(rate) or rate <= 0:
        raise InputError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    return rate


def _check_rng(rng: np.random.Generator) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def spectrally_shaped_noise(
    n_samples: int,
    sample_rate: float,
    rng: np.random.Generator,
    colour: str = "white",
) -> np.ndarray:
    """Gaussian noise (n_samples,) with unit RMS, either white or pink.

    Pink noise has power falling as 1/f (-3 dB per octave) above ``PINK_CORNER_HZ`` and is flat
    below it; it is made by shaping the spectrum of white noise. ``sample_rate`` in Hz places
    that corner frequency.
    """
    n = _check_count("n_samples", n_samples)
    rate = _check_sample_rate(sample_rate)
    _check_rng(rng)
    if colour not in NOISE_COLOURS:
        raise InputError(f"colour must be one of {NOISE_COLOURS}, got {colour!r}")
    noise = rng.standard_normal(n)
    if colour == "pink":
        freqs = np.fft.rfftfreq(n, d=1.0 / rate)
        # Amplitude 1/sqrt(f) gives power 1/f; the corner keeps the gain finite at DC.
        gain = np.sqrt(PINK_CORNER_HZ / np.maximum(freqs, PINK_CORNER_HZ))
        noise = np.fft.irfft(np.fft.rfft(noise) * gain, n)
    rms = float(np.sqrt(np.mean(noise**2)))
    return noise / rms if rms > 0 else noise


def _mixing_matrix(gains: np.ndarray) -> np.ndarray:
    """A (4, m), m = min(N, 4), with A @ A.T == gains @ gains.T / N for SN3D gains (4, N).

    From the QR factorisation gains.T = Q R: gains @ gains.T = R.T @ R, so A = R.T / sqrt(N).
    Exact also for N < 4 (a rank-deficient covariance), where an eigen square root would
    leave sqrt(rounding error) in the null space.
    """
    r = np.linalg.qr(gains.T, mode="r")  # (min(N, 4), 4)
    return r.T / np.sqrt(gains.shape[1])


def _uniform_directions(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Azimuths and elevations (radians) of ``count`` directions uniform on the sphere."""
    azimuth = rng.uniform(-np.pi, np.pi, count)
    elevation = np.arcsin(rng.uniform(-1.0, 1.0, count))  # uniform in sin(el) = uniform in area
    return azimuth, elevation


def diffuse_field(
    n_samples: int,
    sample_rate: float,
    rng: np.random.Generator,
    n_plane_waves: int | None = None,
    colour: str = "white",
) -> np.ndarray:
    """Isotropic diffuse AmbiX FOA noise field (4, n_samples); W has unit expected power.

    The field is the sum of ``n_plane_waves`` mutually uncorrelated Gaussian noise plane waves,
    each with power 1 / n_plane_waves, from directions drawn uniformly on the sphere. Because
    the plane-wave signals are independent Gaussian with a common spectrum, their sum is a
    Gaussian process whose only structure is the 4x4 channel covariance C = G G^T / N (G the
    (4, N) SN3D gains). It is therefore drawn exactly in distribution, at O(4 n) cost instead
    of O(N n), as A @ z with A A^T = C and z min(N, 4) independent noise channels of
    ``colour`` (each normalised to unit RMS).

    ``n_plane_waves=None`` is the limit of infinitely many plane waves: C is exactly
    diag(1, 1/3, 1/3, 1/3) (each dipole a third of W's power, all channels uncorrelated).
    A finite count gives a realisation whose covariance deviates from that by O(1/sqrt(N)).
    """
    n = _check_count("n_samples", n_samples)
    _check_rng(rng)
    if n_plane_waves is None:
        mixing = np.sqrt(ISOTROPIC_COVARIANCE)  # diagonal, so the element-wise root is exact
    else:
        count = _check_count("n_plane_waves", n_plane_waves)
        mixing = _mixing_matrix(sh_gains(*_uniform_directions(count, rng)).T)  # gains (4, N)
    n_sources = mixing.shape[1]
    sources = np.stack(
        [spectrally_shaped_noise(n, sample_rate, rng, colour) for _ in range(n_sources)]
    )
    return mixing @ sources


def _check_foa(name: str, foa: np.ndarray) -> np.ndarray:
    a = np.asarray(foa, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != 4:
        raise InputError(f"{name} must be an FOA signal of shape (4, n), got shape {a.shape}")
    require_finite(name, a)
    return a


def mix_at_drr(direct_foa: np.ndarray, diffuse_foa: np.ndarray, drr_db: float) -> np.ndarray:
    """direct_foa + g * diffuse_foa (4, n), with g chosen so the direct-to-diffuse ratio is drr_db.

    The ratio is an energy ratio in dB measured on W (the omnidirectional channel):
    10 log10(sum(direct_W^2) / sum((g diffuse_W)^2)) == drr_db. Both inputs are AmbiX (4, n) of
    equal length; neither may have a silent W channel.
    """
    direct = _check_foa("direct_foa", direct_foa)
    diffuse = _check_foa("diffuse_foa", diffuse_foa)
    if direct.shape != diffuse.shape:
        raise InputError(
            f"direct_foa and diffuse_foa must have the same shape, got {direct.shape} "
            f"and {diffuse.shape}"
        )
    drr = float(drr_db)
    if not np.isfinite(drr):
        raise InputError(f"drr_db must be a finite number of dB, got {drr_db!r}")
    direct_energy = float(np.sum(direct[0] ** 2))
    diffuse_energy = float(np.sum(diffuse[0] ** 2))
    for name, energy in (("direct_foa", direct_energy), ("diffuse_foa", diffuse_energy)):
        if energy <= 0:
            raise InputError(f"{name} has a silent W channel; the DRR is undefined")
    gain = np.sqrt(direct_energy / (diffuse_energy * 10.0 ** (drr / 10.0)))
    return direct + gain * diffuse
