"""FOA-VAE training losses: per-channel multi-resolution STFT, STFT discriminator, hinge GAN.

Audio is AmbiX FOA (B, 4, T), ACN order W, Y, Z, X with SN3D normalisation. The paper's
VAE objective (DESIGN.md section 4) is multi-resolution STFT 1.0 with each of the four
channels weighted 1/4, KL 1e-5, adversarial 1.0 and no L1 (L1 hurt high frequencies);
feature matching comes with the discriminator as in Encodec / stable-audio-tools.

* :class:`MultiResolutionSTFTLoss` -- spectral convergence + log-magnitude L1 averaged over
  FFT sizes, per channel, combined with channel weights; returns total and per-channel.
* :class:`IntensityLoss` -- multi-resolution L1 of the active intensity per STFT bin,
  relative to the target's energy: keeps each bin's direction, which magnitudes miss.
* :class:`MultiScaleSTFTDiscriminator` -- Encodec's MS-STFT discriminator over 4 channels:
  at each scale the complex STFT's real and imaginary parts of all channels are stacked
  as 2D-conv input channels (so inter-channel phase, i.e. direction, is visible to it).
* :func:`discriminator_loss`, :func:`generator_adversarial_loss` (hinge) and
  :func:`feature_matching_loss` (relative L1, Encodec).
* :class:`VAELossWeights` -- the weights, with :meth:`VAELossWeights.total`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from swansphere.errors import InputError

# FFT sizes at 44.1 kHz (the brief's and stable-audio-tools' discriminator scales); other
# rates scale them so that each resolution covers the same duration.
BASE_FFT_SIZES = (2048, 1024, 512, 256, 128)
BASE_SAMPLE_RATE = 44100
# Floor of the squared STFT magnitude: keeps sqrt and log differentiable at silence
# (magnitude floor 1e-4, about -80 dB below a full-scale bin of a 1-sample window).
_POWER_FLOOR = 1e-8
# Cap of IntensityLoss per example and resolution.
MAX_INTENSITY_RATIO = 2.0


def default_fft_sizes(sample_rate: int) -> tuple[int, ...]:
    """FFT sizes for ``sample_rate`` Hz: (2048, ..., 128) at 44.1 kHz, halved at 22.05 kHz.

    Each size is the power of two nearest to 2048 * sample_rate / 44100 (and so on), >= 16.
    """
    if sample_rate <= 0:
        raise InputError(f"sample_rate must be positive, got {sample_rate}")
    scale = sample_rate / BASE_SAMPLE_RATE
    return tuple(max(16, 2 ** round(math.log2(n * scale))) for n in BASE_FFT_SIZES)


def _check_sizes(fft_sizes: Sequence[int], hop_ratio: float) -> tuple[int, ...]:
    sizes = tuple(int(n) for n in fft_sizes)
    if not sizes or min(sizes) < 4:
        raise InputError(f"fft_sizes must be a non-empty list of sizes >= 4, got {fft_sizes}")
    if not 0.0 < hop_ratio <= 1.0 or min(sizes) * hop_ratio < 1:
        raise InputError(f"hop_ratio must be in (0, 1] with hops >= 1 sample, got {hop_ratio}")
    return sizes


def _check_audio(name: str, x: Tensor, channels: int, min_length: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name} must have shape (B, {channels}, T), got {shape}")
    if x.shape[-1] < min_length:
        raise InputError(
            f"{name} has {x.shape[-1]} samples; the largest FFT needs at least {min_length}"
        )


def stft_magnitude(x: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """|STFT| of every channel: x (B, C, T) -> (B, C, n_fft // 2 + 1, frames).

    Centred frames (reflect padding), Hann window of length n_fft; the magnitude is floored
    at 1e-4 so its log and gradient stay finite on silence.
    """
    b, c, t = x.shape
    spec = torch.stft(
        x.reshape(b * c, t), n_fft, hop, window=window, center=True, return_complex=True
    )  # (B C, freq, frames)
    power = spec.real.pow(2) + spec.imag.pow(2)
    return power.clamp_min(_POWER_FLOOR).sqrt().view(b, c, *spec.shape[-2:])


def spectral_convergence(
    pred_mag: Tensor, target_mag: Tensor, relative_floor: float = 1e-2
) -> Tensor:
    """||S - S_hat||_F / ||S||_F per example and channel: (B, C, F, N) -> (B, C).

    The denominator is at least ``relative_floor`` times the loudest channel's norm in the
    same example, so a silent dipole (pseudo-FOA, or a source on an axis) does not turn a
    tiny error into a huge ratio; channels louder than that floor are unaffected.
    """
    num = (target_mag - pred_mag).flatten(2).norm(dim=-1)  # (B, C)
    den = target_mag.flatten(2).norm(dim=-1)  # (B, C)
    den = torch.maximum(den, relative_floor * den.amax(dim=1, keepdim=True))
    return num / den


def log_magnitude_distance(pred_mag: Tensor, target_mag: Tensor) -> Tensor:
    """Mean |log S - log S_hat| over frequency and time: (B, C, F, N) -> (B, C)."""
    return (target_mag.log() - pred_mag.log()).abs().flatten(2).mean(dim=-1)


class MRSTFTResult(NamedTuple):
    """Output of :class:`MultiResolutionSTFTLoss`."""

    total: Tensor  # scalar: sum over channels of channel weight * per-channel loss
    per_channel: Tensor  # (C,): each channel's loss (SC + log-mag, mean over sizes and batch)


class MultiResolutionSTFTLoss(nn.Module):
    """Per-channel multi-resolution STFT loss for FOA (B, 4, T) in ACN order W, Y, Z, X.

    For each FFT size n (Hann window n, hop n * hop_ratio) and channel c:
    spectral convergence + mean |log magnitude difference|; averaged over sizes and the
    batch gives ``per_channel[c]``; ``total`` = sum_c channel_weights[c] per_channel[c]
    (1/4 each by default, as in the paper). Zero when prediction equals target.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = BASE_FFT_SIZES,
        hop_ratio: float = 0.25,
        channel_weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
        relative_floor: float = 1e-2,
    ) -> None:
        super().__init__()
        self.fft_sizes = _check_sizes(fft_sizes, hop_ratio)
        self.hops = tuple(max(1, round(n * hop_ratio)) for n in self.fft_sizes)
        if not channel_weights or min(channel_weights) < 0:
            raise InputError(f"channel_weights must be >= 0, got {channel_weights}")
        self.relative_floor = relative_floor
        self.register_buffer(
            "channel_weights", torch.tensor(channel_weights, dtype=torch.float32), persistent=False
        )
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> MRSTFTResult:
        """pred, target: (B, C, T) with C = len(channel_weights) -> (total, per_channel (C,))."""
        channels = self.channel_weights.numel()
        _check_audio("pred", pred, channels, max(self.fft_sizes))
        _check_audio("target", target, channels, max(self.fft_sizes))
        if pred.shape != target.shape:
            raise InputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        per_channel = pred.new_zeros(channels)
        for n, hop in zip(self.fft_sizes, self.hops, strict=True):
            window = getattr(self, f"window_{n}").to(pred.dtype)
            p = stft_magnitude(pred, n, hop, window)
            t = stft_magnitude(target, n, hop, window)
            loss = spectral_convergence(p, t, self.relative_floor) + log_magnitude_distance(p, t)
            per_channel = per_channel + loss.mean(dim=0)  # (C,)
        per_channel = per_channel / len(self.fft_sizes)
        total = (self.channel_weights.to(per_channel.dtype) * per_channel).sum()
        return MRSTFTResult(total, per_channel)


def active_intensity(x: Tensor, n_fft: int, hop: int, window: Tensor) -> tuple[Tensor, Tensor]:
    """Active intensity and energy density per STFT bin of AmbiX FOA x (B, 4, T).

    I = Re{conj(W) (X, Y, Z)} (B, 3, F, N) in x, y, z order (ACN channels 3, 1, 2) and
    E = (|W|^2 + |X|^2 + |Y|^2 + |Z|^2) / 2 (B, F, N): the SN3D plane-wave convention of
    :mod:`swansphere.foa.doa` (|I| = E for one plane wave). Centred Hann frames.
    """
    b, c, t = x.shape
    spec = torch.stft(
        x.reshape(b * c, t), n_fft, hop, window=window, center=True, return_complex=True
    ).view(b, c, -1, (t // hop) + 1)
    w, v = spec[:, 0], spec[:, [3, 1, 2]]
    intensity = (w.conj().unsqueeze(1) * v).real
    energy = 0.5 * (spec.real.pow(2) + spec.imag.pow(2)).sum(dim=1)
    return intensity, energy


class IntensityLoss(nn.Module):
    """Multi-resolution active-intensity loss: the sound field's direction, per bin.

    Per-channel STFT magnitudes are blind to the phase between W and the dipoles, and that
    phase is the direction (I = Re{W* (X, Y, Z)}). For each FFT size n (Hann, hop n / 4):
    sum over bins of ||I_pred - I_target|| (Euclidean) divided by the target's summed
    energy E, per example, capped at MAX_INTENSITY_RATIO = 2; averaged over sizes and the
    batch. Dimensionless: 0 for a perfect field, 1 for silence, 2 when a plane wave comes
    back from the opposite side. Loud bins count in proportion to their energy, as they
    do in the clip-level direction.
    """

    def __init__(self, fft_sizes: Sequence[int] = BASE_FFT_SIZES[:3], eps: float = 1e-8) -> None:
        super().__init__()
        self.fft_sizes = _check_sizes(fft_sizes, 0.25)
        self.eps = eps
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target: FOA (B, 4, T) -> scalar loss."""
        _check_audio("pred", pred, 4, max(self.fft_sizes))
        _check_audio("target", target, 4, max(self.fft_sizes))
        if pred.shape != target.shape:
            raise InputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        total = pred.new_zeros(())
        for n in self.fft_sizes:
            window = getattr(self, f"window_{n}").to(pred.dtype)
            i_pred, _ = active_intensity(pred, n, n // 4, window)
            i_true, e_true = active_intensity(target, n, n // 4, window)
            # Euclidean distance per bin; the tiny constant keeps its gradient finite at 0.
            error = ((i_pred - i_true).pow(2).sum(dim=1) + 1e-20).sqrt().sum(dim=(1, 2))
            ratio = error / (e_true.sum(dim=(1, 2)) + self.eps)
            # Capped at 2 (a plane wave returned from the opposite side): on a nearly silent
            # crop, noise in the reconstruction would otherwise give ratios of 10 and more
            # that swamp the batch (loudness is the MR-STFT's job).
            total = total + ratio.clamp(max=MAX_INTENSITY_RATIO).mean()
        return total / len(self.fft_sizes)


# --------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------


def _same_padding(kernel: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    return ((kernel[0] - 1) * dilation[0] // 2, (kernel[1] - 1) * dilation[1] // 2)


class STFTDiscriminator(nn.Module):
    """One scale of the Encodec MS-STFT discriminator.

    Input (B, C, T) -> complex STFT (no centring, Hann window, normalised by the window's
    L2 norm) -> real and imaginary parts of all C channels as 2C image channels laid out
    (time, frequency) -> a (3, 9) conv, three (3, 9) convs with stride 2 in frequency and
    dilations 1, 2, 4 in time, a (3, 3) conv (LeakyReLU 0.2 after each, weight-normalised)
    and a (3, 3) conv to one logit channel.
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        n_fft: int,
        hop: int,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        kernel = (3, 9)
        convs = [nn.Conv2d(2 * in_channels, filters, kernel, padding=_same_padding(kernel))]
        for d in dilations:
            pad = _same_padding(kernel, (d, 1))
            convs.append(
                nn.Conv2d(filters, filters, kernel, stride=(1, 2), dilation=(d, 1), padding=pad)
            )
        convs.append(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(weight_norm(c) for c in convs)
        self.post = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window / window.pow(2).sum().sqrt(), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """x: (B, C, T), T >= n_fft -> (logits (B, 1, frames, freq'), feature maps)."""
        b, c, t = x.shape
        spec = torch.stft(
            x.reshape(b * c, t),
            self.n_fft,
            self.hop,
            window=self.window.to(x.dtype),
            center=False,
            return_complex=True,
        )  # (B C, freq, frames)
        spec = spec.view(b, c, *spec.shape[-2:])
        z = torch.cat([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2C, frames, freq)
        features = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), 0.2)
            features.append(z)
        return self.post(z), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """Encodec-style multi-scale STFT discriminator over FOA (B, 4, T).

    One :class:`STFTDiscriminator` per FFT size (hop = n * hop_ratio). stable-audio-tools'
    Oobleck VAE uses FFT sizes 2048..128 at 44.1 kHz with 64 filters; Encodec uses 32.
    """

    def __init__(
        self,
        in_channels: int = 4,
        filters: int = 32,
        fft_sizes: Sequence[int] = BASE_FFT_SIZES,
        hop_ratio: float = 0.25,
    ) -> None:
        super().__init__()
        if in_channels < 1 or filters < 1:
            raise InputError(
                f"in_channels and filters must be >= 1, got {in_channels} and {filters}"
            )
        sizes = _check_sizes(fft_sizes, hop_ratio)
        self.in_channels = in_channels
        self.scales = nn.ModuleList(
            STFTDiscriminator(in_channels, filters, n, max(1, round(n * hop_ratio))) for n in sizes
        )

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """x: (B, 4, T) -> (one logit map per scale, each scale's list of feature maps)."""
        _check_audio("discriminator input", x, self.in_channels, max(s.n_fft for s in self.scales))
        logits, features = [], []
        for scale in self.scales:
            out, feats = scale(x)
            logits.append(out)
            features.append(feats)
        return logits, features


# --------------------------------------------------------------------------------------
# Adversarial and feature-matching losses
# --------------------------------------------------------------------------------------


def _same_length(a: Sequence[object], b: Sequence[object], what: str) -> None:
    if len(a) != len(b) or not a:
        raise InputError(f"{what}: got {len(a)} real and {len(b)} generated scales")


def discriminator_loss(real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]) -> Tensor:
    """Hinge loss of the discriminator, averaged over scales.

    mean_k [ mean(relu(1 - D_k(x))) + mean(relu(1 + D_k(x_hat))) ]; pass ``x_hat`` detached.
    """
    _same_length(real_logits, fake_logits, "discriminator_loss")
    terms = [
        F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
        for r, f in zip(real_logits, fake_logits, strict=True)
    ]
    return torch.stack(terms).mean()


def generator_adversarial_loss(fake_logits: Sequence[Tensor]) -> Tensor:
    """Hinge loss of the generator (Encodec): mean_k mean(relu(1 - D_k(x_hat)))."""
    if not fake_logits:
        raise InputError("generator_adversarial_loss needs at least one scale")
    return torch.stack([F.relu(1.0 - f).mean() for f in fake_logits]).mean()


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]],
    fake_features: Sequence[Sequence[Tensor]],
    eps: float = 1e-8,
) -> Tensor:
    """Relative L1 between discriminator features of real and generated audio (Encodec).

    mean over scales k and layers l of mean|D_k^l(x) - D_k^l(x_hat)| / mean|D_k^l(x)|;
    the real features are detached (they are targets).
    """
    _same_length(real_features, fake_features, "feature_matching_loss")
    terms = []
    for reals, fakes in zip(real_features, fake_features, strict=True):
        _same_length(reals, fakes, "feature_matching_loss layers")
        for r, f in zip(reals, fakes, strict=True):
            r = r.detach()
            terms.append((r - f).abs().mean() / (r.abs().mean() + eps))
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAELossWeights:
    """Weights of the FOA-VAE generator objective (the discriminator has its own loss)."""

    mrstft: float = 1.0  # per-channel multi-resolution STFT (paper)
    kl: float = 1e-5  # KL to N(0, I) per latent frame (paper: 1e-5; stable-audio-tools 1e-4)
    adversarial: float = 1.0  # hinge generator loss (paper: 1.0; stable-audio-tools 0.1)
    feature_matching: float = 5.0  # relative-L1 features (stable-audio-tools' Oobleck VAE: 5.0)
    l1: float = 0.0  # waveform L1: 0 because the paper found it hurt high frequencies

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise InputError(f"VAELossWeights.{f.name} must be finite and >= 0, got {value}")

    def total(self, terms: Mapping[str, Tensor]) -> Tensor:
        """sum_name weight[name] * terms[name] over the non-zero weights.

        ``terms`` maps field names to scalar losses; a term whose weight is 0 may be left
        out (so the L1 need not be computed), an unknown name raises :class:`InputError`.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(terms) - names)
        if unknown:
            raise InputError(f"unknown loss term(s) {unknown}; known: {sorted(names)}")
        total: Tensor | None = None
        for name in sorted(names):
            weight = getattr(self, name)
            if weight == 0:
                continue
            if name not in terms:
                raise InputError(f"loss term {name!r} has weight {weight} but was not given")
            part = weight * terms[name]
            total = part if total is None else total + part
        if total is None:
            raise InputError("all VAE loss weights are zero")
        return total
