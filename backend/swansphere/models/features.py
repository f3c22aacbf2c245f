"""Time-frequency input features of AmbiX FOA for the SVAC audio encoder (torch only).

Input: AmbiX FOA (ACN W, Y, Z, X; SN3D) as a float tensor (B, 4, T) at ``sample_rate`` Hz.
Output of :func:`foa_features`: (B, 7, n_mels, frames) with the channels

* 0..3 -- log-mel power of W, Y, Z, X in dB (10 log10(P + 1e-10): a -100 dB floor),
* 4..6 -- normalised active intensity along the Y, Z, X dipoles per mel band:
  ``M Re{conj(W) V_k} / (M (|W|^2 + |V|^2) / 2 + eps)`` with M the mel filterbank and
  V = (Y, Z, X). For one plane wave from unit direction u, |W|^2 = |V|^2, so the
  denominator is |W|^2 and the three maps are exactly u in ACN order (u_y, u_z, u_x);
  for an isotropic diffuse field they tend to 0. The energy density
  (|W|^2 + |V|^2) / 2 (see :mod:`swansphere.foa.doa`) rather than |W|^2 alone keeps
  every value in [-1, 1] by Cauchy-Schwarz, even where W is weak against the dipoles.
  The dipole maps keep ACN order, so rotating the FOA by a 4x4 matrix from
  :func:`swansphere.foa.rotation.foa_rotation_matrix` rotates them by its 3x3 dipole block.

Frame rate. Frame i covers the samples centred on ((i + 0.5) * hop): the signal is
treated as periodic (circular padding), so ``frames = ceil(T / hop)`` and a circular shift
of the FOA by a whole number of hops shifts every feature map by as many frames -- the
same model of a clip that the circular time-shift negatives of SVAC use. The audio tokens
of SVAC must line up with the FOA-VAE latent frames, 21.53 frames/s (44.1 kHz / 2048 =
22.05 kHz / 1024). ``hop`` is therefore the latent hop (:func:`latent_hop`: 1024 at
22.05 kHz, 2048 at 44.1 kHz) or that hop divided by an integer, the number of feature
frames the audio encoder merges into one token along time.
"""

from __future__ import annotations

import math

import torch

from swansphere.errors import InputError

# FOA-VAE latent frame rate in frames per second: 44100 / 2048 = 22050 / 1024.
LATENT_RATE_HZ = 44100 / 2048

# Channels of foa_features: 4 log-mel maps (W, Y, Z, X) and 3 intensity maps (Y, Z, X).
FOA_FEATURE_CHANNELS = 7
LOGMEL_CHANNELS = slice(0, 4)
INTENSITY_CHANNELS = slice(4, 7)

# Floor added to mel power before the log (-100 dB re a full-scale power of 1).
POWER_FLOOR = 1e-10

# The intensity normaliser gets eps = this fraction of the clip's mean band energy (so the
# features do not depend on the clip's level), plus a tiny absolute term for silence.
RELATIVE_EPS = 1e-6
ABSOLUTE_EPS = 1e-20


def latent_hop(sample_rate: int) -> int:
    """Samples per FOA-VAE latent frame at ``sample_rate`` Hz: 1024 at 22050, 2048 at 44100."""
    if sample_rate <= 0:
        raise InputError(f"sample_rate must be positive, got {sample_rate}")
    return round(sample_rate / LATENT_RATE_HZ)


def feature_frames(num_samples: int, hop: int) -> int:
    """Frames :func:`foa_features` makes from ``num_samples`` samples: ceil(num_samples / hop)."""
    return -(-int(num_samples) // int(hop))


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    linear = hz / (200.0 / 3.0)
    log = 15.0 + torch.log(torch.clamp(hz, min=1e-9) / 1000.0) / (math.log(6.4) / 27.0)
    return torch.where(hz < 1000.0, linear, log)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * (200.0 / 3.0)
    log = 1000.0 * torch.exp((mel - 15.0) * (math.log(6.4) / 27.0))
    return torch.where(mel < 15.0, linear, log)


def mel_filterbank(
    n_fft: int, sample_rate: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular mel filterbank (n_mels, n_fft // 2 + 1), float64.

    Band edges are equally spaced on the Slaney mel scale between ``fmin`` and ``fmax``
    (Hz, default Nyquist); each triangle has area normalisation 2 / (upper - lower Hz), so
    a flat power spectrum gives equal values in every band. Raises InputError when a band
    catches no FFT bin (too many mels for the FFT size).
    """
    nyquist = sample_rate / 2
    fmax = nyquist if fmax is None else float(fmax)
    if n_fft < 2 or n_mels < 1:
        raise InputError(f"need n_fft >= 2 and n_mels >= 1, got n_fft={n_fft}, n_mels={n_mels}")
    if not 0 <= fmin < fmax <= nyquist:
        raise InputError(f"need 0 <= fmin < fmax <= {nyquist} Hz, got fmin={fmin}, fmax={fmax}")
    bins = torch.linspace(0.0, nyquist, n_fft // 2 + 1, dtype=torch.float64)
    lo_hi = torch.tensor([fmin, fmax], dtype=torch.float64)
    mel_lo, mel_hi = _hz_to_mel(lo_hi)
    edges = _mel_to_hz(
        torch.linspace(float(mel_lo), float(mel_hi), n_mels + 2, dtype=torch.float64)
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0) * (2.0 / (upper - lower))
    empty = torch.nonzero(weights.sum(dim=1) == 0).flatten()
    if empty.numel():
        raise InputError(
            f"{empty.numel()} of {n_mels} mel bands hold no FFT bin (first: band {int(empty[0])})"
            f"; use fewer mels or a longer FFT than n_fft={n_fft} at {sample_rate} Hz"
        )
    return weights


def _check_foa(foa: torch.Tensor, n_fft: int) -> None:
    if not isinstance(foa, torch.Tensor):
        raise InputError(f"FOA must be a torch tensor (B, 4, T), got {type(foa).__name__}")
    if foa.ndim != 3 or foa.shape[1] != 4:
        raise InputError(f"FOA must have shape (B, 4, T) in ACN order, got {tuple(foa.shape)}")
    if not foa.is_floating_point():
        raise InputError(f"FOA must be a floating-point tensor, got {foa.dtype}")
    if foa.shape[2] < n_fft:
        raise InputError(f"FOA has {foa.shape[2]} samples; at least n_fft={n_fft} are needed")
    if not bool(torch.isfinite(foa).all()):
        raise InputError("FOA contains non-finite values (NaN or Inf)")


def foa_stft(foa: torch.Tensor, hop: int, n_fft: int) -> torch.Tensor:
    """Complex STFT (B, 4, n_fft // 2 + 1, ceil(T / hop)) of FOA (B, 4, T), periodic framing.

    The clip is zero-padded to a whole number of hops, then circularly padded by
    (n_fft - hop) / 2 on either side, so frame i is centred on sample (i + 0.5) * hop.
    Periodic Hann window; no scaling (power is in squared full-scale units per frame).
    """
    if hop < 1 or n_fft < hop:
        raise InputError(f"need 1 <= hop <= n_fft, got hop={hop}, n_fft={n_fft}")
    batch, channels, samples = foa.shape
    frames = feature_frames(samples, hop)
    x = torch.nn.functional.pad(foa, (0, frames * hop - samples))
    left = (n_fft - hop) // 2
    x = torch.nn.functional.pad(x, (left, n_fft - hop - left), mode="circular")
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        x.reshape(batch * channels, -1),
        n_fft,
        hop_length=hop,
        window=window,
        center=False,
        return_complex=True,
    )
    return spec.reshape(batch, channels, spec.shape[-2], spec.shape[-1])[..., :frames]


def foa_features(
    foa: torch.Tensor,
    sample_rate: int,
    n_mels: int = 64,
    hop: int | None = None,
    n_fft: int | None = None,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> torch.Tensor:
    """Log-mel and intensity features (B, 7, n_mels, ceil(T / hop)) of AmbiX FOA (B, 4, T).

    sample_rate: Hz. hop: samples per frame, default :func:`latent_hop` (21.53 frames/s).
    n_fft: FFT size, default 2 * hop. fmin, fmax: mel range in Hz (default 0 to Nyquist).
    Channels and conventions are in the module docstring. Computed in float32 or the
    input's float64; not meant to be differentiated through.
    """
    hop = latent_hop(sample_rate) if hop is None else int(hop)
    n_fft = 2 * hop if n_fft is None else int(n_fft)
    _check_foa(foa, n_fft)
    spec = foa_stft(foa, hop, n_fft)  # (B, 4, freq, frames), channels W, Y, Z, X
    mel = mel_filterbank(n_fft, sample_rate, n_mels, fmin, fmax).to(spec.real.dtype)
    mel = mel.to(foa.device)
    power = spec.real**2 + spec.imag**2
    mel_power = torch.einsum("mf,bcft->bcmt", mel, power)
    log_mel = 10.0 * torch.log10(mel_power + POWER_FLOOR)
    # Active intensity Re{conj(W) V} per bin, then per band; energy density (|W|^2+|V|^2)/2.
    w = spec[:, :1]
    intensity = torch.einsum("mf,bcft->bcmt", mel, (w.conj() * spec[:, 1:]).real)
    energy = 0.5 * mel_power.sum(dim=1, keepdim=True)
    eps = RELATIVE_EPS * energy.mean(dim=(2, 3), keepdim=True) + ABSOLUTE_EPS
    return torch.cat([log_mel, intensity / (energy + eps)], dim=1).to(foa.dtype)
