"""The video direction cue: where the picture says the sound is, patch by patch.

A small supervised network over the equirectangular frames that condition the generator's
patches (one frame per patch, :func:`swansphere.generation.conditioning.patch_frame_index`).
Every cell of an (H/8, W/8) grid gets a non-negative power from what the cell shows now,
how it departs from the mean of the last ``window`` patch frames (what moves or pulses)
and how it changed since the previous patch frame (or, with ``change_from = "frame"``,
since the last frame that differs from it), filtered causally over the last
``taps`` patches per cell (a pulse's rhythm; with ``long_taps``, also a longer filter of
a per-cell MLP of the features: how the cell pulses over seconds; with ``pulse_taps``,
also the pulse reader: each cell's reading of whether an object stands there and how
strongly it pulses, whose last ``pulse_taps`` patches a small causal network weighs, so
that flat bursts and an envelope's swells can be told apart). With ``azimuth_padding =
"circular"`` the convolutions see across the panorama's seam (azimuth +-180 deg) as
anywhere else; with "zeros" they see a wall there. The cue's intensity
estimate of a patch is the sum over the cells of power times the cell centre's unit
direction: a vector (x, y, z) on the AmbiX axes (x front, y left, z up) whose length is
the predicted loudness relative to the clip, as the reference's mean of W (X, Y, Z) over
the patch divided by the clip's mean W^2 (:func:`patch_intensity_targets`), which is
what training fits.

With ``text_dim`` > 0 the cue also reads the patch's caption as one sentence embedding
(:func:`swansphere.models.text.pooled_caption`, unit length; a zero row means no caption
and is replaced by a learnt null embedding). The caption scales and shifts the hidden
units of every cell's power head (FiLM) and adds a caption-predicted direction's dot
product with the cell's direction to its power logit. The procedural corpus draws silent
look-alike objects of other classes than the sources, so the caption's class names tell
the cue which visible object sounds, and its region words where. Both caption layers
start at zero, so a cue trained without captions can start one that reads them (the
direction stage's ``init_from``) and behaves exactly as it did.

The generator's sampler can aim ``direction_lock`` at this cue instead of its LM's
direction head (``GeneratorConfig.direction_source = "video"``): the sum of the cue's
estimates over the last ``smoothing`` patches gives the direction each patch with a
frame is turned to. A cue without ``text_dim`` does not read captions, so a captioned
patch then keeps the LM's estimate (the LM reads the caption).
:class:`DirectionTracker` computes it patch by patch, as a stream and offline generation
both do; :meth:`VideoDirectionCue.forward` computes the same for whole sequences at once
(training), equal up to float rounding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from swansphere.errors import InputError
from swansphere.foa.panorama import grid_directions
from swansphere.models.config import config_from_dict

#: Input channels per frame: the frame, its departure from the window mean, |change|.
CUE_INPUT_CHANNELS = 9
#: The cell grid is the frame downsampled by this factor (three stride-2 convolutions).
CELL_STRIDE = 8
#: What a frame's change is measured from (:attr:`VideoDirectionConfig.change_from`).
CHANGE_REFERENCES = ("patch", "frame")
#: What the cell convolutions see beyond the panorama's left and right edges
#: (:attr:`VideoDirectionConfig.azimuth_padding`).
AZIMUTH_PADDINGS = ("zeros", "circular")
#: Cells of columns the convolutions reach to either side of a cell (15 pixels: two
#: cells), and so the wrap that circular padding adds at each edge.
SEAM_CELLS = 2
#: What the pulse reader reads per cell and patch: an object's presence and its pulse level.
PULSE_READINGS = ("presence", "level")
#: Hidden width of the pulse reader's network over its window.
PULSE_HIDDEN = 16


@dataclass(frozen=True)
class VideoDirectionConfig:
    """The cue network and the patch timing it was trained for."""

    frame_height: int = 64  # frames are resized to this (the tiny SVAC canvas)
    frame_width: int = 128
    dim: int = 32  # channels of the per-cell features
    window: int = 22  # patch frames (4.1 s) whose mean each frame departs from, its own included
    taps: int = 11  # causal filter length over patches (2 s), per cell
    smoothing: int = 5  # patches (0.93 s) whose estimates the lock direction sums
    patch_seconds: float = 4 * 1024 / 22050  # the tiny generator's patch (4 latent frames)
    text_dim: int = 0  # width of the caption embedding the cue reads (0: it reads none)
    # Causal window (patches) of the long filter: a per-cell MLP of the features, then a
    # filter over that many patches, added to the short one's output (0: none).
    long_taps: int = 0
    # What a frame's |change| is measured from: "patch", the previous patch's frame (a
    # frame that conditions several patches, as 4 fps video does at 5.4 patches a second,
    # shows no change at its repeats); "frame", the last patch frame that differs from it
    # (a repeat keeps the change its frame arrived with, so a cell shows no change only
    # when its picture did not change).
    change_from: str = "patch"
    # Causal window (patches) of the pulse reader (0: none): per cell and patch, a reading
    # (sigmoid) of whether an object stands there and how strongly it pulses (what
    # training's pulse maps fit), then a small network over the last that many patches of
    # the readings and of the level's change since the last different frame, whose output
    # joins the cell's power logit (zero-started).
    pulse_taps: int = 0
    # What the cell convolutions see past the frame's left and right edges (azimuth
    # +-180 deg, straight behind): "zeros", a wall, as the cues before it were trained;
    # "circular", the other edge, since an equirectangular panorama wraps there, so an
    # object straddling the seam is seen whole and turning the panorama by a whole
    # cell turns the cell powers with it.
    azimuth_padding: str = "zeros"

    def __post_init__(self) -> None:
        ints = ("frame_height", "frame_width", "dim", "window", "taps", "smoothing")
        bad = [n for n in ints if not isinstance(getattr(self, n), int) or getattr(self, n) < 1]
        bad += [
            n for n in ("text_dim", "long_taps", "pulse_taps")
            if not isinstance(getattr(self, n), int) or getattr(self, n) < 0
        ]  # fmt: skip
        if bad:
            raise InputError(
                "VideoDirectionConfig fields must be positive integers (text_dim, "
                "long_taps and pulse_taps may be 0): " + ", ".join(bad)
            )
        if self.frame_height % CELL_STRIDE or self.frame_width % CELL_STRIDE:
            raise InputError(
                f"VideoDirectionConfig frame size must be a multiple of {CELL_STRIDE}, got "
                f"{self.frame_height} x {self.frame_width}"
            )
        if self.change_from not in CHANGE_REFERENCES:
            raise InputError(
                f"VideoDirectionConfig.change_from must be one of {', '.join(CHANGE_REFERENCES)}"
                f", got {self.change_from!r}"
            )
        if self.azimuth_padding not in AZIMUTH_PADDINGS:
            raise InputError(
                "VideoDirectionConfig.azimuth_padding must be one of "
                f"{', '.join(AZIMUTH_PADDINGS)}, got {self.azimuth_padding!r}"
            )
        if self.azimuth_padding == "circular" and self.frame_width < SEAM_CELLS * CELL_STRIDE:
            raise InputError(
                "VideoDirectionConfig.azimuth_padding 'circular' needs frame_width >= "
                f"{SEAM_CELLS * CELL_STRIDE}, got {self.frame_width}"
            )
        if not (isinstance(self.patch_seconds, (int, float)) and self.patch_seconds > 0):
            raise InputError(
                f"VideoDirectionConfig.patch_seconds must be positive, got {self.patch_seconds!r}"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the cell grid."""
        return self.frame_height // CELL_STRIDE, self.frame_width // CELL_STRIDE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoDirectionConfig:
        return config_from_dict(cls, data)


#: MiniLM's sentence embedding width: the tiny cue reads the captions the LM reads.
_MINILM_DIM = 384

DIRECTION_PRESETS: dict[str, VideoDirectionConfig] = {
    "tiny": VideoDirectionConfig(text_dim=_MINILM_DIM)
}


def patch_intensity_targets(foa: np.ndarray, patch_samples: int, n_patches: int) -> np.ndarray:
    """Training targets (n_patches, 3): for AmbiX FOA (4, T) (ACN W, Y, Z, X; SN3D), the
    mean over each patch's samples of W (X, Y, Z), divided by the clip's mean W^2; a patch
    past the end of the audio is zero. Their sum points where the clip-level direction
    (:func:`swansphere.foa.doa.clip_direction`) points."""
    a = np.asarray(foa, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != 4:
        raise InputError(f"FOA must be (4, T) in ACN order, got shape {a.shape}")
    if patch_samples < 1 or n_patches < 1:
        raise InputError("patch_samples and n_patches must be positive")
    power = float(np.mean(a[0] ** 2))
    if not power > 0:
        raise InputError("the FOA is silent: it has no direction to learn")
    out = np.zeros((n_patches, 3))
    for p in range(n_patches):
        seg = a[:, p * patch_samples : (p + 1) * patch_samples]
        if seg.shape[1]:
            out[p] = np.mean(seg[0] * seg[[3, 1, 2]], axis=1) / power
    return out


def causal_conv(conv: nn.Conv1d, x: torch.Tensor, last: bool = False) -> torch.Tensor:
    """``conv`` over sequences (N, C, P) as a causal filter: patches before the first count
    as zeros. ``last``: only the latest patch's output (N, C', 1), from its window alone."""
    k = conv.kernel_size[0]
    if last:
        x = x[..., -k:]
        return conv(F.pad(x, (k - x.shape[-1], 0)))
    return conv(F.pad(x, (k - 1, 0)))


def carry_repeated_change(change: torch.Tensor, repeated: torch.Tensor) -> torch.Tensor:
    """Per-patch |change| (B, P, ...) and whether each patch's frame repeats the previous
    patch's (B, P) bool -> the change with every repeat given the change of the patch its
    frame first conditioned (the last one not repeated; patch 0 counts as not repeated)."""
    patches = torch.arange(change.shape[1], device=change.device).expand(repeated.shape)
    first = torch.where(repeated, torch.zeros_like(patches), patches).cummax(dim=1).values
    index = first.reshape(*first.shape, *([1] * (change.ndim - 2))).expand_as(change)
    return change.gather(1, index)


class VideoDirectionCue(nn.Module):
    """Patch frames (B, P, 3, H, W) -> intensity estimates (B, P, 3) (module docstring)."""

    def __init__(self, config: VideoDirectionConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VideoDirectionConfig()
        d = config.dim
        self.cells = nn.Sequential(
            nn.Conv2d(CUE_INPUT_CHANNELS, d, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d, d, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d, d, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(d, d, 3, padding=1), nn.GELU(),
        )  # fmt: skip
        self.temporal = nn.Conv1d(d, d, config.taps)  # left-padded: causal
        if config.long_taps:
            # Averages of new per-frame features over a longer past: how a cell's picture
            # pulses over seconds (a look-alike's flat bursts, a source's envelope), which
            # a linear filter of the features cannot weigh. Its filter starts at zero, so a
            # cue without it can start one with it and behaves exactly as it did.
            self.long_pointwise = nn.Sequential(nn.Conv1d(d, d, 1), nn.GELU())
            self.long_filter = nn.Conv1d(d, d, config.long_taps)  # left-padded: causal
            nn.init.zeros_(self.long_filter.weight)
            nn.init.zeros_(self.long_filter.bias)
        if config.pulse_taps:
            # Readings that training fits to where objects stand and how they pulse (the
            # stage's pulse maps), and a network over their last pulse_taps patches: the
            # share of flat steps, of pauses, of swells, which a linear filter cannot count.
            # Its output layer starts at zero, so a cue without it starts one unchanged.
            h = PULSE_HIDDEN
            self.pulse_head = nn.Conv1d(d, len(PULSE_READINGS), 1)
            self.pulse_pointwise = nn.Sequential(nn.Conv1d(3, h, 1), nn.GELU())
            self.pulse_filter = nn.Conv1d(h, h, config.pulse_taps)  # left-padded: causal
            self.pulse_out = nn.Sequential(nn.GELU(), nn.Conv1d(h, 1, 1))
            nn.init.zeros_(self.pulse_out[1].weight)
            nn.init.zeros_(self.pulse_out[1].bias)
        self.power = nn.Sequential(nn.GELU(), nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))
        directions = torch.from_numpy(grid_directions(*config.grid))  # (G, 3) x, y, z
        self.register_buffer("directions", directions, persistent=False)
        if config.text_dim:
            # Per caption: a scale and a shift of the power head's d hidden units, and a
            # direction (x, y, z) whose dot product with a cell's direction joins its logit.
            self.caption = nn.Linear(config.text_dim, 2 * d + 3)
            nn.init.zeros_(self.caption.weight)
            nn.init.zeros_(self.caption.bias)
            self.null_caption = nn.Parameter(torch.zeros(config.text_dim))

    def caption_terms(
        self, text: torch.Tensor | None, lead: tuple[int, ...]
    ) -> torch.Tensor | None:
        """Caption embeddings (*lead, text_dim), or (text_dim,) / (B, text_dim) broadcast
        over ``lead``; zero rows (or None) mean no caption -> the power head's caption
        terms (*lead, 2 dim + 3); None for a cue without ``text_dim`` (it reads no caption)."""
        dim = self.config.text_dim
        if not dim:
            return None
        if text is None:
            text = self.null_caption.expand(*lead, dim)
        else:
            if text.shape[-1] != dim:
                raise InputError(
                    f"the cue reads {dim}-d caption embeddings, got {tuple(text.shape)}"
                )
            text = text.to(self.null_caption)
            while text.ndim < len(lead) + 1:
                text = text.unsqueeze(-2)
            text = text.expand(*lead, dim)
            absent = text.abs().sum(-1, keepdim=True) == 0
            text = torch.where(absent, self.null_caption.expand_as(text), text)
        return self.caption(text)

    def frames(self, video: torch.Tensor) -> torch.Tensor:
        """(..., 3, h, w) uint8 RGB (or float in [0, 1]) -> float (..., 3, H, W) in [0, 1] at
        the config's size (bilinear, antialiased, as panorama canvases are made)."""
        if video.ndim < 3 or video.shape[-3] != 3:
            raise InputError(f"frames must be (..., 3, H, W) RGB, got {tuple(video.shape)}")
        x = video.float() / 255.0 if video.dtype == torch.uint8 else video.float()
        size = (self.config.frame_height, self.config.frame_width)
        if tuple(x.shape[-2:]) != size:
            lead = x.shape[:-3]
            x = F.interpolate(
                x.reshape(-1, *x.shape[-3:]), size=size, mode="bilinear",
                align_corners=False, antialias=True,
            ).reshape(*lead, 3, *size)  # fmt: skip
        return x

    def cell_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, 9, H, W) network inputs -> (N, dim, G) per-cell features, raster order."""
        # Channels-last inputs take oneDNN's faster convolutions on CPU (a training step
        # about a quarter shorter); the weights keep their layout, so checkpoints do too.
        if self.config.azimuth_padding == "circular":
            # Each edge gets the other's SEAM_CELLS cells of columns, and the cells over
            # them are dropped: the rest saw only the panorama, wrapped, never the zero
            # padding. Rows keep their zeros (the poles). One wider pass of the ordinary
            # convolutions replaces padding before each of them, with which training steps
            # took about 1.5 times as long.
            wrap = SEAM_CELLS * CELL_STRIDE
            x = torch.cat([inputs[..., -wrap:], inputs, inputs[..., :wrap]], dim=-1)
            x = self.cells(x.contiguous(memory_format=torch.channels_last))
            return x[..., SEAM_CELLS:-SEAM_CELLS].flatten(2)
        return self.cells(inputs.contiguous(memory_format=torch.channels_last)).flatten(2)

    def filtered_features(self, seq: torch.Tensor, last: bool = False) -> torch.Tensor:
        """Per-cell feature sequences (N, dim, P), patch order -> their causal filtering
        (N, dim, P): the short filter over ``taps`` patches plus, with ``long_taps``, the
        long filter of their pointwise MLP. Patches before the first count as zeros.
        ``last``: only the latest patch's output (N, dim, 1), from its windows alone (the
        tracker's push, which would otherwise filter every stored patch again)."""

        filtered = causal_conv(self.temporal, seq, last)
        if self.config.long_taps:
            recent = seq[..., -self.config.long_taps :] if last else seq
            filtered = filtered + causal_conv(self.long_filter, self.long_pointwise(recent), last)
        return filtered

    def pulse_readings(self, seq: torch.Tensor) -> torch.Tensor:
        """Per-cell feature sequences (N, dim, P) -> the pulse reader's readings (N, 2, P)
        in [0, 1]: an object's presence and its pulse level (:data:`PULSE_READINGS`)."""
        return torch.sigmoid(self.pulse_head(seq))

    def pulse_logits(
        self, readings: torch.Tensor, step: torch.Tensor, last: bool = False
    ) -> torch.Tensor:
        """Readings (N, 2, P) and the level's |change| since the last different frame
        (N, 1, P) -> the pulse reader's power logits (N, 1, P) (``last``: (N, 1, 1), the
        latest patch's from its window alone)."""
        x = torch.cat([readings, step], dim=1)
        if last:
            x = x[..., -self.config.pulse_taps :]
        hidden = causal_conv(self.pulse_filter, self.pulse_pointwise(x), last)
        return self.pulse_out(hidden)

    def cell_power(
        self,
        features: torch.Tensor,
        filtered: torch.Tensor,
        caption: torch.Tensor | None = None,
        pulse: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-cell features and their causal filtering (..., G, dim), the caption terms
        (..., 2 dim + 3) of :meth:`caption_terms` (None: no caption layers) and the pulse
        reader's logits (..., G) (None: no reader) -> powers (..., G) >= 0."""
        hidden = self.power[1](self.power[0](torch.cat([features, filtered], dim=-1)))
        logit = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        if caption is not None:
            d = self.config.dim
            scale, shift = caption[..., None, :d], caption[..., None, d : 2 * d]
            logit = caption[..., 2 * d :] @ self.directions.T  # (..., G)
            hidden = hidden * (1 + scale) + shift
        if pulse is not None:
            logit = logit + pulse
        return F.softplus(self.power[3](self.power[2](hidden)).squeeze(-1) + logit)

    def forward(
        self,
        video: torch.Tensor,
        text: torch.Tensor | None = None,
        with_cells: bool = False,
        with_pulse: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Intensity estimates (B, P, 3) of the patch frames (B, P, 3, h, w), patch order;
        ``text``: the caption embedding of each clip (B, text_dim) or patch (B, P, text_dim),
        zero rows (or None) for none (:meth:`caption_terms`). ``with_cells``: also the
        per-cell powers (B, P, G) they sum (:meth:`cell_powers`; training's source maps);
        ``with_pulse``, with it: also the pulse reader's readings (B, P, G, 2) (None for a
        cue without ``pulse_taps``; training's pulse maps)."""
        power, readings = self.cell_powers(video, text, with_pulse=True)
        estimate = power @ self.directions
        if not with_cells:
            return estimate
        return (estimate, power, readings) if with_pulse else (estimate, power)

    def cell_powers(
        self, video: torch.Tensor, text: torch.Tensor | None = None, with_pulse: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Per-cell powers (B, P, G) >= 0, cells in raster order (:attr:`directions`), of
        the patch frames (B, P, 3, h, w): what :meth:`forward` sums into intensities.
        ``with_pulse``: also the pulse reader's readings (B, P, G, 2) (None without one)."""
        if video.ndim != 5:
            raise InputError(f"patch frames must be (B, P, 3, H, W), got {tuple(video.shape)}")
        x = self.frames(video)
        batch, patches = x.shape[:2]
        # The mean of each patch frame's window (its own included), as a sum of shifted
        # copies rather than a cumulative sum, whose rounding grows with the clip.
        total = torch.zeros_like(x)
        for k in range(min(self.config.window, patches)):
            total[:, k:] += x[:, : patches - k]
        count = torch.arange(1, patches + 1, device=x.device).clamp_max(self.config.window)
        mean = total / count.to(x.dtype)[:, None, None, None]
        prev = torch.cat([x[:, :1], x[:, :-1]], dim=1)
        change = (x - prev).abs()
        repeated = (x == prev).flatten(2).all(-1)  # (B, P): the frame of the patch before
        if self.config.change_from == "frame":
            change = carry_repeated_change(change, repeated)
        inputs = torch.cat([x, x - mean, change], dim=2)
        feats = self.cell_features(inputs.flatten(0, 1))  # (B P, d, G)
        d, g = feats.shape[1:]
        seq = feats.reshape(batch, patches, d, g).permute(0, 3, 2, 1).reshape(batch * g, d, patches)
        filtered = self.filtered_features(seq)

        def per_cell(t: torch.Tensor) -> torch.Tensor:  # (B G, C, P) -> (B, P, G, C)
            return t.reshape(batch, g, t.shape[1], patches).permute(0, 3, 1, 2)

        caption = self.caption_terms(text, (batch, patches))
        pulse = readings = None
        if self.config.pulse_taps:
            readings = self.pulse_readings(seq)  # (B G, 2, P)
            level = readings[:, 1:]
            step = (level - torch.cat([level[..., :1], level[..., :-1]], dim=-1)).abs()
            # A repeated frame shows the step its frame arrived with (carry_repeated_change,
            # patch-major), not the near-zero drift of its window mean.
            step = carry_repeated_change(
                step.transpose(1, 2), repeated.repeat_interleave(g, dim=0)
            ).transpose(1, 2)
            pulse = per_cell(self.pulse_logits(readings, step))[..., 0]  # (B, P, G)
            readings = per_cell(readings)
        power = self.cell_power(per_cell(seq), per_cell(filtered), caption, pulse)
        return (power, readings) if with_pulse else power


class DirectionTracker:
    """The cue patch by patch: :meth:`push` takes the frame conditioning the next patch
    (3, h, w) and that patch's caption embedding (text_dim,) (None or zeros: none) and
    returns the patch's intensity estimate (3,); :attr:`direction` is the
    sum of the last ``smoothing`` estimates (where the lock turns the patch). A stream and
    offline generation both push every patch's frame, so they agree exactly."""

    def __init__(self, cue: VideoDirectionCue) -> None:
        self.cue = cue
        c = cue.config
        self.frames: deque[torch.Tensor] = deque(maxlen=c.window)
        self.features: deque[torch.Tensor] = deque(maxlen=max(c.taps, c.long_taps))
        self.estimates: deque[torch.Tensor] = deque(maxlen=c.smoothing)
        # The last frame's |change| (change_from "frame": a repeat keeps it); a list of at
        # most one, so that state and restore treat it as the other stores.
        self.change: deque[torch.Tensor] = deque(maxlen=1)
        # The pulse reader's window: per patch (G, 3), the readings and the level's step.
        self.pulse: deque[torch.Tensor] = deque(maxlen=max(c.pulse_taps, 1))

    @torch.inference_mode()
    def push(self, frame: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if frame.ndim != 3:
            raise InputError(f"the tracker takes one frame (3, H, W), got {tuple(frame.shape)}")
        x = self.cue.frames(frame)
        prev = self.frames[-1] if self.frames else x
        self.frames.append(x)
        mean = torch.stack(list(self.frames)).mean(dim=0)
        change = (x - prev).abs()
        repeated = torch.equal(x, prev)
        if self.cue.config.change_from == "frame" and self.change and repeated:
            change = self.change[-1]
        self.change.append(change)
        inputs = torch.cat([x, x - mean, change])[None]
        feats = self.cue.cell_features(inputs)[0]  # (d, G)
        self.features.append(feats)
        # The features of the filters' windows, in patch order (G, d, n).
        seq = torch.stack(list(self.features), dim=-1).permute(1, 0, 2)
        filtered = self.cue.filtered_features(seq, last=True)[..., -1]  # (G, d)
        pulse = None
        if self.cue.config.pulse_taps:
            readings = self.cue.pulse_readings(feats.T[:, :, None])[..., 0]  # (G, 2)
            if not self.pulse:
                step = torch.zeros_like(readings[:, 1:])
            elif repeated:
                step = self.pulse[-1][:, 2:]
            else:
                step = (readings[:, 1:] - self.pulse[-1][:, 1:2]).abs()
            self.pulse.append(torch.cat([readings, step], dim=1))
            window = torch.stack(list(self.pulse), dim=-1)  # (G, 3, n)
            pulse = self.cue.pulse_logits(window[:, :2], window[:, 2:], last=True)[:, 0, -1]
        caption = self.cue.caption_terms(text, ())
        power = self.cue.cell_power(feats.T, filtered, caption, pulse)  # (G,)
        estimate = power @ self.cue.directions
        self.estimates.append(estimate)
        return estimate

    @property
    def direction(self) -> torch.Tensor:
        """The sum (3,) of the last ``smoothing`` estimates (zeros before the first push)."""
        if not self.estimates:
            return torch.zeros(3, device=self.cue.directions.device)
        return torch.stack(list(self.estimates)).sum(dim=0)

    def state(self) -> tuple[list[torch.Tensor], ...]:
        """What :meth:`restore` needs to undo later pushes."""
        stores = (self.frames, self.features, self.estimates, self.change, self.pulse)
        return tuple(list(store) for store in stores)

    def restore(self, state: tuple[list[torch.Tensor], ...]) -> None:
        stores = (self.frames, self.features, self.estimates, self.change, self.pulse)
        for store, saved in zip(stores, state, strict=True):
            store.clear()
            store.extend(saved)


__all__ = [
    "AZIMUTH_PADDINGS",
    "CHANGE_REFERENCES",
    "DIRECTION_PRESETS",
    "PULSE_READINGS",
    "DirectionTracker",
    "VideoDirectionConfig",
    "VideoDirectionCue",
    "carry_repeated_change",
    "causal_conv",
    "patch_intensity_targets",
]
