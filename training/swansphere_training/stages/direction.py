"""The video direction cue's training stage (:mod:`swansphere.models.direction`): a
supervised fit of each patch's reference intensity from the patch frames the generator
sees, so that ``direction_lock`` can aim where the picture says the sound is.

With ``cell_weight`` > 0 a second term fits the cue's per-cell powers, as shares, to a map
of where the sounding sources are (:func:`source_cell_targets`, from a procedural clip's
clip.json): the intensity says only where the sum points, the map says which object
sounds and which look-alike is silent, which is what the caption layers must learn.

With ``pulse_weight`` > 0 (a cue with ``pulse_taps``) a third term fits the pulse reader's
readings to where every object in the picture stands, sounding or not, and how strongly it
pulses at each patch's frame (:func:`object_pulse_maps`): the reader learns to see the
pulse, and its network over the last patches what pulse a source has."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from swansphere.errors import InputError
from swansphere.foa.panorama import grid_directions
from swansphere.foa.rotation import ypr_to_matrix
from swansphere.generation.conditioning import panorama_canvases, patch_frame_index
from swansphere.models.direction import (
    DIRECTION_PRESETS,
    VideoDirectionConfig,
    VideoDirectionCue,
    patch_intensity_targets,
)

from ..data.dataset import ClipDataset, ClipRecord, limit_heap_fragmentation
from ..evaluation.plots import plt
from .base import Stage, preset_network, warmup_cosine

LENGTH_TERMS = ("log", "share")  # what DirectionStageConfig.length_term can compare
#: What DirectionStageConfig.augment may do to the crops without a caption (crop_symmetry).
CROP_AUGMENTS = ("none", "yaw", "yaw_mirror")


@dataclass
class DirectionStageConfig:
    """What a direction-cue run trains on and how (stored in every checkpoint)."""

    data: str  # corpus root (DATA/train for training, DATA/test for evaluation)
    preset: str = "tiny"  # a key of DIRECTION_PRESETS
    seed: int = 0
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    lr_decay_steps: int = 0  # cosine decay to 0 after warm-up over this many steps (0: none)
    crop_patches: int = 40  # patches per training crop (7.4 s at the tiny patch)
    # Share of training crops shown without their caption (a cue with text_dim), so that
    # it stays a video-only cue as well.
    caption_dropout: float = 0.5
    # Weight of the source-map term (cell_loss): the cue's cell powers, as shares, against
    # where the sounding sources are (source_cell_targets, from clip.json; 0: off).
    cell_weight: float = 0.0
    # What each source's pulse is scaled to in those maps: "peak" (its loudest frame, as
    # the 15794d5 cue was trained) or "mean" (its clip mean, as the signal oracle does).
    cell_pulse: str = "peak"
    # Weight of the length term (length_loss): each patch's estimate as long, relative to
    # its clip, as its target, which is what the level lock reads (0: off; the cosine
    # terms leave the length free but for the clip term's sum).
    length_weight: float = 0.0
    # Weight of the pulse term (pulse_loss): the pulse reader's readings (a cue with
    # model.pulse_taps) against where each object stands and how it pulses (object_pulse_maps,
    # from clip.json; 0: off).
    pulse_weight: float = 0.0
    # What that term compares: "log" (length_loss: every patch's centred log length) or
    # "share" (length_share_loss: each patch's share of its clip's summed length, which
    # the level lock's running ratio turns into the patch's loudness; loud patches weigh
    # most, as they do in the clip's direction).
    length_term: str = "log"
    # What the crops shown without a caption go through (crop_symmetry): "none"; "yaw",
    # the whole scene turned about the vertical by a random whole number of cells; or
    # "yaw_mirror", that and half of them mirrored left-right. The corpus draws azimuths
    # uniformly all round, so each is another clip it could have drawn. Captioned crops
    # stay as they are: their captions name regions ("on the left").
    augment: str = "none"
    eval_clips: int = 64
    # A bundle (or PATH / models:/ URI) whose direction cue starts the run: fine-tuning,
    # e.g. annealing the shipped cue. Its network must equal this run's, or lack only its
    # caption layers (they start at zero).
    init_from: str | None = None
    # VideoDirectionConfig fields that differ from the preset's.
    model: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("cell_weight", "length_weight", "pulse_weight"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.length_term not in LENGTH_TERMS:
            raise InputError(
                f"length_term must be one of {', '.join(LENGTH_TERMS)}, got {self.length_term!r}"
            )
        if self.augment not in CROP_AUGMENTS:
            raise InputError(
                f"augment must be one of {', '.join(CROP_AUGMENTS)}, got {self.augment!r}"
            )


def network_config(stage: DirectionStageConfig | dict) -> VideoDirectionConfig:
    """The cue network of a stage config (or its checkpoint dict): the preset with the
    stage's ``model`` fields changed."""
    return preset_network(stage, DIRECTION_PRESETS, "direction")


def direction_component(source: str, setting: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The direction cue (config, weights) of bundle ``source``; InputError naming the
    ``setting`` that named it when the bundle has none."""
    from swansphere.models.bundle import load_bundle

    bundle = load_bundle(source)
    if "direction" not in bundle.components:
        raise InputError(f"{setting} {source!r}: the bundle has no direction cue")
    return bundle.component("direction")


#: Cue config fields (0: off) whose layers start at zero, with their weights' prefixes: a
#: cue without them may start one with them and behaves exactly as it did.
ZERO_STARTED_LAYERS: dict[str, tuple[str, ...]] = {
    "text_dim": ("caption.", "null_caption"),
    "long_taps": ("long_pointwise.", "long_filter."),
    "pulse_taps": ("pulse_head.", "pulse_pointwise.", "pulse_filter.", "pulse_out."),
}


#: Settings that change what the cue's network reads, not its weights: a run may set them
#: apart from its ``init_from`` cue's, and its training adapts the weights to them.
INPUT_SETTINGS = ("change_from", "azimuth_padding")


def load_initial_cue(model: VideoDirectionCue, source: str) -> None:
    """Load the direction cue of bundle ``source`` into ``model``; InputError when the
    bundle has none or its network differs from ``model``'s but for the layers of
    :data:`ZERO_STARTED_LAYERS` it lacks (they keep their zero start) and the
    :data:`INPUT_SETTINGS`."""
    config, state = direction_component(source, "init_from")
    theirs = VideoDirectionConfig.from_dict(config)
    added = {
        name: getattr(model.config, name)
        for name in ZERO_STARTED_LAYERS
        if getattr(theirs, name) == 0 and getattr(model.config, name) > 0
    }
    new_layers = [prefix for name in added for prefix in ZERO_STARTED_LAYERS[name]]
    inputs = {name: getattr(model.config, name) for name in INPUT_SETTINGS}
    if dataclasses.replace(theirs, **added, **inputs) != model.config:
        raise InputError(
            f"init_from {source!r}: its cue network {config} differs from this run's "
            f"{model.config.to_dict()}"
        )
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in state.items()}, strict=not added
    )
    if unexpected or any(not k.startswith(tuple(new_layers)) for k in missing):
        raise InputError(f"init_from {source!r}: weights {missing + unexpected} do not fit")


def clip_patches(
    record: ClipRecord, config: VideoDirectionConfig
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A clip as the cue sees it: its distinct frames as canvases (N, 3, H, W) uint8
    (:func:`panorama_canvases`, as serving makes them), the frame index of every patch (P,)
    and the patch targets (P, 3) float32 (:func:`patch_intensity_targets`)."""
    frames, fps = record.load_video()
    audio, rate = record.load_audio()
    patch_samples = int(round(config.patch_seconds * rate))
    n_patches = math.ceil(audio.shape[1] / patch_samples)
    canvases = panorama_canvases(frames, (config.frame_height, config.frame_width))
    index = patch_frame_index(n_patches, patch_samples / rate, np.arange(len(frames)) / fps)
    targets = patch_intensity_targets(audio, patch_samples, n_patches)
    return canvases, torch.from_numpy(index), targets.astype(np.float32)


#: What a source's pulse is measured against in :func:`source_cell_targets`.
CELL_PULSE_REFERENCES = ("peak", "mean")

#: Concentration of the von Mises kernel that spreads a source over the cells near it
#: (about 11 degrees of angular spread, half a tiny-grid cell).
CELL_KAPPA = 25.0


def source_cell_targets(
    meta: dict[str, Any],
    n_patches: int,
    patch_seconds: float,
    directions: np.ndarray,
    pulse_reference: str = "peak",
) -> np.ndarray:
    """Where the sounding sources of a procedural clip are, patch by patch: (P, G) rows
    that sum to 1 over the cells (``directions`` (G, 3), unit, raster order), zero rows
    for patches past the clip or when clip.json lacks what it needs (another corpus).

    Each source is given, at the centre of patch p, 10^((level_db + power_db) / 10) times
    its pulse (``activity`` at the nearest video frame, as the video shows it) as a power
    relative to a reference, over distance^2, spread over the cells by a von Mises kernel
    (``CELL_KAPPA``) around its direction. The silent distractors get nothing: this is
    what the cue should learn to tell from a look-alike, by the caption when there is one.

    ``pulse_reference`` "mean" scales each pulse to its clip mean, which is what the
    delivered power is and what the signal oracle does
    (:func:`~swansphere_training.evaluation.generator.scene_oracle_direction`); "peak"
    scales it to the source's loudest frame, which gives a bursty source (a bark, a clap)
    less than its share against a steady one (rain): the cue of the 15794d5 bundle was
    trained with "peak"."""
    if pulse_reference not in CELL_PULSE_REFERENCES:
        raise InputError(
            f"pulse_reference must be one of {CELL_PULSE_REFERENCES}, got {pulse_reference!r}"
        )
    from ..evaluation.generator import sounding_deliveries

    out = np.zeros((n_patches, len(directions)), dtype=np.float32)
    fps, seconds = (meta.get("video") or {}).get("fps"), meta.get("duration_s")
    if not fps or not seconds or not meta.get("sources"):
        return out
    times = (np.arange(n_patches) + 0.5) * patch_seconds
    inside = times < float(seconds)
    deliveries = sounding_deliveries(
        meta, times, np.round(times * float(fps)).astype(int), pulse_reference
    )
    if deliveries is None:
        return out
    cells = source_cells(deliveries, directions)
    out[inside] = cells[inside]
    return out


def cell_kernel(unit: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The von Mises kernel (``CELL_KAPPA``) of unit directions (T, 3) over the cells
    (``directions`` (G, 3), unit): (T, G), 1 where a cell's direction is the object's."""
    return np.exp(CELL_KAPPA * (unit @ directions.T - 1.0))


def source_cells(
    deliveries: list[tuple[np.ndarray, np.ndarray]], directions: np.ndarray
) -> np.ndarray:
    """Sources' deliveries (power (T,), unit direction (T, 3)) each
    (:func:`~swansphere_training.evaluation.generator.sounding_deliveries`) spread over the
    cells (``directions`` (G, 3), unit) by a von Mises kernel (``CELL_KAPPA``) and summed:
    (T, G) float32 rows that sum to 1, zero rows where nothing sounds."""
    total = np.zeros((len(deliveries[0][0]) if deliveries else 0, len(directions)))
    for power, unit in deliveries:
        kernel = cell_kernel(unit, directions)
        kernel /= kernel.sum(axis=1, keepdims=True)
        total += power[:, None] * kernel
    mass = total.sum(axis=1, keepdims=True)
    return np.divide(total, mass, out=np.zeros_like(total), where=mass > 0).astype(np.float32)


def cell_loss(power: torch.Tensor, cells: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the source map ``cells`` (B, P, G) (:func:`source_cell_targets`)
    under the cue's cell powers (B, P, G) normalised to sum to 1 over the cells, minus the
    map's own entropy (a KL divergence: 0 at a perfect fit), averaged over the valid patches
    (B, P) that have a map."""
    share = power / power.sum(-1, keepdim=True).clamp_min(1e-8)
    kl = (cells * (torch.log(cells.clamp_min(1e-12)) - torch.log(share.clamp_min(1e-12)))).sum(-1)
    rows = (cells.sum(-1) > 0) & valid
    return (kl * rows).sum() / rows.sum().clamp_min(1)


def object_pulse_maps(
    meta: dict[str, Any], frames: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """Where every object of a procedural clip stands, sounding or a silent look-alike, and
    how strongly it pulses, at video frames ``frames`` (P,) (each patch's frame): (P, G, 2)
    float32 over the cells (``directions`` (G, 3), unit, raster order), zeros when clip.json
    lacks what it needs (another corpus).

    Channel 0, presence: the largest over the objects of a von Mises kernel around the
    object's direction (``CELL_KAPPA``), 1 at its centre. Channel 1, level: the pulse
    (``activity`` in [0, 1], what the video draws) of the object whose kernel is largest
    there. Unlike the source maps these weigh no loudness: they say what the picture shows."""
    from ..evaluation.generator import distractor_direction, trajectory_positions

    out = np.zeros((len(frames), len(directions), 2), dtype=np.float32)
    fps = (meta.get("video") or {}).get("fps")
    objects: list[tuple[np.ndarray, np.ndarray]] = []  # (unit (P, 3), pulse (P,))
    frames = np.asarray(frames, dtype=np.int64)
    for source in meta.get("sources") or []:
        pulse, track = source.get("activity"), source.get("trajectory") or {}
        if pulse is None or "distance_m" not in track or not fps:
            return out
        positions = trajectory_positions(track, frames / float(fps))
        unit = positions / np.maximum(np.linalg.norm(positions, axis=1, keepdims=True), 1e-9)
        objects.append((unit, np.asarray(pulse, dtype=np.float64)))
    for decoy in meta.get("distractors") or []:
        if decoy.get("activity") is None:
            return out
        unit = np.broadcast_to(distractor_direction(decoy), (len(frames), 3))
        objects.append((unit, np.asarray(decoy["activity"])))
    for unit, pulse in objects:
        kernel = cell_kernel(unit, directions)  # (P, G)
        level = pulse[np.clip(frames, 0, len(pulse) - 1)][:, None]
        nearer = kernel > out[..., 0]
        out[..., 1] = np.where(nearer, level, out[..., 1])
        out[..., 0] = np.maximum(out[..., 0], kernel)
    return out


def pulse_loss(readings: torch.Tensor, maps: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the pulse reader's readings (B, P, G, 2) in [0, 1] against
    :func:`object_pulse_maps` (B, P, G, 2), over the valid patches (B, P): presence over
    every cell, plus the level over the cells weighted by their presence (where there is no
    object, there is no level to read)."""
    bce = F.binary_cross_entropy(readings.clamp(1e-6, 1 - 1e-6), maps, reduction="none")
    rows = valid[..., None].to(bce.dtype)
    presence = (bce[..., 0] * rows).sum() / (rows.sum() * bce.shape[-2]).clamp_min(1)
    weight = maps[..., 0] * rows
    level = (bce[..., 1] * weight).sum() / weight.sum().clamp_min(1e-8)
    return presence + level


#: Caption tokens pooled into the cue's sentence embedding (the tiny LM's max_text_tokens).
CUE_CAPTION_TOKENS = 64


def caption_embeddings(clips: list[ClipRecord], text_dim: int) -> torch.Tensor:
    """Each clip's caption (:meth:`ClipRecord.caption_text`) as the cue reads it: (N,
    text_dim) unit rows (:func:`pooled_caption` of MiniLM's tokens, as serving pools the
    LM's caption tokens), zero rows for clips without one. MiniLM loads only when some clip
    has a caption; InputError when its width is not ``text_dim``."""
    texts = [record.caption_text() or "" for record in clips]
    out = torch.zeros(len(clips), text_dim)
    if not any(texts):
        return out
    from swansphere.models.text import CaptionEncoder, pooled_caption

    encoder = CaptionEncoder()
    if encoder.dim != text_dim:
        raise InputError(f"the cue reads {text_dim}-d captions; MiniLM gives {encoder.dim}-d")
    for start in range(0, len(texts), 256):
        tokens, mask = encoder.encode_tokens(texts[start : start + 256], CUE_CAPTION_TOKENS)
        out[start : start + 256] = pooled_caption(tokens, mask)
    return out


def crop_symmetry(
    frames: torch.Tensor,
    targets: torch.Tensor,
    cells: torch.Tensor,
    grid: tuple[int, int],
    shift: int,
    mirror: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A crop of equirectangular frames (C, 3, H, W), its intensity targets (C, 3) as
    (x, y, z) and its source maps (C, G) over the (rows, cols) ``grid`` (raster order,
    :func:`grid_directions`), as the same scene mirrored left-right when ``mirror`` (y ->
    -y: column x to W - 1 - x, whose azimuth is the negative of x's) and then turned by
    Rz(shift * 360 / cols degrees) about the vertical (content moves ``shift`` cells to the
    left, as :func:`~swansphere.foa.panorama.roll_equirect` rolls a panorama for that
    yaw). Exact: W is a whole number of cells, so pixels, cells and vectors move alike."""
    rows, cols = grid
    if frames.shape[-1] % cols:
        raise InputError(f"frame width {frames.shape[-1]} is not a whole number of {cols} cells")
    maps = cells.reshape(*cells.shape[:-1], rows, cols)
    if mirror:
        frames, maps = frames.flip(-1), maps.flip(-1)
        targets = targets * targets.new_tensor([1.0, -1.0, 1.0])
    turn = targets.new_tensor(ypr_to_matrix(360.0 * shift / cols, 0.0, 0.0))
    step = frames.shape[-1] // cols
    return (
        torch.roll(frames, -shift * step, dims=-1),
        targets @ turn.T,
        torch.roll(maps, -shift, dims=-1).reshape(cells.shape),
    )


class PatchFrameDataset(torch.utils.data.Dataset):
    """Crops of ``crop_patches`` patches: {"frames": (C, 3, H, W) uint8, "targets": (C, 3),
    "valid": (C,) bool, "text": (text_dim,), "cells": (C, G), "pulse": (C, G, 2)}; clips
    shorter than a crop are padded (last frame, zero target, invalid). ``captions`` (N,
    text_dim): each clip's caption embedding (:func:`caption_embeddings`; omitted: none),
    zeroed (no caption) in a share ``caption_dropout`` of the crops. ``source_maps``:
    "cells" holds each patch's :func:`source_cell_targets` with ``pulse_reference``
    (otherwise zeros); ``pulse_maps``: "pulse" holds its :func:`object_pulse_maps`
    (otherwise zeros). ``augment``
    (:data:`CROP_AUGMENTS`): what :func:`crop_symmetry` does to the crops without a caption.
    Decoded clips are kept in memory; crop offsets, caption dropout and augmentation use
    torch's global RNG (augmentation draws nothing when "none")."""

    def __init__(
        self,
        clips: list[ClipRecord],
        config: VideoDirectionConfig,
        crop: int,
        captions: torch.Tensor | None = None,
        caption_dropout: float = 0.0,
        source_maps: bool = False,
        pulse_reference: str = "peak",
        augment: str = "none",
        pulse_maps: bool = False,
    ) -> None:
        if not clips:
            raise InputError("the direction stage needs clips with video")
        if crop < 1:
            raise InputError(f"crop_patches must be positive, got {crop}")
        if not 0.0 <= caption_dropout <= 1.0:
            raise InputError(f"caption_dropout must lie in [0, 1], got {caption_dropout}")
        if captions is None:
            captions = torch.zeros(len(clips), config.text_dim)
        if tuple(captions.shape) != (len(clips), config.text_dim):
            raise InputError(
                f"captions must be ({len(clips)}, {config.text_dim}), got {tuple(captions.shape)}"
            )
        self.clips, self.config, self.crop = clips, config, int(crop)
        self.captions, self.caption_dropout = captions.float(), float(caption_dropout)
        self.source_maps, self.pulse_maps = bool(source_maps), bool(pulse_maps)
        if pulse_reference not in CELL_PULSE_REFERENCES:
            raise InputError(
                f"cell_pulse must be one of {CELL_PULSE_REFERENCES}, got {pulse_reference!r}"
            )
        self.pulse_reference = pulse_reference
        if augment not in CROP_AUGMENTS:
            raise InputError(f"augment must be one of {', '.join(CROP_AUGMENTS)}, got {augment!r}")
        self.augment = augment
        self._directions = grid_directions(*config.grid).astype(np.float64)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor, np.ndarray, Any, Any]] = {}
        limit_heap_fragmentation()  # the cache would otherwise hold the decoder's freed pages

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i not in self._cache:
            record = self.clips[i]
            canvases, index, targets = clip_patches(record, self.config)
            cells = None  # maps off: no (P, G) zeros kept per clip
            if self.source_maps:
                patch_s = round(self.config.patch_seconds * record.sample_rate) / record.sample_rate
                maps = source_cell_targets(
                    record.meta, len(index), patch_s, self._directions, self.pulse_reference
                )
                cells = torch.from_numpy(maps)
            pulse = None
            if self.pulse_maps:
                pulse = torch.from_numpy(
                    object_pulse_maps(record.meta, index.numpy(), self._directions)
                )
            self._cache[i] = canvases, index, targets, cells, pulse
        canvases, index, targets, cells, pulse = self._cache[i]
        n = len(index)
        start = int(torch.randint(n - self.crop + 1, (1,)).item()) if n > self.crop else 0
        take = torch.arange(start, start + self.crop).clamp_max(n - 1)
        valid = torch.arange(start, start + self.crop) < n
        target = torch.from_numpy(targets)[take] * valid[:, None]
        keep = float(torch.rand(()).item()) >= self.caption_dropout
        text = self.captions[i] * keep
        frames = canvases[index[take]]
        maps = (
            torch.zeros(self.crop, len(self._directions))
            if cells is None
            else cells[take] * valid[:, None]
        )
        objects = (
            torch.zeros(self.crop, len(self._directions), 2)
            if pulse is None
            else pulse[take] * valid[:, None, None]
        )
        if self.augment != "none" and not bool(text.any()):
            shift = int(torch.randint(self.config.grid[1], (1,)).item())
            mirror = self.augment == "yaw_mirror" and float(torch.rand(()).item()) < 0.5
            # The pulse maps turn with the source maps: (C, 2, G) rows ride along as cells.
            both = torch.cat([maps[:, None], objects.transpose(1, 2)], dim=1)
            frames, target, both = crop_symmetry(
                frames, target, both, self.config.grid, shift, mirror
            )
            maps, objects = both[:, 0], both[:, 1:].transpose(1, 2)
        return {
            "frames": frames,
            "targets": target,
            "valid": valid,
            "text": text,
            "cells": maps,
            "pulse": objects,
        }


def cue_loss(
    estimate: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """(B, P, 3) estimates and targets, (B, P) valid -> the mean over rows of the clip term
    (1 - cosine of the sums over the valid patches, the clip-level direction) plus the
    patch term (1 - cosine per patch, weighted by the target's length)."""
    mask = valid[..., None].to(estimate.dtype)
    clip = 1 - F.cosine_similarity((estimate * mask).sum(1), (target * mask).sum(1), dim=-1)
    weight = target.norm(dim=-1) * valid
    cos = F.cosine_similarity(estimate, target, dim=-1, eps=1e-8)
    patch = ((1 - cos) * weight).sum(1) / weight.sum(1).clamp_min(1e-8)
    loss = (clip + patch).mean()
    return loss, {
        "clip_loss": float(clip.detach().mean()),
        "patch_loss": float(patch.detach().mean()),
    }


# Softens the logarithm of a patch's length (relative to its clip's mean W^2: about
# -26 dB), so that near-silent patches neither dominate the length term nor its score.
LENGTH_FLOOR = 0.05
# Keeps the logarithms of the length shares finite for silent or padded patches.
SHARE_FLOOR = 1e-8


def length_loss(estimate: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) estimates and targets, (B, P) valid -> the mean over rows of the mean
    squared difference of the valid patches' log lengths, log(|v| + LENGTH_FLOOR), each
    less its clip's mean: free of a per-clip scale, as the level lock (which rescales the
    cue's lengths by a running ratio) is."""
    mask = valid.to(estimate.dtype)
    count = mask.sum(1, keepdim=True).clamp_min(1)

    def centred(v: torch.Tensor) -> torch.Tensor:
        log = torch.log(v.norm(dim=-1) + LENGTH_FLOOR)
        return log - (log * mask).sum(1, keepdim=True) / count

    diff = centred(estimate) - centred(target)
    return ((diff**2 * mask).sum(1) / count[:, 0]).mean()


def length_share_loss(
    estimate: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """(B, P, 3) estimates and targets, (B, P) valid -> the mean over rows of the KL
    divergence of the estimates' length shares from the targets' (each valid patch's
    |v| over the sum of its clip's): free of a per-clip scale, and weighted toward the
    patches that are loud in the reference, which set the clip's direction."""
    mask = valid.to(estimate.dtype)

    def shares(v: torch.Tensor) -> torch.Tensor:
        length = v.norm(dim=-1) * mask
        return length / length.sum(1, keepdim=True).clamp_min(1e-12)

    p, q = shares(target), shares(estimate)
    kl = p * (torch.log(p + SHARE_FLOOR) - torch.log(q + SHARE_FLOOR))
    return (kl * mask).sum(1).mean()


def length_correlation(estimate: np.ndarray, target: np.ndarray) -> float:
    """Pearson correlation over a clip's patches of log(|estimate| + LENGTH_FLOOR) and the
    same of the target ((P, 3) each); 0 when either is constant."""
    a = np.log(np.linalg.norm(estimate, axis=-1) + LENGTH_FLOOR)
    b = np.log(np.linalg.norm(target, axis=-1) + LENGTH_FLOOR)
    if np.ptp(a) < 1e-9 or np.ptp(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles in degrees between vectors (..., 3); a zero vector counts as 90 degrees off."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / np.maximum(na * nb, 1e-30)
    return np.degrees(np.arccos(np.clip(np.where(na * nb > 0, cos, 0.0), -1.0, 1.0)))


@torch.no_grad()
def evaluate_cue(
    cue: VideoDirectionCue, root: Path, split: str = "test", max_clips: int = 64
) -> dict[str, Any]:
    """The cue on whole clips of ``root/split`` (with video): ``angular_error_deg`` (mean),
    ``median_error_deg`` of the clip-level direction (the sum of its patch estimates) from
    the reference's (the sum of the targets), and ``patch_error_deg``, the patches' error
    weighted by the target's length, and ``length_correlation``, the clips' mean of
    :func:`length_correlation` (how well the estimates' lengths follow the patches'
    loudness, what the level lock reads). Per-clip errors in ``clips``. These read no caption;
    a cue with ``text_dim`` is also scored reading each clip's caption, in the same pass
    (each clip decoded once), as ``caption_*`` figures beside ``captioned_clips`` (the clips
    that have one), when any has one."""
    clips = ClipDataset(Path(root), split=split, require_video=True)
    records = [clips[i] for i in range(min(len(clips), max_clips))]
    if not records:
        raise InputError(f"no clips with video in {Path(root) / split}")
    cue.eval()
    device = next(cue.parameters()).device
    readings: dict[str, torch.Tensor | None] = {"": None}
    if cue.config.text_dim:
        text = caption_embeddings(records, cue.config.text_dim).to(device)
        if text.any():
            readings["caption_"] = text
    errors: dict[str, list[float]] = {prefix: [] for prefix in readings}
    lengths: dict[str, list[float]] = {prefix: [] for prefix in readings}
    patch_num = dict.fromkeys(readings, 0.0)
    patch_den, ids = 0.0, []
    for n, record in enumerate(records):
        canvases, index, targets = clip_patches(record, cue.config)
        frames = canvases[index][None].to(device)
        weight, total = np.linalg.norm(targets, axis=-1), targets.sum(0).astype(np.float64)
        patch_den += float(weight.sum())
        ids.append(record.id)
        for prefix, text in readings.items():
            caption = None if text is None else text[n : n + 1]
            estimate = cue(frames, caption)[0].cpu().double().numpy()
            errors[prefix].append(float(angle_deg(estimate.sum(0), total)))
            lengths[prefix].append(length_correlation(estimate, targets))
            patch_num[prefix] += float((angle_deg(estimate, targets) * weight).sum())
    result: dict[str, Any] = {}
    for prefix in readings:
        result |= {
            f"{prefix}angular_error_deg": float(np.mean(errors[prefix])),
            f"{prefix}median_error_deg": float(np.median(errors[prefix])),
            f"{prefix}patch_error_deg": patch_num[prefix] / max(patch_den, 1e-30),
            f"{prefix}length_correlation": float(np.mean(lengths[prefix])),
            f"{prefix}clips": dict(zip(ids, errors[prefix], strict=True)),
        }
    if "caption_" in readings:
        result["captioned_clips"] = int((readings["caption_"].abs().sum(-1) > 0).sum())
    return result


class DirectionStage(Stage):
    name = "direction"

    def build_model(self) -> nn.Module:
        config = network_config(self.config)
        if self.config.pulse_weight > 0 and not config.pulse_taps:
            raise InputError(
                "pulse_weight fits the pulse reader's readings: it needs a cue with one "
                "(--set 'model={\"pulse_taps\": 16}')"
            )
        model = VideoDirectionCue(config)
        if self.config.init_from:
            load_initial_cue(model, self.config.init_from)
        return model

    def build_data(self):
        config = network_config(self.config)
        clips = list(ClipDataset(Path(self.config.data), split="train", require_video=True))
        captions = caption_embeddings(clips, config.text_dim) if config.text_dim else None
        return PatchFrameDataset(
            clips,
            config,
            self.config.crop_patches,
            captions,
            self.config.caption_dropout,
            source_maps=self.config.cell_weight > 0,
            pulse_reference=self.config.cell_pulse,
            augment=self.config.augment,
            pulse_maps=self.config.pulse_weight > 0,
        )

    def build_schedulers(self):
        return {
            "main": warmup_cosine(
                self.optimizers["main"], self.config.warmup_steps, self.config.lr_decay_steps
            )
        }

    def step(self, batch: dict) -> dict[str, float]:
        estimate, power, readings = self.wrapped(
            batch["frames"], batch["text"], with_cells=True, with_pulse=True
        )
        loss, metrics = cue_loss(estimate, batch["targets"], batch["valid"])
        if self.config.pulse_weight > 0:
            pulse = pulse_loss(readings, batch["pulse"], batch["valid"])
            loss = loss + self.config.pulse_weight * pulse
            metrics["pulse_loss"] = float(pulse.detach())
        if self.config.cell_weight > 0:
            cells = cell_loss(power, batch["cells"], batch["valid"])
            loss = loss + self.config.cell_weight * cells
            metrics["cell_loss"] = float(cells.detach())
        if self.config.length_weight > 0:
            term = length_loss if self.config.length_term == "log" else length_share_loss
            lengths = term(estimate, batch["targets"], batch["valid"])
            loss = loss + self.config.length_weight * lengths
            metrics["length_loss"] = float(lengths.detach())
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return metrics | {"total_loss": float(loss.detach())}

    def evaluate(self) -> dict[str, float]:
        result = evaluate_cue(self.model, Path(self.config.data), "test", self.config.eval_clips)
        self.log_dict(result, f"eval/direction_step{self.global_step}.json")
        errors = np.array(list(result["clips"].values()))
        figure, ax = plt.subplots(figsize=(5, 3))
        ax.hist(errors, bins=18, range=(0, 180))
        ax.set_xlabel("clip direction error (deg)")
        ax.set_ylabel("clips")
        ax.set_title(f"video direction cue, step {self.global_step}")
        self.log_figure(figure, f"plots/step_{self.global_step:08d}_errors.png")
        plt.close(figure)
        return {k: v for k, v in result.items() if isinstance(v, float)}


__all__ = [
    "DirectionStage",
    "DirectionStageConfig",
    "PatchFrameDataset",
    "caption_embeddings",
    "cell_loss",
    "clip_patches",
    "cue_loss",
    "evaluate_cue",
    "length_correlation",
    "length_loss",
    "length_share_loss",
    "object_pulse_maps",
    "pulse_loss",
    "source_cell_targets",
]
