"""FOA-VAE: a causal Oobleck-style variational autoencoder for 4-channel AmbiX audio.

The network follows the autoencoder of Stable Audio Open ("Oobleck"): residual units
with dilations 1, 3, 9 and SnakeBeta activations, strided convolutions to go down in
time, and a decoder that mirrors the encoder with upsampling convolutions. These changes
make it fit SwanSphere:

* 4 input and output channels, AmbiX ACN order W, Y, Z, X with SN3D normalisation;
* every convolution is **causal** (left padding only), so the decoder can run on one
  generator patch at a time (:class:`StreamingDecoder`) and reproduce the offline
  :meth:`FOAVAE.decode` of the whole latent sequence with no look-ahead;
* a **direct path** (on unless ``direct_path=False``): the last three latent channels of
  every frame are not learned but measured, the frame's normalised broadband active
  intensity (:func:`frame_intensity`: the direction of the sound, scaled by
  1 - diffuseness, as in DirAC), and the decoder adds those gains times its W output to
  its dipoles (:class:`DirectPathGains`). A convolutional encoder/decoder otherwise has
  to discover the direction (a product of W and the dipoles) and reproduce the phase
  coherence that carries it from scratch; small networks trained briefly collapse to one
  direction for every input. With the direct path one plane wave comes back exactly,
  and the convolutional dipole outputs, stripped frame by frame of their part correlated
  with W (:func:`decorrelate_frames`), only carry what is not one plane wave;
* a **level path** (``level_path``, on in the presets): the latent channel before the
  direction channels is the frame's measured W level (:func:`frame_level`), and the
  decoder's output is scaled to it frame by frame (:class:`LevelPathGains`). A decoder
  trained briefly on CPU otherwise learns to ignore its latent and play one average
  texture (measured on the bundle of 2026-11-27: the same W whatever the input).

Shapes: audio (B, 4, T) with T a multiple of the total stride ``hop_length``; latents
(B, latent_dim, F) with F = T / hop_length, at ``frame_rate`` = sample_rate / hop_length
frames per second (21.53 for both presets). A checkpoint is ``VAEConfig.to_dict()``
(JSON) plus the safetensors ``state_dict``; :meth:`FOAVAE.from_config` rebuilds it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from swansphere.errors import InputError
from swansphere.models.config import config_from_dict

# Smallest posterior standard deviation, as in Stable Audio Open's VAE bottleneck.
_MIN_STD = 1e-4
# Latent channels of the direct path: the frame's intensity vector in ACN order Y, Z, X.
DIRECTION_DIMS = 3
# The level channel: natural log of (the frame's W RMS + LEVEL_FLOOR); floor = -80 dBFS.
LEVEL_FLOOR = 1e-4
# Samples over which the level gain crosses from one frame's value to the next (an
# abrupt gain step at every frame edge would click).
LEVEL_FADE = 128
# Dilations of the three residual units in every encoder and decoder block (Oobleck).
_DILATIONS = (1, 3, 9)
# Kernel sizes: residual units and the outer convolutions (Oobleck).
_RES_KERNEL = 7
_OUTER_KERNEL = 7
_LATENT_KERNEL = 3


# --------------------------------------------------------------------------------------
# Config and presets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Constructor arguments of :class:`FOAVAE`; stored as JSON beside the weights."""

    channels: int  # base width of the Oobleck stack: the full-rate convolutions have this many
    multipliers: tuple[int, ...]  # width of level i is channels * multipliers[i] (one per stride)
    strides: tuple[int, ...]  # time downsampling of each level; their product is the hop length
    latent_dim: int  # latent channels per frame (d); the encoder emits 2 * latent_dim (mean, scale)
    sample_rate: int  # Hz of the audio the model is trained on
    in_channels: int = 4  # audio channels: 4 for AmbiX FOA (W, Y, Z, X); 2 only for SAO stereo
    direct_path: bool = True  # last DIRECTION_DIMS latent channels = frame_intensity (FOA only)
    # The channel before them = frame_level: the decoder's output is scaled to it frame by
    # frame, so the loudness envelope is measured, not learned (a briefly trained decoder
    # otherwise plays one average texture whatever the latent; see VAEStageConfig).
    level_path: bool = False

    def __post_init__(self) -> None:
        # Lists from JSON become tuples so the frozen config stays hashable.
        object.__setattr__(self, "multipliers", tuple(int(m) for m in self.multipliers))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        for name in ("channels", "latent_dim", "sample_rate", "in_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"VAEConfig.{name} must be a positive integer, got {value!r}")
        if not self.strides:
            raise InputError("VAEConfig.strides must name at least one level")
        for flag in ("direct_path", "level_path"):
            if not isinstance(getattr(self, flag), bool):
                raise InputError(
                    f"VAEConfig.{flag} must be true or false, got {getattr(self, flag)!r}"
                )
        if self.direct_path and self.in_channels != 4:
            raise InputError("VAEConfig.direct_path needs 4-channel FOA (in_channels = 4)")
        if self.latent_dim <= self.measured_dim:
            raise InputError(
                f"VAEConfig.latent_dim must exceed the {self.measured_dim} measured "
                "(direction and level) channels"
            )
        if len(self.multipliers) != len(self.strides):
            raise InputError(
                f"VAEConfig needs one multiplier per stride, got {len(self.multipliers)} "
                f"multipliers and {len(self.strides)} strides"
            )
        if min(self.multipliers) < 1 or min(self.strides) < 1:
            raise InputError(
                f"VAEConfig multipliers and strides must be >= 1, got {self.multipliers} "
                f"and {self.strides}"
            )

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame (product of the strides)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def measured_dim(self) -> int:
        """Latent channels measured from the audio, not learned: level, then direction."""
        return int(self.level_path) + (DIRECTION_DIMS if self.direct_path else 0)

    @property
    def learned_dim(self) -> int:
        """Latent channels the encoder learns (all but the measured ones)."""
        return self.latent_dim - self.measured_dim

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        d["multipliers"] = list(self.multipliers)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`InputError`."""
        return config_from_dict(cls, data)


# Presets are data. Both give 21.53 latent frames per second (44100 / 2048 = 22050 / 1024).
VAE_PRESETS: dict[str, VAEConfig] = {
    # CPU-sized: 22.05 kHz, 1024x, five levels like the paper preset, 1.8 M parameters
    # (forward + backward of 2 x 1 s clips: about 0.2 s on 2 idle CPU cores).
    "tiny": VAEConfig(
        channels=16,
        multipliers=(1, 2, 4, 8, 8),
        strides=(2, 4, 4, 4, 8),
        latent_dim=32,
        sample_rate=22050,
        level_path=True,
    ),
    # Stable Audio Open's Oobleck widths and strides (2048x at 44.1 kHz), d = 128 as in the
    # SwanSphere paper (SAO itself has a 64-dim latent).
    "paper": VAEConfig(
        channels=128,
        multipliers=(1, 2, 4, 8, 16),
        strides=(2, 4, 4, 8, 8),
        latent_dim=128,
        sample_rate=44100,
        level_path=True,
    ),
}


# --------------------------------------------------------------------------------------
# Streaming state
# --------------------------------------------------------------------------------------


@dataclass
class StreamState:
    """Explicit state of one stream through causal layers.

    caches: for each causal convolution (keyed by the module object), the last input
            samples it needs as left context, shape (B, C_in, context). Absent = zeros,
            which is exactly the zero left padding of the offline pass.
    frames: latent frames consumed so far.
    """

    caches: dict[nn.Module, Tensor] = field(default_factory=dict)
    frames: int = 0

    def extend(self, module: nn.Module, x: Tensor, context: int) -> Tensor:
        """Prepend ``module``'s cached left context to ``x`` (B, C, L) and keep the new tail."""
        if context == 0:
            return x
        previous = self.caches.get(module)
        if previous is None:
            previous = x.new_zeros(x.shape[0], x.shape[1], context)
        extended = torch.cat([previous, x], dim=-1)  # (B, C, context + L)
        self.caches[module] = extended[..., extended.shape[-1] - context :]
        return extended


def _run(layers: nn.Sequential, x: Tensor, state: StreamState | None) -> Tensor:
    """Apply ``layers`` in order, handing ``state`` to the layers that keep causal context."""
    for layer in layers:
        x = layer(x, state) if isinstance(layer, _STATEFUL) else layer(x)
    return x


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


class SnakeBeta(nn.Module):
    """Snake activation x + 1/b sin^2(a x) with per-channel a, b stored as logarithms.

    Parameter names and parametrisation match Stable Audio Open (alpha, beta at 0 = 1).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))  # log of the frequency a
        self.beta = nn.Parameter(torch.zeros(channels))  # log of the inverse magnitude b

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left only: output frame n sees inputs up to n * stride + stride - 1.

    With left padding ``dilation (kernel - 1) + 1 - stride`` an input of length L (a
    multiple of the stride) gives exactly L / stride outputs. Weight-normalised like
    Oobleck's ``WNConv1d`` (apply :func:`_weight_normed` after construction).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, bias=bias
        )
        self.context = dilation * (kernel_size - 1) + 1 - stride

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        """x: (B, C_in, L) -> (B, C_out, L / stride); ``state`` carries the left context."""
        x = F.pad(x, (self.context, 0)) if state is None else state.extend(self, x, self.context)
        return super().forward(x)


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """Transposed convolution (kernel taps * s, stride s) cropped to be causal.

    Output sample n s + r (0 <= r < s) is sum_j W[:, :, j s + r] x[n - j], i.e. the
    transposed convolution without its trailing overlap. Computed as a causal conv of
    ``taps`` frames producing s phases per frame, then interleaved, so a stream only
    keeps the last ``taps - 1`` input frames. The weight keeps ConvTranspose1d's layout
    (C_in, C_out, taps * s), as in Stable Audio Open.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, taps: int = 2) -> None:
        super().__init__(in_channels, out_channels, kernel_size=taps * stride, stride=stride)
        self.taps = taps
        self.context = taps - 1
        # The polyphase weight frozen by FOAVAE.fold_weight_norm (eval mode only).
        self.register_buffer("frozen_polyphase", None, persistent=False)

    def polyphase_weight(self) -> Tensor:
        """(C_out * s, C_in, taps) conv weight; row o * s + r is phase r of output channel o.
        In eval mode, the one frozen by :meth:`freeze_polyphase` if any."""
        if self.frozen_polyphase is not None and not self.training:
            return self.frozen_polyphase
        c_in, c_out, _ = self.weight.shape
        s = self.stride[0]
        w = self.weight.view(c_in, c_out, self.taps, s)  # [i, o, j, r], kernel index j s + r
        # Conv taps run oldest-first, so tap taps-1-j multiplies x[n - j].
        return w.permute(1, 3, 0, 2).flip(-1).reshape(c_out * s, c_in, self.taps)

    def freeze_polyphase(self) -> None:
        """Compute the polyphase weight once for inference instead of on every call (the
        weight must not change afterwards; training mode ignores the frozen copy)."""
        self.frozen_polyphase = None
        self.frozen_polyphase = self.polyphase_weight().detach().clone()

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:  # type: ignore[override]
        """x: (B, C_in, L) -> (B, C_out, L * stride)."""
        x = F.pad(x, (self.context, 0)) if state is None else state.extend(self, x, self.context)
        y = F.conv1d(x, self.polyphase_weight())  # (B, C_out * s, L)
        b, _, length = y.shape
        s = self.stride[0]
        y = y.view(b, self.out_channels, s, length).transpose(2, 3)  # (B, C_out, L, s)
        y = y.reshape(b, self.out_channels, length * s)
        return y if self.bias is None else y + self.bias[None, :, None]


def _weight_normed(module: nn.Module) -> nn.Module:
    """Weight normalisation over dim 0, as Oobleck's WNConv1d / WNConvTranspose1d."""
    return weight_norm(module, dim=0)


class ResidualUnit(nn.Module):
    """x + conv1(snake(conv7_dilated(snake(x)))), channels unchanged (Oobleck)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(channels),
            _weight_normed(CausalConv1d(channels, channels, _RES_KERNEL, dilation=dilation)),
            SnakeBeta(channels),
            _weight_normed(CausalConv1d(channels, channels, 1)),
        )

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        return x + _run(self.layers, x, state)


class EncoderBlock(nn.Module):
    """Three residual units at ``in_channels`` then a strided conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualUnit(in_channels, d) for d in _DILATIONS),
            SnakeBeta(in_channels),
            _weight_normed(CausalConv1d(in_channels, out_channels, 2 * stride, stride=stride)),
        )

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        """x: (B, C_in, T) -> (B, C_out, T / stride)."""
        return _run(self.layers, x, state)


class DecoderBlock(nn.Module):
    """Upsampling conv to ``out_channels`` then three residual units (mirror of the encoder)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            SnakeBeta(in_channels),
            _weight_normed(CausalConvTranspose1d(in_channels, out_channels, stride)),
            *(ResidualUnit(out_channels, d) for d in _DILATIONS),
        )

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        """x: (B, C_in, F) -> (B, C_out, F * stride)."""
        return _run(self.layers, x, state)


def _widths(config: VAEConfig) -> list[int]:
    """Channel width before each level and after the last: [c, c m0, c m1, ...]."""
    return [config.channels] + [config.channels * m for m in config.multipliers]


class OobleckEncoder(nn.Module):
    """Audio (B, in_channels, T) -> (B, 2 learned_dim, T / hop): mean and pre-softplus scale."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        w = _widths(config)
        self.layers = nn.Sequential(
            _weight_normed(CausalConv1d(config.in_channels, w[0], _OUTER_KERNEL)),
            *(EncoderBlock(w[i], w[i + 1], s) for i, s in enumerate(config.strides)),
            SnakeBeta(w[-1]),
            _weight_normed(CausalConv1d(w[-1], 2 * config.learned_dim, _LATENT_KERNEL)),
        )

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        """x: (B, in_channels, T) -> (B, 2 learned_dim, T / hop_length)."""
        return _run(self.layers, x, state)


class OobleckDecoder(nn.Module):
    """Latents (B, latent_dim, F) -> audio (B, in_channels, F * hop); no final tanh (SAO)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        w = _widths(config)
        levels = len(config.strides)
        self.layers = nn.Sequential(
            _weight_normed(CausalConv1d(config.latent_dim, w[-1], _OUTER_KERNEL)),
            *(DecoderBlock(w[i + 1], w[i], config.strides[i]) for i in reversed(range(levels))),
            SnakeBeta(w[0]),
            _weight_normed(CausalConv1d(w[0], config.in_channels, _OUTER_KERNEL, bias=False)),
        )

    def forward(self, z: Tensor, state: StreamState | None = None) -> Tensor:
        """z: (B, latent_dim, F) -> (B, in_channels, F * hop_length)."""
        return _run(self.layers, z, state)


def frame_intensity(x: Tensor, hop: int) -> Tensor:
    """Normalised active intensity per frame of ``hop`` samples of AmbiX FOA x (B, 4, T).

    (B, 3, T / hop) in ACN order Y, Z, X: sum_n W(n) D(n) / sum_n E(n) over the frame's
    samples, E = (W^2 + X^2 + Y^2 + Z^2) / 2 (SN3D). It is the plane wave's unit direction
    vector for one plane wave, shorter for a diffuse field (length 1 - diffuseness) and
    0 for silence; its length never exceeds 1 (Cauchy-Schwarz). Causal: frame k uses
    only its own samples.
    """
    b, c, t = x.shape
    frames = x.reshape(b, c, t // hop, hop)
    w, dipoles = frames[:, :1], frames[:, 1:]
    flux = (w * dipoles).sum(-1)  # (B, 3, F)
    energy = 0.5 * frames.pow(2).sum(dim=(1, 3))  # (B, F)
    return flux / (energy[:, None] + 1e-12)


def ramped_frame_gains(
    module: nn.Module, gains: Tensor, ramp: Tensor, state: StreamState | None
) -> Tensor:
    """Per-sample gains (B, C, F, hop) of per-frame gains (B, C, F): over frame k's samples
    the gain goes from g_{k-1} to g_k along ``ramp`` (hop,), rising from 0 to 1. g_{-1} = 0
    offline; a stream carries its last frame's gain in ``state`` under ``module``."""
    if state is None:
        previous = F.pad(gains, (1, 0))[..., :-1]
    else:
        previous = state.extend(module, gains, 1)[..., :-1]
    return previous[..., None] + (gains - previous)[..., None] * ramp.to(gains.dtype)


class DirectPathGains(nn.Module):
    """Direction channels (B, 3, F) of the latent -> per-sample gains (B, 3, F * hop) in
    ACN order Y, Z, X, clamped to [-1, 1]; the decoder adds gains * W to the dipoles.

    Over frame k's samples j = 0 .. hop - 1 the gain goes linearly from g_{k-1} to g_k
    (reaching g_k on the frame's last sample), with g_{-1} = 0: causal, no steps at frame
    edges, and streamable with one frame of state. No parameters.
    """

    def __init__(self, hop_length: int) -> None:
        super().__init__()
        self.hop_length = hop_length
        ramp = torch.arange(1, hop_length + 1, dtype=torch.float32) / hop_length
        self.register_buffer("ramp", ramp, persistent=False)

    def forward(self, direction: Tensor, state: StreamState | None = None) -> Tensor:
        gains = direction.clamp(-1.0, 1.0)  # (B, 3, F)
        return ramped_frame_gains(self, gains, self.ramp, state).flatten(-2)


def decorrelate_frames(signals: Tensor, reference: Tensor, hop: int) -> Tensor:
    """``signals`` (B, C, T) minus, per frame of ``hop`` samples, their least-squares
    projection on ``reference`` (B, 1, T): afterwards sum_frame(signal * reference) = 0
    for every channel and frame. Causal: frame k uses only its own samples."""
    b, c, t = signals.shape
    s = signals.reshape(b, c, t // hop, hop)
    r = reference.reshape(b, 1, t // hop, hop)
    coef = (s * r).sum(-1, keepdim=True) / (r.pow(2).sum(-1, keepdim=True) + 1e-12)
    return (s - coef * r).reshape(b, c, t)


def frame_level(x: Tensor, hop: int) -> Tensor:
    """Level (B, 1, T / hop) of AmbiX FOA x (B, C, T) per frame of ``hop`` samples: the
    natural log of (RMS of W + LEVEL_FLOOR). Causal: frame k uses only its own samples."""
    b, _, t = x.shape
    w = x[:, :1].reshape(b, 1, t // hop, hop)
    return rms_level(w.pow(2).mean(-1).sqrt())


def rms_level(rms: Tensor) -> Tensor:
    """The level channel's value for a W RMS (any shape): natural log of RMS + LEVEL_FLOOR."""
    return torch.log(rms + LEVEL_FLOOR)


def level_rms(level: Tensor) -> Tensor:
    """The W RMS (any shape, at least 0) level channel values stand for: the inverse of
    :func:`rms_level`. The decoder plays at most 0 dBFS (:class:`LevelPathGains`)."""
    return (level.exp() - LEVEL_FLOOR).clamp(min=0.0)


class LevelPathGains(nn.Module):
    """Scales decoded audio (B, C, F * hop) so that each frame's W RMS is the level channel's
    (B, 1, F) value (at most 1, 0 dBFS): gain_k = target_k / RMS_k(decoded W), at most
    ``MAX_GAIN``. The gain crosses from frame k-1's value to frame k's over the frame's
    first LEVEL_FADE samples (g_{-1} = 0), so it is causal and streams with one frame of
    state. No parameters."""

    MAX_GAIN = 1e3

    def __init__(self, hop_length: int) -> None:
        super().__init__()
        self.hop_length = hop_length
        fade = min(LEVEL_FADE, hop_length)
        ramp = torch.ones(hop_length)
        ramp[:fade] = torch.arange(1, fade + 1, dtype=torch.float32) / fade
        self.register_buffer("ramp", ramp, persistent=False)

    def forward(self, level: Tensor, audio: Tensor, state: StreamState | None = None) -> Tensor:
        b, c, t = audio.shape
        hop = self.hop_length
        frames = audio.reshape(b, c, t // hop, hop)
        rms = frames[:, :1].pow(2).mean(-1).sqrt()  # (B, 1, F)
        # At most 0 dBFS RMS: a generated latent's outlier must not come out at +30 dB.
        target = level_rms(level.clamp(max=0.0))
        gains = (target / (rms + 1e-8)).clamp(max=self.MAX_GAIN)
        per_sample = ramped_frame_gains(self, gains, self.ramp, state)  # (B, 1, F, hop)
        return (frames * per_sample).reshape(b, c, t)


_STATEFUL = (
    CausalConv1d,
    CausalConvTranspose1d,
    ResidualUnit,
    EncoderBlock,
    DecoderBlock,
    DirectPathGains,
    LevelPathGains,
)


# --------------------------------------------------------------------------------------
# The VAE
# --------------------------------------------------------------------------------------


def pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """Zero-pad the last axis of ``x`` (..., T) on the right to a multiple of ``stride``."""
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    extra = (-x.shape[-1]) % stride
    return F.pad(x, (0, extra)) if extra else x


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) in nats per latent frame, as a scalar.

    mean, logvar: (B, latent_dim, F). Summed over the latent dimension, averaged over
    batch and frames. (Stable Audio Open's bottleneck sums the same terms without the
    factor 1/2, so its ``kl`` is twice this value.)
    """
    if mean.shape != logvar.shape:
        raise InputError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ")
    kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)
    return kl.sum(dim=1).mean()


class FOAVAE(nn.Module):
    """Causal Oobleck VAE for AmbiX FOA (ACN W, Y, Z, X; SN3D).

    ``config`` holds the constructor arguments; a checkpoint is ``config.to_dict()`` plus
    ``state_dict()`` and :meth:`from_config` rebuilds the same network.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = OobleckEncoder(config)
        self.decoder = OobleckDecoder(config)
        self.direct_path = DirectPathGains(config.hop_length) if config.direct_path else None
        self.level_path = LevelPathGains(config.hop_length) if config.level_path else None

    @classmethod
    def from_config(cls, config: VAEConfig | Mapping[str, Any] | str) -> FOAVAE:
        """Build from a :class:`VAEConfig`, its ``to_dict()`` form, or a preset name."""
        if isinstance(config, str):
            if config not in VAE_PRESETS:
                raise InputError(
                    f"unknown VAE preset {config!r}; choose one of {sorted(VAE_PRESETS)}"
                )
            config = VAE_PRESETS[config]
        elif not isinstance(config, VAEConfig):
            config = VAEConfig.from_dict(config)
        return cls(config)

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.config.frame_rate

    def _check_audio(self, x: Tensor) -> None:
        c, hop = self.config.in_channels, self.hop_length
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[1] != c:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"FOAVAE audio must have shape (B, {c}, T), got {shape}")
        if x.shape[-1] == 0 or x.shape[-1] % hop:
            raise InputError(
                f"FOAVAE audio length {x.shape[-1]} must be a positive multiple of the total "
                f"stride {hop}; pad it with pad_to_stride(x, {hop})"
            )

    def _check_latents(self, z: Tensor) -> None:
        d = self.config.latent_dim
        if not isinstance(z, Tensor) or z.ndim != 3 or z.shape[1] != d or z.shape[-1] == 0:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise InputError(f"FOAVAE latents must have shape (B, {d}, F>0), got {shape}")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Audio (B, 4, T) -> posterior (mean, logvar), each (B, latent_dim, T / hop_length).

        T must be a multiple of ``hop_length``. The standard deviation is
        softplus(scale) + 1e-4 as in Stable Audio Open, returned as its log-variance. With
        the direct path the last DIRECTION_DIMS channels are :func:`frame_intensity` of
        ``x``, with the level path the channel before them is :func:`frame_level`; these
        measured channels have standard deviation 1e-4.
        """
        self._check_audio(x)
        h = self.encoder(x)  # (B, 2 learned_dim, F)
        mean, scale = h.chunk(2, dim=1)  # (B, learned_dim, F) each
        logvar = 2.0 * torch.log(F.softplus(scale) + _MIN_STD)
        measured = []
        if self.level_path is not None:
            measured.append(frame_level(x, self.hop_length))
        if self.direct_path is not None:
            measured.append(frame_intensity(x, self.hop_length))
        if not measured:
            return mean, logvar
        # Measured, not inferred: (near) zero posterior spread.
        values = torch.cat(measured, dim=1)
        fixed = torch.full_like(values, 2.0 * math.log(_MIN_STD))
        return torch.cat([mean, values], dim=1), torch.cat([logvar, fixed], dim=1)

    def kl(self, mean: Tensor, logvar: Tensor) -> Tensor:
        """:func:`kl_divergence` over the learned channels (the measured level and
        direction channels are not regularised towards N(0, 1))."""
        d = self.config.learned_dim
        return kl_divergence(mean[:, :d], logvar[:, :d])

    @staticmethod
    def sample(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw mean + exp(logvar / 2) * eps, eps ~ N(0, 1); shape of ``mean``."""
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * eps

    def fold_weight_norm(self) -> FOAVAE:
        """Prepare for inference, in place: fold each convolution's weight normalisation
        into a plain weight and freeze the transposed convolutions' polyphase weights.
        Outputs stay bit for bit the same; a streamed patch (4 frames) of the tiny preset
        decodes about a fifth faster on one CPU thread (16.0 to 12.1 ms), as neither is
        recomputed per call any more. The folded state dict has plain ``weight`` keys,
        which bundles do not load: fold an instance built to serve (``Bundle.build`` gives
        a fresh one), not one that trains or is saved, nor a ``copy.deepcopy`` of a
        parametrized model (the copies share torch's parametrized classes, so folding one
        breaks the other). Idempotent; returns self."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        for module in self.modules():
            if isinstance(module, CausalConvTranspose1d):
                module.freeze_polyphase()
        return self

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, latent_dim, F) -> audio (B, 4, F * hop_length), causal."""
        self._check_latents(z)
        return self._decode(z)

    def _decode(self, z: Tensor, state: StreamState | None = None) -> Tensor:
        """Convolutional decoder output (it sees every latent channel, the measured ones
        too), scaled frame by frame to the level channel with the level path. With the
        direct path the dipoles are gains * W plus the decoder's dipole outputs with their
        part correlated with W removed frame by frame (:func:`decorrelate_frames`): the
        learned dipoles add diffuse energy and per-band detail, but the broadband
        direction of every frame is the measured one."""
        audio = self.decoder(z, state)
        if self.level_path is not None:
            d = self.config.learned_dim
            audio = self.level_path(z[:, d : d + 1], audio, state)
        if self.direct_path is None:
            return audio
        gains = self.direct_path(z[:, -DIRECTION_DIMS:], state)  # (B, 3, T): Y, Z, X
        w = audio[:, :1]
        residual = decorrelate_frames(audio[:, 1:], w, self.hop_length)
        return torch.cat([w, residual + gains * w], dim=1)

    def forward(
        self, x: Tensor, sample_posterior: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, 4, T) -> (recon (B, 4, T), mean, logvar (B, latent_dim, T / hop_length)).

        The decoder gets a posterior sample when ``sample_posterior`` is true, else the mean;
        None means "sample while training, use the mean in eval mode".
        """
        mean, logvar = self.encode(x)
        if sample_posterior is None:
            sample_posterior = self.training
        z = self.sample(mean, logvar) if sample_posterior else mean
        return self._decode(z), mean, logvar


# --------------------------------------------------------------------------------------
# Streaming decoder
# --------------------------------------------------------------------------------------


class StreamingDecoder:
    """Decodes latents a chunk at a time with the FOA-VAE's causal decoder.

    The state (:class:`StreamState`: each causal convolution's left context) lives in this
    object, not in the network, so one model serves many streams. Feeding the chunks of a
    latent sequence in order gives the offline ``vae.decode`` of the whole sequence (to
    float rounding), with no latency beyond the chunk itself. Runs without autograd.
    """

    def __init__(self, vae: FOAVAE) -> None:
        self.vae = vae
        self.state = StreamState()

    def reset(self) -> None:
        """Start a new stream (silence before the next chunk)."""
        self.state = StreamState()

    @property
    def frames(self) -> int:
        """Latent frames decoded since the last reset."""
        return self.state.frames

    def decode_chunk(self, z_chunk: Tensor) -> Tensor:
        """z_chunk (B, latent_dim, F) -> audio (B, 4, F * hop_length) continuing the stream.

        F is typically 4 (one generator patch) but any F >= 1 works; B must stay the same
        until :meth:`reset`.
        """
        self.vae._check_latents(z_chunk)
        cached = next(iter(self.state.caches.values()), None)
        if cached is not None and cached.shape[0] != z_chunk.shape[0]:
            raise InputError(
                f"stream batch size changed from {cached.shape[0]} to {z_chunk.shape[0]}; "
                "call reset() to start a new stream"
            )
        with torch.no_grad(), parametrize.cached():
            audio = self.vae._decode(z_chunk, self.state)
        self.state.frames += z_chunk.shape[-1]
        return audio


# --------------------------------------------------------------------------------------
# Initialisation from Stable Audio Open
# --------------------------------------------------------------------------------------


@dataclass
class SAOLoadReport:
    """What :func:`load_stable_audio_open` did, by FOAVAE parameter name.

    loaded:  parameters copied unchanged (e.g. ``encoder.layers.1.layers.0.layers.1.weight``).
    adapted: parameters copied with the 2 -> 4 channel adaptation.
    skipped: source key -> reason it was not used (not Oobleck, unknown name, shape).
    missing: FOAVAE parameters that kept their fresh initialisation.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


_OOBLECK_KEY = re.compile(r"(?:^|\.)((?:en|de)coder\.layers\..+)$")
_WN_SUFFIXES = {
    ".weight_g": ("g", ".weight"),
    ".weight_v": ("v", ".weight"),
    ".parametrizations.weight.original0": ("g", ".weight"),
    ".parametrizations.weight.original1": ("v", ".weight"),
}


def _sao_tensors(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Source tensors by FOAVAE-style name with weight norm folded in, plus skipped keys.

    Returns ({"encoder.layers.0.weight": effective weight, ...}, {source key: reason}).
    """
    tensors: dict[str, Tensor] = {}
    pairs: dict[str, dict[str, tuple[str, Tensor]]] = {}
    skipped: dict[str, str] = {}
    for key, value in state_dict.items():
        match = _OOBLECK_KEY.search(key)
        if match is None or not isinstance(value, Tensor):
            skipped[key] = "not an Oobleck encoder.layers.N / decoder.layers.N tensor"
            continue
        name = match.group(1)
        for suffix, (part, replacement) in _WN_SUFFIXES.items():
            if name.endswith(suffix):
                target = name[: -len(suffix)] + replacement
                pairs.setdefault(target, {})[part] = (key, value)
                break
        else:
            tensors[name] = value
    for target, parts in pairs.items():
        if set(parts) != {"g", "v"}:
            ((key, _),) = parts.values()
            skipped[key] = "weight-norm magnitude and direction are not both present"
            continue
        g, v = parts["g"][1].float(), parts["v"][1].float()
        norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
        tensors[target] = g * v / norm
    return tensors, skipped


def _target_parameters(vae: FOAVAE) -> dict[str, tuple[nn.Module, str]]:
    """FOAVAE parameter names (weight norm folded: ``...weight``) -> (module, attribute)."""
    targets: dict[str, tuple[nn.Module, str]] = {}
    for name, module in vae.named_modules():
        if isinstance(module, CausalConv1d | CausalConvTranspose1d):
            targets[f"{name}.weight"] = (module, "weight")
            if module.bias is not None:
                targets[f"{name}.bias"] = (module, "bias")
        elif isinstance(module, SnakeBeta):
            targets[f"{name}.alpha"] = (module, "alpha")
            targets[f"{name}.beta"] = (module, "beta")
    return targets


def _spread_stereo(w: Tensor, axis: int, mid: float, scale: float, gen: torch.Generator) -> Tensor:
    """Stereo weights (2 along ``axis``: L, R) -> AmbiX weights (4 along ``axis``).

    W = mid (L + R), Y = mid (L - R); Z and X get small random values (``scale`` times
    the RMS of ``w``) so their rows are not zero (weight norm needs a non-zero direction).
    """
    left, right = w.unbind(axis)
    noise_std = scale * float(w.pow(2).mean().sqrt())
    z, x = (torch.randn(left.shape, generator=gen) * noise_std for _ in range(2))
    return torch.stack([mid * (left + right), mid * (left - right), z, x], dim=axis)


def load_stable_audio_open(
    vae: FOAVAE, state_dict: Mapping[str, Tensor], seed: int = 0, dipole_scale: float = 1e-3
) -> SAOLoadReport:
    """Initialise ``vae`` from a user's Stable Audio Open (Oobleck, stereo) VAE weights.

    ``state_dict`` is a flat name -> tensor mapping, e.g. ``safetensors.torch.load_file``
    of the SAO checkpoint, or ``torch.load(path, weights_only=True)["state_dict"]``.
    Expected key pattern (any prefix such as ``pretransform.model.`` is ignored):
    ``encoder.layers.N...`` and ``decoder.layers.N...`` with weight-normalised convs as
    ``.weight_g`` / ``.weight_v`` (or plain ``.weight``), plus ``.bias``, and SnakeBeta
    ``.alpha`` / ``.beta`` -- the module layout of stable-audio-tools' Oobleck encoder and
    decoder, which this file mirrors index for index.

    Tensors whose name and shape match are copied. The stereo ends are adapted to AmbiX
    following the pseudo-FOA convention W = L + R, Y = L - R (``foa.encode.pseudo_foa``):
    the encoder's input conv gets W = (L + R) / 2 and Y = (L - R) / 2 so that a pseudo-FOA
    input reproduces the stereo model's response to (L, R) exactly; the decoder's output
    conv gets W = L + R and Y = L - R. Z and X get small random weights (``dipole_scale``
    times the RMS of the copied weight, seeded by ``seed``). Everything else that does not
    match (e.g. the latent convs when latent_dim differs from SAO's 64, DiT weights of a
    full model checkpoint) is skipped and listed (with the direct path, the latent
    convolutions differ from SAO's and start fresh). Note SAO's convs are centred and ours
    are causal: the copied weights are a starting point that needs fine-tuning, not a
    drop-in.
    """
    sources, skipped = _sao_tensors(state_dict)
    targets = _target_parameters(vae)
    first_conv = "encoder.layers.0.weight"
    last_conv = f"decoder.layers.{len(vae.decoder.layers) - 1}.weight"
    gen = torch.Generator().manual_seed(seed)
    report = SAOLoadReport(skipped=skipped)
    done: set[str] = set()
    for name, value in sources.items():
        if name not in targets:
            report.skipped[name] = "no parameter of this name in FOAVAE"
            continue
        module, attr = targets[name]
        current = getattr(module, attr)
        value = value.detach().float()
        adapted = False
        if value.shape != current.shape:
            both_3d = value.ndim == current.ndim == 3
            stereo_in = both_3d and name == first_conv and value.shape[1] == 2
            stereo_out = both_3d and name == last_conv and value.shape[0] == 2
            if stereo_in and current.shape == (value.shape[0], 4, value.shape[2]):
                value = _spread_stereo(value, 1, 0.5, dipole_scale, gen)
            elif stereo_out and current.shape == (4, *value.shape[1:]):
                value = _spread_stereo(value, 0, 1.0, dipole_scale, gen)
            else:
                report.skipped[name] = (
                    f"shape {tuple(value.shape)} != FOAVAE {tuple(current.shape)}"
                )
                continue
            adapted = True
        _assign(module, attr, value.to(device=current.device, dtype=current.dtype))
        (report.adapted if adapted else report.loaded).append(name)
        done.add(name)
    report.missing = [name for name in targets if name not in done]
    return report


def _assign(module: nn.Module, attr: str, value: Tensor) -> None:
    """Set a parameter; a weight-normalised ``weight`` is re-split into magnitude/direction."""
    with torch.no_grad():
        if attr == "weight" and parametrize.is_parametrized(module, "weight"):
            module.weight = value.clone()  # right_inverse computes (g, v)
        else:
            getattr(module, attr).copy_(value)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())
