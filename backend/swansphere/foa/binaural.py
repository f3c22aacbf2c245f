"""FOA-to-binaural decoders designed from measured HRIRs, and their measured accuracy.

Every design returns a :class:`~swansphere.foa.decoder.Decoder`: a linear, time-invariant
FIR matrix (2, 4, taps) from AmbiX input (ACN W, Y, Z, X; SN3D) to the ears (L, R). The
streaming renderer relies on that to apply listener rotations in the FOA domain.

A first-order decoder's output for a plane wave from direction d is, per ear and frequency,
y(d, f) = Y(d) . b(f), a first-order spherical function of d; it cannot follow the HRTF's
fine directional detail above about kr = 1 (624 Hz for an 8.75 cm head). The designs:

``"magls"``
    Magnitude least squares (Schörkhuber, Zaunschirm & Höldrich, DAGA 2018; Zotter & Frank,
    *Ambisonics*, Springer 2019, ch. 4). Below f_c = c / (2 pi r) = 624 Hz a
    quadrature-weighted, Tikhonov-regularised least-squares fit of the HRTFs; above, a fit
    of their magnitudes only, each bin's phase continued from the previous bin's solution
    and advanced by each ear's arrival time (so the filters stay compact; compare
    spaudiopy's ``hf_cont``). The magnitude fit weights squared errors by 1 / |HRTF| (floored
    at -40 dB re the bin's RMS), between a linear and a relative fit, so quiet contralateral
    directions are not ignored (better ILDs), and alternates phase and fit 10 times per bin.
``"virtual"``
    Mode-matching decoding to 20 virtual loudspeakers at the measured directions nearest
    the vertices of a regular dodecahedron, each convolved with its measured HRIR.
``"hybrid"`` (default)
    The virtual-loudspeaker decoder below 1.5 kHz: the output for a source is dominated by
    a few measured HRIRs whose interaural delays agree, so the interaural time difference
    survives first order far better than with a least-squares fit (whose interaural phase
    collapses above ~600 Hz); its diffuse-field response is matched to the HRTFs' below
    2 kHz. A raised-cosine crossover (log frequency) hands over to MagLS by 3 kHz; MagLS's
    phase continues from the *blended* previous bin, so the two halves add coherently.
    Above 3 kHz an ILD constraint: one real 4x4 matrix per ear, fitted so the broadband energy
    at each ear and the broadband interaural level difference match the measured ones over all
    measured directions (a first-order decoder's broadband ear energy is a quadratic form in
    Y(d), so this is the part of the HRTF a linear FOA decoder can still control).

Measured with :func:`evaluate_binaural` on MIT KEMAR at 48 kHz (24 directions, 2 s of noise;
errors ILD / ITD / log-spectral): hybrid 1.01 dB / 133 us / 3.07 dB, MagLS 1.48 dB / 282 us /
2.19 dB, virtual 2.67 dB / 126 us / 5.28 dB. The hybrid halves MagLS's ITD error and lowers
its ILD error; its spectral error is higher (comb filtering of the virtual loudspeakers
below 3 kHz) but within the 4 dB target.

The MIT KEMAR set has no directions below -40 deg elevation; quadrature weights come from
spherical Voronoi cells clipped at 1.5x the median cell, so the cells bordering the hole do
not claim it, and Tikhonov regularisation keeps the fit bounded there. Virtual loudspeakers
that fall in the hole use the nearest measured HRIR (their gains are computed for the
directions actually used, so the virtual decoder still re-encodes first order exactly).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import butter, oaconvolve, resample_poly, sosfilt, welch
from scipy.spatial import SphericalVoronoi

from swansphere.errors import InputError
from swansphere.foa.decoder import Decoder
from swansphere.foa.encode import direction_to_vector, encode_mono, sh_gains
from swansphere.foa.hrtf import HrirSet

SPEED_OF_SOUND = 343.0  # m/s
HEAD_RADIUS = 0.0875  # m; the spherical head behind the kr = N rule for the MagLS cutoff
METHODS = ("hybrid", "magls", "virtual")
DEFAULT_METHOD = "hybrid"

_TIKHONOV = 1e-3  # relative to the mean eigenvalue of the weighted Gram matrix
_CELL_CLIP = 1.5  # Voronoi cells are clipped at this multiple of the median cell area
_MAGLS_ITERATIONS = 10  # phase/magnitude alternations per frequency bin
_RELATIVE_FLOOR = 1e-2  # relative weighting saturates below -40 dB re the bin's RMS magnitude
_CROSSOVER_HZ = (1500.0, 3000.0)  # hybrid: virtual loudspeakers below, MagLS above
_DIFFUSE_EQ_TOP_HZ = 2000.0  # hybrid: the virtual decoder is diffuse-field matched below this
_ILD_CONSTRAINT_HZ = 3000.0  # hybrid: ILD constraint in full above this (half-octave fade-in)
_ILD_LEVEL_WEIGHT = 0.1  # weight of per-ear level errors beside ILD errors (both in dB)
_ILD_MATRIX_PRIOR = 1.0  # dB^2 per unit squared deviation of the 4x4 matrices from identity
_BULK_DELAY_S = 1.0 / 3000.0  # 0.33 ms of look-ahead for the design's slightly non-causal part
_ONSET_THRESHOLD = 0.2  # arrival time = first crossing of 20 % of the peak |HRIR|


# --- geometry -------------------------------------------------------------------------------


def quadrature_weights(azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Solid-angle weights (M,) summing to 1 for directions given in radians.

    Spherical Voronoi cell areas, each clipped at 1.5x the median area so that a cell next to
    an unmeasured region (MIT KEMAR has nothing below -40 deg) does not claim the whole
    region. Repeated directions share their cell. Falls back to equal weights when fewer
    than 4 distinct directions exist or they do not span 3-D (e.g. a horizontal-only set).
    """
    vectors = direction_to_vector(azimuth, elevation).reshape(-1, 3)
    unique, inverse, counts = np.unique(
        np.round(vectors, 9), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    try:
        unique = unique / np.linalg.norm(unique, axis=1, keepdims=True)
        areas = SphericalVoronoi(unique).calculate_areas()
    except (ValueError, RuntimeError, IndexError):  # too few or coplanar points (Qhull)
        return np.full(len(vectors), 1.0 / len(vectors))
    areas = np.minimum(areas, _CELL_CLIP * np.median(areas))
    weights = areas[inverse] / counts[inverse]
    return weights / weights.sum()


def dodecahedron() -> np.ndarray:
    """The 20 vertices (20, 3) of a regular dodecahedron as unit (x, y, z) vectors.

    Orientation: symmetric under y -> -y (left/right mirror), with vertices on the horizontal
    plane at azimuth +-69.1 and +-110.9 deg and at the front and back at elevation +-20.9 deg.
    """
    phi = (1.0 + np.sqrt(5.0)) / 2.0
    cube = [[x, y, z] for x in (1, -1) for y in (1, -1) for z in (1, -1)]
    rest = []
    for s1 in (1, -1):
        for s2 in (1, -1):
            rest += [[0, s1 / phi, s2 * phi], [s1 / phi, s2 * phi, 0], [s2 * phi, 0, s1 / phi]]
    vertices = np.array(cube + rest, dtype=np.float64)
    return vertices / np.linalg.norm(vertices, axis=1, keepdims=True)


def arrival_times(hrirs: HrirSet) -> np.ndarray:
    """Arrival time (M, 2) in seconds at each ear: first crossing of 20 % of the peak |HRIR|.

    Measured on an 8x oversampled copy, so the resolution is 1/(8 fs).
    """
    oversampled = np.abs(resample_poly(hrirs.irs, 8, 1, axis=2))
    peak = oversampled.max(axis=2, keepdims=True)
    onset = np.argmax(oversampled >= _ONSET_THRESHOLD * peak, axis=2)
    return onset / (8.0 * hrirs.sample_rate)


# --- frequency-domain building blocks -------------------------------------------------------


def _gram(sh: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Gram matrix (4, 4) of the SH matrix (M, 4), Tikhonov-regularised."""
    gram = sh.T @ (weights[:, None] * sh)
    return gram + _TIKHONOV * np.trace(gram) / 4.0 * np.eye(4)


def _least_squares(sh: np.ndarray, weights: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """LS decoder spectra (2, 4, K) fitting HRTF spectra (M, 2, K) at every bin."""
    rhs = np.einsum("mc,m,mek->eck", sh, weights, spectra)
    return np.einsum("cd,edk->eck", np.linalg.inv(_gram(sh, weights)), rhs)


def _magls_bin(
    sh: np.ndarray, weights: np.ndarray, magnitude: np.ndarray, phase: np.ndarray
) -> np.ndarray:
    """One ear, one bin of MagLS: coefficients (4,) whose |Y b| fits ``magnitude`` (M,).

    Alternates an LS fit to magnitude * exp(i phase) with taking the phase of the fit.
    Squared errors are weighted by 1 / magnitude (floored at -40 dB re the RMS magnitude).
    """
    rms = np.sqrt(np.sum(weights * magnitude**2))
    if rms == 0.0:
        return np.zeros(4, dtype=complex)
    relative = weights / np.maximum(magnitude / rms, _RELATIVE_FLOOR)
    inverse = np.linalg.inv(_gram(sh, relative))
    weighted = sh.T * relative
    coefficients = np.zeros(4, dtype=complex)
    for _ in range(_MAGLS_ITERATIONS):
        coefficients = inverse @ (weighted @ (magnitude * np.exp(1j * phase)))
        phase = np.angle(sh @ coefficients)
    return coefficients


def _magls_with_handover(
    sh: np.ndarray,
    weights: np.ndarray,
    spectra: np.ndarray,
    freqs: np.ndarray,
    low: np.ndarray,
    blend: np.ndarray,
    delays: np.ndarray,
) -> np.ndarray:
    """Decoder spectra (2, 4, K): ``low`` where blend == 0, MagLS mixed in by ``blend`` (K,).

    spectra: HRTFs (M, 2, K); low: (2, 4, K); delays: arrival times (M, 2) in s. The MagLS
    phase at each bin is the phase of the previous (blended) bin's output plus each ear's
    arrival-time advance, so the handover is phase-coherent and the filters stay compact.
    """
    out = np.zeros_like(low)
    advance = -2.0 * np.pi * (freqs[1] - freqs[0]) * delays  # (M, 2) rad per bin
    for k in range(len(freqs)):
        if blend[k] == 0.0:
            out[:, :, k] = low[:, :, k]
            continue
        previous = sh @ out[:, :, k - 1].T if k else spectra[:, :, 0]
        phase = np.angle(previous) + advance
        for ear in range(2):
            fitted = _magls_bin(sh, weights, np.abs(spectra[:, ear, k]), phase[:, ear])
            out[ear, :, k] = blend[k] * fitted + (1.0 - blend[k]) * low[ear, :, k]
    return out


def _virtual_speakers(hrirs: HrirSet, spectra: np.ndarray) -> np.ndarray:
    """Decoder spectra (2, 4, K) of the dodecahedral virtual-loudspeaker decoder.

    Each vertex snaps to the nearest measured direction; the gains are the mode-matching
    decoder (pseudo-inverse of the SN3D re-encoding matrix) of the directions actually used.
    """
    used = [int(np.argmax(hrirs.directions @ vertex)) for vertex in dodecahedron()]
    reencode = sh_gains(hrirs.azimuth[used], hrirs.elevation[used])  # (S, 4)
    gains = np.linalg.pinv(reencode.T)  # (S, 4): reencode.T @ gains = I
    return np.einsum("sc,sek->eck", gains, spectra[used])


def _smooth_third_octave(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Mean of ``power`` (..., K) over a third-octave window around each bin (0 Hz kept)."""
    cumulative = np.concatenate([np.zeros((*power.shape[:-1], 1)), np.cumsum(power, -1)], -1)
    lo = np.searchsorted(freqs, freqs * 2 ** (-1 / 6), side="left")
    hi = np.searchsorted(freqs, freqs * 2 ** (1 / 6), side="right")
    hi = np.maximum(hi, lo + 1)
    return (cumulative[..., hi] - cumulative[..., lo]) / (hi - lo)


def _diffuse_field_match(
    decoder: np.ndarray,
    sh: np.ndarray,
    weights: np.ndarray,
    spectra: np.ndarray,
    freqs: np.ndarray,
    top: float,
) -> np.ndarray:
    """Equalise each ear's diffuse-field response to the HRTFs' below ``top`` Hz.

    Gain per ear and bin: sqrt of the quadrature-weighted mean power of the HRTFs over that
    of the decoder, both third-octave smoothed; applied in full up to top / sqrt(2) and
    faded out (log-frequency raised cosine) by ``top``. The virtual-loudspeaker decoder
    loses 1 dB at 1 kHz and 7 dB at 2 kHz on MIT KEMAR as its HRIRs stop adding coherently.
    """
    decoded = np.einsum("mc,eck->mek", sh, decoder)
    target = _smooth_third_octave(np.einsum("m,mek->ek", weights, np.abs(spectra) ** 2), freqs)
    actual = _smooth_third_octave(np.einsum("m,mek->ek", weights, np.abs(decoded) ** 2), freqs)
    gain = np.sqrt(target / np.maximum(actual, 1e-30 * target.max()))
    strength = 1.0 - _log_blend(freqs, top / np.sqrt(2.0), top)
    return decoder * (gain**strength)[:, None, :]


def _log_blend(freqs: np.ndarray, start: float, stop: float) -> np.ndarray:
    """Raised cosine (K,) over log frequency: 0 at or below ``start``, 1 at or above ``stop``."""
    position = (np.log2(np.maximum(freqs, 1e-9)) - np.log2(start)) / np.log2(stop / start)
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(position, 0.0, 1.0))


def _ild_constraint(
    decoder: np.ndarray,
    sh: np.ndarray,
    weights: np.ndarray,
    spectra: np.ndarray,
    freqs: np.ndarray,
) -> np.ndarray:
    """Apply per-ear real 4x4 matrices above ~3 kHz that fit broadband ILDs and ear levels.

    With b'(f) = ((1 - g) I + g A_e) b(f) (g: half-octave fade-in up to 3 kHz), the broadband
    energy at ear e for direction d is Y(d)^T R_e(A_e) Y(d) with R_e quadratic in A_e. The
    matrices minimise sum_d w_d [dILD_d^2 + 0.1 (dL_d^2 + dR_d^2)] + |A - I|^2 (errors in dB,
    w the quadrature weights) over all measured directions.
    """
    fade = _log_blend(freqs, _ILD_CONSTRAINT_HZ / np.sqrt(2.0), _ILD_CONSTRAINT_HZ)
    parts = []
    for ear in range(2):
        bin_cov = np.real(np.einsum("ik,jk->kij", decoder[ear], decoder[ear].conj()))
        parts.append(
            [
                np.einsum("k,kij->ij", g, bin_cov)
                for g in ((1 - fade) ** 2, (1 - fade) * fade, fade**2)
            ]
        )
    reference = np.sum(np.abs(spectra) ** 2, axis=2)  # (M, 2) broadband energy
    root_w = np.sqrt(weights)

    def matrices(x: np.ndarray) -> list[np.ndarray]:
        return [np.eye(4) + x[:16].reshape(4, 4), np.eye(4) + x[16:].reshape(4, 4)]

    def residuals(x: np.ndarray) -> np.ndarray:
        levels = []
        for ear, a in enumerate(matrices(x)):
            p0, p1, p2 = parts[ear]
            cov = p0 + p1 @ a.T + a @ p1 + a @ p2 @ a.T
            energy = np.maximum(np.einsum("mi,ij,mj->m", sh, cov, sh), 1e-30)
            levels.append(10.0 * np.log10(energy / reference[:, ear]))
        level_weight = np.sqrt(_ILD_LEVEL_WEIGHT)
        return np.concatenate(
            [
                root_w * (levels[0] - levels[1]),
                level_weight * root_w * levels[0],
                level_weight * root_w * levels[1],
                np.sqrt(_ILD_MATRIX_PRIOR) * x,
            ]
        )

    solution = least_squares(residuals, np.zeros(32))
    out = np.empty_like(decoder)
    for ear, a in enumerate(matrices(solution.x)):
        out[ear] = (1.0 - fade) * decoder[ear] + fade * (a @ decoder[ear])
    return out


def _to_filters(spectra: np.ndarray, nfft: int, taps: int, delay: int) -> np.ndarray:
    """Causal FIRs (2, 4, taps): inverse FFT, ``delay`` samples of bulk delay, faded tail."""
    irs = np.roll(np.fft.irfft(spectra, nfft, axis=-1), delay, axis=-1)[..., :taps].copy()
    fade = max(taps // 8, 1)
    irs[..., -fade:] *= np.hanning(2 * fade)[fade:]
    return irs


def _is_int_in(value: object, lowest: int, highest: int) -> bool:
    """Whether ``value`` is an integer (not a bool) in lowest..highest."""
    try:
        return not isinstance(value, bool) and int(value) == value and lowest <= value <= highest
    except (TypeError, ValueError):
        return False


# --- public design API ----------------------------------------------------------------------


def default_taps(sample_rate: int) -> int:
    """Default FIR length: 5.33 ms, i.e. 256 taps at 48 kHz (236 at 44.1 kHz, 512 at 96 kHz).

    The designed responses hold 99.5 % of their energy in the first 2.5 ms on MIT KEMAR;
    doubling the length changes the measured errors by less than 0.1 dB and 1 us.
    """
    return max(32, int(np.ceil(256 * sample_rate / 48000)))


def max_taps(sample_rate: int) -> int:
    """Longest FIR allowed: 512 taps at 48 kHz, i.e. 10.7 ms, scaled with the rate."""
    return int(np.ceil(512 * sample_rate / 48000))


def design_binaural_decoder(
    hrirs: HrirSet,
    sample_rate: int,
    method: str = DEFAULT_METHOD,
    taps: int | None = None,
) -> Decoder:
    """Design an AmbiX (ACN/SN3D) first-order to binaural decoder from measured HRIRs.

    hrirs:       the measured set; resampled to ``sample_rate`` when it differs.
    sample_rate: Hz; one of :data:`swansphere.foa.hrtf.SUPPORTED_RATES`.
    method:      "hybrid" (default), "magls" or "virtual" (see the module docstring).
    taps:        FIR length, 32 .. 512 at 48 kHz (scaled with the rate); default
                 :func:`default_taps`.
    Returns a Decoder with filters (2, 4, taps), labels ("L", "R"), a bulk delay of 0.33 ms
    on top of the HRIRs' own propagation delay (about 0.6 ms for MIT KEMAR).
    """
    if method not in METHODS:
        raise InputError(f"unknown binaural design {method!r}; choose one of {', '.join(METHODS)}")
    hrirs = hrirs.resampled(sample_rate)
    rate = hrirs.sample_rate
    taps = default_taps(rate) if taps is None else taps
    if not _is_int_in(taps, 32, max_taps(rate)):
        raise InputError(
            f"taps must be an integer in 32..{max_taps(rate)} at {rate} Hz, got {taps!r}"
        )
    taps = int(taps)
    nfft = 1 << int(np.ceil(np.log2(max(4 * taps, hrirs.irs.shape[2] + taps))))
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    spectra = np.fft.rfft(hrirs.irs, nfft, axis=2)  # (M, 2, K)
    sh = sh_gains(hrirs.azimuth, hrirs.elevation)  # (M, 4)
    weights = quadrature_weights(hrirs.azimuth, hrirs.elevation)
    delays = arrival_times(hrirs)

    if method == "virtual":
        design = _virtual_speakers(hrirs, spectra)
    elif method == "magls":
        cutoff = SPEED_OF_SOUND / (2.0 * np.pi * HEAD_RADIUS)  # kr = 1 for first order
        blend = (freqs >= cutoff).astype(np.float64)
        low = _least_squares(sh, weights, spectra)
        design = _magls_with_handover(sh, weights, spectra, freqs, low, blend, delays)
    else:
        blend = _log_blend(freqs, *_CROSSOVER_HZ)
        low = _virtual_speakers(hrirs, spectra)
        low = _diffuse_field_match(low, sh, weights, spectra, freqs, _DIFFUSE_EQ_TOP_HZ)
        design = _magls_with_handover(sh, weights, spectra, freqs, low, blend, delays)
        design = _ild_constraint(design, sh, weights, spectra, freqs)
    filters = _to_filters(design, nfft, taps, int(round(_BULK_DELAY_S * rate)))
    return Decoder(filters, rate, ("L", "R"), f"binaural-{method}")


# --- evaluation -----------------------------------------------------------------------------


def evaluation_directions(hrirs: HrirSet, count: int = 24) -> np.ndarray:
    """Indices (count,) of distinct measured directions spread over the sphere, deterministic.

    Target i has elevation -40 + 100 i / (count - 1) deg (so -40..60 deg) and azimuth
    i x 137.5 deg (the golden angle); each snaps to the nearest unused measured direction.
    """
    if not _is_int_in(count, 2, len(hrirs.azimuth)):
        raise InputError(f"count must be an integer in 2..{len(hrirs.azimuth)}, got {count!r}")
    golden = np.pi * (3.0 - np.sqrt(5.0))
    chosen: list[int] = []
    for i in range(int(count)):
        target = direction_to_vector(i * golden, np.radians(-40.0 + 100.0 * i / (count - 1)))
        order = np.argsort(-(hrirs.directions @ target), kind="stable")
        chosen.append(int(next(m for m in order if m not in chosen)))
    return np.array(chosen)


def interaural_level_difference(binaural: np.ndarray) -> float:
    """Broadband ILD in dB of a signal (2, n): 10 log10(E_L / E_R); positive = left louder."""
    energy = np.sum(np.asarray(binaural, dtype=np.float64) ** 2, axis=1)
    if np.any(energy <= 0.0):
        raise InputError("ILD needs signal energy at both ears")
    return float(10.0 * np.log10(energy[0] / energy[1]))


def interaural_time_difference(binaural: np.ndarray, sample_rate: int) -> float:
    """ITD in seconds of a signal (2, n); positive when the left ear leads (source on the left).

    Both ears are low-passed at 1.5 kHz (4th-order Butterworth); the ITD is the lag of the
    maximum of their cross-correlation within +-1 ms, refined by parabolic interpolation.
    """
    sos = butter(4, 1500.0, fs=sample_rate, output="sos")
    left, right = sosfilt(sos, np.asarray(binaural, dtype=np.float64), axis=1)
    nfft = 1 << int(np.ceil(np.log2(2 * left.size)))
    # correlation[k] = sum_t L[t] R[t + k]: a peak at k > 0 means the right ear lags.
    correlation = np.fft.irfft(np.conj(np.fft.rfft(left, nfft)) * np.fft.rfft(right, nfft), nfft)
    max_lag = int(np.ceil(1e-3 * sample_rate))
    lags = np.arange(-max_lag, max_lag + 1)
    values = correlation[lags % nfft]
    i = int(np.argmax(values))
    offset = 0.0
    if 0 < i < len(values) - 1:
        before, peak, after = values[i - 1 : i + 2]
        curvature = before - 2.0 * peak + after
        if curvature < 0.0:
            offset = 0.5 * (before - after) / curvature
    return float((lags[i] + offset) / sample_rate)


def third_octave_levels(binaural: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Band centres (B,) in Hz and levels (2, B) in dB of a signal (2, n).

    Base-2 third-octave bands centred 1 kHz x 2^(k/3) from 200 Hz to 16 kHz (bands reaching
    past Nyquist are dropped); level = mean Welch PSD (Hann, 4096-point segments) in the band.
    """
    x = np.asarray(binaural, dtype=np.float64)
    k = np.arange(round(3 * np.log2(200 / 1000)), round(3 * np.log2(16000 / 1000)) + 1)
    centres = 1000.0 * 2.0 ** (k / 3.0)
    centres = centres[centres * 2 ** (1 / 6) < sample_rate / 2]
    freqs, psd = welch(x, sample_rate, nperseg=min(4096, x.shape[1]), axis=1)
    levels = np.stack(
        [
            psd[:, (freqs >= c * 2 ** (-1 / 6)) & (freqs < c * 2 ** (1 / 6))].mean(axis=1)
            for c in centres
        ],
        axis=1,
    )
    return centres, 10.0 * np.log10(np.maximum(levels, 1e-300))


def _evaluation_indices(hrirs: HrirSet, directions: np.ndarray | None) -> np.ndarray:
    if directions is None:
        return evaluation_directions(hrirs)
    d = np.asarray(directions)
    if d.ndim == 1 and d.size and np.issubdtype(d.dtype, np.integer):
        if d.min() < 0 or d.max() >= len(hrirs.azimuth):
            raise InputError(f"direction indices must lie in 0..{len(hrirs.azimuth) - 1}")
        return d.astype(int)
    if d.ndim == 2 and d.shape[1] == 2 and d.shape[0] and np.all(np.isfinite(d)):
        return np.array([hrirs.nearest(az, el) for az, el in d.astype(np.float64)])
    raise InputError(
        "directions must be measured-direction indices (K,) or (azimuth, elevation) pairs "
        f"(K, 2) in radians, got shape {d.shape}"
    )


def evaluate_binaural(
    decoder: Decoder,
    hrirs: HrirSet,
    directions: np.ndarray | None = None,
    seconds: float = 2.0,
    seed: int = 0,
) -> dict[str, object]:
    """Compare a binaural decoder with direct HRIR convolution on white noise.

    For each direction (default: :func:`evaluation_directions`, 24 measured directions over
    elevations -40..60 deg; or indices (K,), or (azimuth, elevation) pairs (K, 2) in radians
    snapped to measured directions) the same white noise (``seconds`` long, ``seed``) is
    encoded with :func:`~swansphere.foa.encode.encode_mono` and decoded, and separately
    convolved with the measured HRIRs (resampled to the decoder's rate). Metrics:

    - ILD error, dB: |ILD_dec - ILD_ref| with broadband ILD = 10 log10(E_L / E_R).
    - ITD error, microseconds: |ITD_dec - ITD_ref|, see :func:`interaural_time_difference`.
    - Log-spectral error, dB: third-octave levels (:func:`third_octave_levels`, 200 Hz..16
      kHz) of both ears, decoded minus reference, less their mean over bands and ears (the
      overall level offset); the RMS over bands and ears.

    Returns means "ild_error_db", "itd_error_us", "lsd_db" (floats); "directions" (K, 2)
    azimuth/elevation in radians; "indices" (K,); per-direction arrays
    "ild_error_db_per_direction", "itd_error_us_per_direction", "lsd_db_per_direction",
    "ild_reference_db", "ild_decoded_db", "itd_reference_us", "itd_decoded_us".
    """
    if decoder.outputs != 2:
        raise InputError(f"a binaural decoder has 2 outputs, this one has {decoder.outputs}")
    if not np.isfinite(seconds) or seconds < 0.25:
        raise InputError(f"seconds must be at least 0.25, got {seconds!r}")
    rate = decoder.sample_rate
    hrirs = hrirs.resampled(rate)
    indices = _evaluation_indices(hrirs, directions)
    noise = np.random.default_rng(seed).standard_normal(int(round(seconds * rate)))
    rows: dict[str, list[float]] = {
        key: [] for key in ("ild_ref", "ild_dec", "itd_ref", "itd_dec", "lsd")
    }
    for m in indices:
        reference = oaconvolve(hrirs.irs[m], noise[None, :], axes=1)[:, : noise.size]
        decoded = decoder.apply(encode_mono(noise, hrirs.azimuth[m], hrirs.elevation[m]))
        rows["ild_ref"].append(interaural_level_difference(reference))
        rows["ild_dec"].append(interaural_level_difference(decoded))
        rows["itd_ref"].append(interaural_time_difference(reference, rate) * 1e6)
        rows["itd_dec"].append(interaural_time_difference(decoded, rate) * 1e6)
        difference = third_octave_levels(decoded, rate)[1] - third_octave_levels(reference, rate)[1]
        difference -= difference.mean()
        rows["lsd"].append(float(np.sqrt(np.mean(difference**2))))
    arrays = {key: np.array(value) for key, value in rows.items()}
    ild_error = np.abs(arrays["ild_dec"] - arrays["ild_ref"])
    itd_error = np.abs(arrays["itd_dec"] - arrays["itd_ref"])
    return {
        "ild_error_db": float(ild_error.mean()),
        "itd_error_us": float(itd_error.mean()),
        "lsd_db": float(arrays["lsd"].mean()),
        "directions": np.stack([hrirs.azimuth[indices], hrirs.elevation[indices]], axis=1),
        "indices": indices,
        "ild_error_db_per_direction": ild_error,
        "itd_error_us_per_direction": itd_error,
        "lsd_db_per_direction": arrays["lsd"],
        "ild_reference_db": arrays["ild_ref"],
        "ild_decoded_db": arrays["ild_dec"],
        "itd_reference_us": arrays["itd_ref"],
        "itd_decoded_us": arrays["itd_dec"],
    }
