"""Generator evaluation: where the generated sound comes from, against the reference FOA.

Every figure is computed the same way for the model and for three baselines, so they can
be read side by side:

- ``random``: a direction drawn uniformly on the sphere per clip (seeded);
- ``front``: always azimuth 0, elevation 0;
- ``vae_reference``: the reference audio through the bundle's VAE (encode, decode): the
  ceiling of anything generated in its latent space;
- ``source_oracle`` (procedural clips, whose clip.json lists the sounding sources): the sum
  of the sounding sources' unit directions, each averaged over its trajectory: what a
  model that knew which objects sound and where, but not their levels, the room or the
  ambience, would score. Video alone cannot know which objects sound (silent look-alike
  distractors), so this bounds video-only generation from above;
- ``source_power_oracle`` (the same clips): the sum of the sounding sources' unit
  directions, each weighted by the power it delivers, 10^(level_db / 10) / distance^2,
  point by point along its trajectory: what a model that also knew their levels and
  distances, but not how loud each one's sound is, the room or the ambience, would score;
- ``signal_oracle``, ``video_oracle``, ``visible_objects_oracle`` (procedural clips whose
  clip.json records each object's pulse, ``activity``, as ``swansphere data synth`` writes
  it): scene oracles (:func:`scene_oracle_direction`) that weigh each object's direct
  path, frame by frame, by the power it delivers, 1 / distance^2 times its pulse times a
  loudness. ``signal_oracle`` knows the sounding sources' actual loudness (their level
  and their signal's power): the rest of its error is the room. ``video_oracle`` knows
  what the picture can show of them: their class's typical loudness, not their random
  level. ``visible_objects_oracle`` treats every object in the picture so, sounding or
  not, as the picture alone cannot tell a silent look-alike from a source. A video-only
  generator should not expect to beat ``video_oracle``;
- ``video_saliency`` (generators that take SVAC's saliency): the mean over the patches of
  the saliency-weighted cell directions of the saliency the generator is conditioned on
  (:func:`saliency_direction`): where its video cue alone points. A generator further
  from the reference than this does not follow its own cue.
- ``video_direction_cue`` (bundles with a video direction cue,
  :mod:`swansphere.models.direction`): the sum over the patches of the cue's intensity
  estimates from the patch frames (:func:`cue_direction`): where the picture says the
  sound is, which ``direction_source = "video"`` turns the generated patches to.
- ``lm_estimate`` (generators with a trained direction head): the mean over the patches
  of the LM's unit direction estimates during the model's video-only generation
  (:meth:`~swansphere.generation.session.GeneratorRuntime.generate_traced`): where the
  LM meant the sound to be. ``rendering_deg`` beside it is the mean angle between that
  and the generated audio's direction: how closely the LocDiT renders what the LM means.
  Together they say which of the two the model's error comes from.

Metrics (radians unless a name ends in ``_deg``; means over clips):

- ``angular_rad`` / ``angular_deg``, ``azimuth_rad``, ``elevation_rad``: the research code's
  clip-level metric (DESIGN.md section 5): broadband I = mean over the clip of W (X, Y, Z)
  (:func:`swansphere.foa.doa.clip_direction`) of generated and reference audio; azimuth
  error wrapped, elevation error absolute, combined = great-circle angle. The model's
  figures come from **video-only** generation (no caption: the test captions are measured
  from the reference audio, so giving them would leak the answer).
- ``trajectory_rad`` / ``trajectory_deg``: per-segment error, the great-circle angle between
  the 1 s segment directions (:func:`swansphere.foa.doa.doa_trajectory`) of generated and
  reference audio, averaged over segments, then clips. A baseline's direction is
  constant over the clip.
- ``text_region_accuracy``: **text-only** generation from the clip's caption; the share
  of clips whose generated clip-level direction lies in a coarse region the caption names
  (first sentence, the loudest source, as :mod:`swansphere_training.corpus.captioning`
  scores captions), counting a direction within ``REGION_TOLERANCE_DEG`` of a named region
  as in it; ``text_region_accuracy_strict`` without the tolerance. Clips whose caption names
  no region are left out (``text_region_clips`` says how many count). ``text_only`` holds
  the angular figures of the text-only generations.
- ``level_correlation``: whether the loudness follows the reference's: per clip, the
  Pearson correlation of generated and reference W level (dB, :func:`block_levels_db`)
  over blocks of one generator patch, averaged over the clips where both levels vary.
  Reported for the model, ``video_text`` and ``text_only``, and ``vae_reference`` (the
  ceiling); the constant-direction baselines have no audio.
- ``video_text`` (only with ``video_text=True``): the angular figures of generation from
  video and caption together (the caption carries the reference's measured direction).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from swansphere.captions import coarse_region, regions_in_caption
from swansphere.errors import InputError
from swansphere.foa.doa import (
    angular_error,
    clip_direction,
    direction_errors,
    doa_trajectory,
    random_directions,
)
from swansphere.foa.encode import direction_to_vector, vector_to_direction
from swansphere.foa.io import resample
from swansphere.models.vae import pad_to_stride

from ..corpus.captioning import REGION_TOLERANCE_DEG, regions_near
from ..data.dataset import ClipDataset

log = logging.getLogger(__name__)

BASELINES = (
    "random",
    "front",
    "vae_reference",
    "source_oracle",
    "source_power_oracle",
    "signal_oracle",
    "video_oracle",
    "visible_objects_oracle",
    "video_saliency",
    "video_direction_cue",
    "lm_estimate",
)


def _direction(foa: np.ndarray) -> tuple[float, float]:
    return clip_direction(np.asarray(foa, dtype=np.float64))


def _trajectory(foa: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    t = doa_trajectory(np.asarray(foa, dtype=np.float64), rate)
    return t.azimuth, t.elevation


def _segment_error(est: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean great-circle angle over the segments both trajectories have (radians)."""
    n = min(len(est[0]), len(ref[0]))
    return float(np.mean(angular_error(est[0][:n], est[1][:n], ref[0][:n], ref[1][:n])))


def source_oracle_direction(
    meta: dict[str, Any], power: bool = False
) -> tuple[float, float] | None:
    """(azimuth, elevation) in radians of the sum of the sounding sources' unit directions,
    each the mean unit vector over its trajectory; None without a source list.

    With ``power``, each trajectory point's unit vector is weighted by the power the
    source delivers there, 10^(level_db / 10) / distance_m^2 (None when a source lacks
    either)."""
    vectors = []
    for source in meta.get("sources") or []:
        track = source.get("trajectory") or {}
        az, el = track.get("azimuth_deg"), track.get("elevation_deg")
        if az is None or el is None:
            return None
        units = direction_to_vector(np.deg2rad(az), np.deg2rad(el)).reshape(-1, 3)
        if power:
            level, distance = source.get("level_db"), track.get("distance_m")
            if level is None or distance is None:
                return None
            distance = np.maximum(np.asarray(distance, dtype=np.float64).reshape(-1), 1e-3)
            units = units * (10.0 ** (float(level) / 10.0) / distance**2)[:, None]
        vectors.append(units.mean(0))
    if not vectors:
        return None
    az, el = vector_to_direction(np.sum(vectors, axis=0))
    return float(az), float(el)


SCENE_ORACLES = {
    "signal_oracle": "signal",
    "video_oracle": "video",
    "visible_objects_oracle": "visible",
}


def trajectory_positions(track: dict[str, Any], times: np.ndarray) -> np.ndarray:
    """Positions (frames, 3) in metres of a clip.json trajectory at ``times`` (seconds),
    linearly interpolated between its keyframes (AmbiX axes: x front, y left, z up)."""
    keys = direction_to_vector(
        np.deg2rad(np.asarray(track["azimuth_deg"], dtype=np.float64)),
        np.deg2rad(np.asarray(track["elevation_deg"], dtype=np.float64)),
    ).reshape(-1, 3) * np.asarray(track["distance_m"], dtype=np.float64).reshape(-1, 1)
    t = np.asarray(track["t"], dtype=np.float64).reshape(-1)
    return np.stack([np.interp(times, t, keys[:, k]) for k in range(3)], axis=1)


def distractor_direction(distractor: dict[str, Any]) -> np.ndarray:
    """The unit direction (3,) of a clip.json distractor, which stands still (AmbiX axes)."""
    return direction_to_vector(
        np.deg2rad(float(distractor["azimuth_deg"])), np.deg2rad(float(distractor["elevation_deg"]))
    )


def sounding_deliveries(
    meta: dict[str, Any],
    times: np.ndarray,
    frames: np.ndarray,
    pulse_reference: str = "mean",
    knowledge: str = "signal",
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """What each sounding source of a procedural clip delivers at ``times`` (seconds): per
    source, (power (T,), unit direction (T, 3), AmbiX axes). The power is the source's
    loudness times its pulse at video frame ``frames`` (T,) as a power relative to
    ``pulse_reference`` (:func:`~swansphere_training.corpus.synth.activity_power`), over
    distance^2. The loudness by ``knowledge``, as the scene oracles weigh it: "signal",
    10^((level_db + power_db) / 10); "video", the class's typical power
    (:func:`~swansphere_training.corpus.sources.typical_power_db`), which the picture can
    tell, unlike the drawn level. The silent look-alikes are not sources. None when
    clip.json lacks a source's pulse, distance or power_db (another corpus)."""
    from ..corpus.sources import typical_power_db
    from ..corpus.synth import activity_power

    if knowledge not in ("signal", "video"):
        raise InputError(f"unknown delivery knowledge {knowledge!r}: signal or video")
    deliveries = []
    for source in meta.get("sources") or []:
        track, pulse = source.get("trajectory") or {}, source.get("activity")
        if pulse is None or "distance_m" not in track or "power_db" not in source:
            return None
        relative = activity_power(pulse, pulse_reference)[np.clip(frames, 0, len(pulse) - 1)]
        positions = trajectory_positions(track, times)
        distance = np.maximum(np.linalg.norm(positions, axis=1), 1e-3)
        if knowledge == "signal":
            power_db = float(source["level_db"]) + float(source["power_db"])
        else:
            seconds, rate = meta.get("duration_s"), meta.get("sample_rate")
            if not seconds or not rate:
                return None
            power_db = typical_power_db(source["class"], float(seconds), int(rate))
        power = 10.0 ** (power_db / 10.0)
        deliveries.append((power * relative / distance**2, positions / distance[:, None]))
    return deliveries


def scene_oracle_direction(meta: dict[str, Any], knowledge: str) -> tuple[float, float] | None:
    """(azimuth, elevation) in radians of a scene oracle (module docstring), or None when
    clip.json lacks what it needs (an older corpus without ``activity``).

    Every object o delivers, at video frame i, p_o * r_o(i) / d_o(i)^2 from its direction
    u_o(i); the oracle is the direction of the sum of those vectors. r_o is its pulse as a
    power relative to its mean over the clip
    (:func:`~swansphere_training.corpus.synth.activity_power`, "mean"). p_o by
    ``knowledge``: "signal", the sounding sources with 10^((level_db + power_db) / 10);
    "video", the sounding sources with their class's typical power
    (:func:`~swansphere_training.corpus.sources.typical_power_db`); "visible", that for the
    distractors as well, static where they stand. The sources' share is
    :func:`sounding_deliveries` at every video frame (a clip's pulses all have one length,
    the video's frame count).
    """
    from ..corpus.sources import typical_power_db
    from ..corpus.synth import activity_power

    if knowledge not in ("signal", "video", "visible"):
        raise InputError(f"unknown oracle knowledge {knowledge!r}: signal, video or visible")
    video = meta.get("video") or {}
    fps, seconds, rate = video.get("fps"), meta.get("duration_s"), meta.get("sample_rate")
    sources = meta.get("sources") or []
    if not sources or not fps or not seconds or not rate:
        return None
    frames = np.arange(len(sources[0].get("activity") or []))
    heard = "signal" if knowledge == "signal" else "video"
    deliveries = sounding_deliveries(meta, frames / float(fps), frames, "mean", heard)
    if deliveries is None:
        return None
    total = np.zeros(3)
    for power, unit in deliveries:
        total += (power[:, None] * unit).sum(axis=0)
    if knowledge == "visible":
        for distractor in meta.get("distractors") or []:
            pulse = distractor.get("activity")
            if pulse is None:
                return None
            unit = distractor_direction(distractor)
            power_db = typical_power_db(distractor["class"], float(seconds), int(rate))
            weights = 10.0 ** (power_db / 10.0) * activity_power(pulse, "mean")
            total += weights.sum() / max(float(distractor["distance_m"]), 1e-3) ** 2 * unit
    if not np.any(total):
        return None
    az, el = vector_to_direction(total)
    return float(az), float(el)


def saliency_direction(
    runtime: Any, frames: np.ndarray, fps: float, n_patches: int
) -> tuple[float, float] | None:
    """(azimuth, elevation) in radians of the mean over ``n_patches`` patches of the
    saliency-weighted unit directions of the token grid's cells, the saliency being what the
    runtime's generator is conditioned on for video ``frames`` at ``fps`` (computed as
    offline generation does); None for a generator without the saliency input."""
    from swansphere.foa.panorama import grid_directions
    from swansphere.generation.conditioning import patch_saliency

    config = runtime.generator.config
    if not config.video_saliency:
        return None
    cues = runtime.video_cues(frames, fps, n_patches)
    saliency = patch_saliency(runtime.svac, cues, config.saliency_window).cpu().double().numpy()
    cells = grid_directions(*runtime.svac.video_encoder.grid)  # (G, 3) unit x, y, z
    az, el = vector_to_direction((saliency @ cells).mean(axis=0))
    return float(az), float(el)


def cue_direction(
    runtime: Any, frames: np.ndarray, fps: float, n_patches: int
) -> tuple[float, float] | None:
    """(azimuth, elevation) in radians of the sum over ``n_patches`` patches of the video
    direction cue's intensity estimates, fed the canvas conditioning each patch as serving
    makes it (the whole sequence at once, which equals a stream's patch-by-patch
    :class:`~swansphere.models.direction.DirectionTracker` up to rounding); None for a
    runtime without a cue or when the cue sees nothing."""
    from swansphere.generation.conditioning import panorama_canvases, patch_frame_index

    cue = getattr(runtime, "direction", None)
    if cue is None:
        return None
    index = patch_frame_index(n_patches, runtime.patch_seconds, np.arange(len(frames)) / fps)
    canvases = panorama_canvases(frames, runtime.canvas_size)[torch.from_numpy(index)]
    with torch.inference_mode():
        total = cue(canvases[None].to(runtime.device))[0].sum(dim=0)
    vector = total.double().cpu().numpy()
    if not np.any(vector):
        return None
    az, el = vector_to_direction(vector)
    return float(az), float(el)


def _region_hit(direction: tuple[float, float], named: set[str]) -> tuple[bool, bool]:
    """(tolerant, strict): whether a direction lies in one of the named regions."""
    tolerant = bool(regions_near(*direction, REGION_TOLERANCE_DEG) & named)
    return tolerant, coarse_region(*direction) in named


def block_levels_db(foa: np.ndarray, block: int, floor_db: float = -80.0) -> np.ndarray:
    """W RMS level in dBFS (n // block,) of AmbiX FOA (4, n) over consecutive blocks of
    ``block`` samples (a trailing partial block is dropped), at least ``floor_db``."""
    n = foa.shape[1] // block
    w = np.asarray(foa[0, : n * block], dtype=np.float64).reshape(n, block)
    rms = np.sqrt(np.mean(w * w, axis=1))
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), floor_db)


def level_correlation(generated: np.ndarray, reference: np.ndarray, block: int) -> float | None:
    """Pearson correlation of the block levels (:func:`block_levels_db`) of two FOA clips
    (4, n) over their common length; None when either level is constant (nothing to
    follow) or there are fewer than 3 blocks."""
    n = min(generated.shape[1], reference.shape[1])
    a, b = block_levels_db(generated[:, :n], block), block_levels_db(reference[:, :n], block)
    if len(a) < 3 or np.ptp(a) < 1e-9 or np.ptp(b) < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


class _Tally:
    """Per-clip directions, segment errors, region hits and level correlations of one
    method."""

    def __init__(self) -> None:
        self.az: list[float] = []
        self.el: list[float] = []
        self.ref_az: list[float] = []
        self.ref_el: list[float] = []
        self.segments: list[float] = []
        self.hits: list[tuple[bool, bool]] = []
        self.levels: list[float] = []

    def add_levels(self, correlation: float | None) -> None:
        if correlation is not None:
            self.levels.append(correlation)

    def add(self, direction, reference, segment_error: float) -> None:
        self.az.append(direction[0])
        self.el.append(direction[1])
        self.ref_az.append(reference[0])
        self.ref_el.append(reference[1])
        self.segments.append(segment_error)

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.az:
            e = direction_errors(
                np.array(self.az), np.array(self.el), np.array(self.ref_az), np.array(self.ref_el)
            )
            out.update(
                angular_rad=e["angle"],
                angular_deg=e["angle_deg"],
                azimuth_rad=e["azimuth"],
                elevation_rad=e["elevation"],
                trajectory_rad=float(np.mean(self.segments)),
                trajectory_deg=float(np.rad2deg(np.mean(self.segments))),
            )
        if self.levels:
            out["level_correlation"] = float(np.mean(self.levels))
        if self.hits:
            out["text_region_accuracy"] = float(np.mean([h[0] for h in self.hits]))
            out["text_region_accuracy_strict"] = float(np.mean([h[1] for h in self.hits]))
        return out


@torch.no_grad()
def vae_round_trip(vae, foa: np.ndarray) -> np.ndarray:
    """FOA (4, n) at the VAE's rate through its encoder (posterior mean) and decoder."""
    x = torch.from_numpy(np.ascontiguousarray(foa, dtype=np.float32))[None]
    x = pad_to_stride(x, vae.hop_length)
    mean, _ = vae.encode(x)
    return vae.decode(mean)[0, :, : foa.shape[1]].numpy()


def evaluate_generator(
    runtime: Any,
    root: Path,
    split: str | None = "test",
    max_clips: int = 64,
    seed: int = 0,
    steps: int | None = None,
    progress: bool = False,
    generate: Callable[..., np.ndarray] | None = None,
    video_text: bool = False,
    guidance: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Metrics of a generator runtime (:class:`swansphere.generation.session.GeneratorRuntime`:
    ``generate``, ``sample_rate``, ``vae``) on up to ``max_clips`` clips with video of
    ``root/split`` (see the module docstring). ``seed`` seeds generation (clip i uses
    seed + i) and the random baseline; ``steps`` overrides the sampler's Euler steps and
    ``guidance`` = (g_text, g_video) its guidance scales (reported as ``guidance``).
    ``generate`` replaces ``runtime.generate`` (tests); then there is no ``lm_estimate``."""
    from swansphere.generation.session import SessionConfig

    clips = ClipDataset(root, split=split, require_video=True)[:max_clips]
    if len(clips) == 0:
        raise InputError(f"no clips with video under {Path(root) / (split or '')}")
    rate = runtime.sample_rate
    traced = generate is None
    generate = generate or runtime.generate
    rng = np.random.default_rng(seed)
    model_config = runtime.generator.config
    if guidance is None:
        guidance = (model_config.guidance_text, model_config.guidance_video)
    g_text, g_video = (float(g) for g in guidance)
    model, text_only, both = _Tally(), _Tally(), _Tally()
    baselines = {name: _Tally() for name in BASELINES}
    skipped_text = 0
    rendering: list[float] = []
    block = runtime.patch_samples
    start = time.perf_counter()
    for i, clip in enumerate(tqdm(clips, desc="eval generator", unit="clip", disable=not progress)):
        foa, clip_rate = clip.load_audio()
        reference = resample(foa, clip_rate, rate).astype(np.float32)
        frames, fps = clip.load_video()
        duration = reference.shape[1] / rate
        config = SessionConfig(seed=seed + i, steps=steps, guidance_text=g_text,
                               guidance_video=g_video)  # fmt: skip
        ref_dir = _direction(reference)
        ref_traj = _trajectory(reference, rate)

        lm_estimate = None
        if traced:
            generated, lm_vector = runtime.generate_traced(frames, fps, None, duration, config)
            if np.linalg.norm(lm_vector) > 0:
                lm_estimate = tuple(float(a) for a in vector_to_direction(lm_vector))
        else:
            generated = generate(frames, fps, None, duration, config)
        generated = generated[:, : reference.shape[1]]
        model.add(
            _direction(generated), ref_dir, _segment_error(_trajectory(generated, rate), ref_traj)
        )
        model.add_levels(level_correlation(generated, reference, block))

        decoded = vae_round_trip(runtime.vae, reference)
        vae_dir = _direction(decoded)
        baselines["vae_reference"].add(
            vae_dir, ref_dir, _segment_error(_trajectory(decoded, rate), ref_traj)
        )
        baselines["vae_reference"].add_levels(level_correlation(decoded, reference, block))
        az, el = random_directions(1, rng, (-90.0, 90.0))  # uniform on the sphere
        constant = {"random": (float(az[0]), float(el[0])), "front": (0.0, 0.0)}
        oracle = source_oracle_direction(clip.meta)
        if oracle is not None:
            constant["source_oracle"] = oracle
        power_oracle = source_oracle_direction(clip.meta, power=True)
        if power_oracle is not None:
            constant["source_power_oracle"] = power_oracle
        for name, knowledge in SCENE_ORACLES.items():
            scene_oracle = scene_oracle_direction(clip.meta, knowledge)
            if scene_oracle is not None:
                constant[name] = scene_oracle
        n_patches = math.ceil(duration / runtime.patch_seconds - 1e-9)
        cue = saliency_direction(runtime, frames, fps, n_patches)
        if cue is not None:
            constant["video_saliency"] = cue
        picture = cue_direction(runtime, frames, fps, n_patches)
        if picture is not None:
            constant["video_direction_cue"] = picture
        if lm_estimate is not None:
            constant["lm_estimate"] = lm_estimate
            rendering.append(float(angular_error(*_direction(generated), *lm_estimate)))
        for name, direction in constant.items():
            segments = (
                np.full_like(ref_traj[0], direction[0]),
                np.full_like(ref_traj[1], direction[1]),
            )
            baselines[name].add(direction, ref_dir, _segment_error(segments, ref_traj))

        caption = clip.caption_text()
        if video_text and caption:
            mixed = generate(frames, fps, caption, duration, config)[:, : reference.shape[1]]
            both.add(_direction(mixed), ref_dir, _segment_error(_trajectory(mixed, rate), ref_traj))
            both.add_levels(level_correlation(mixed, reference, block))
        named = regions_in_caption(caption.split(".")[0]) if caption else set()
        if not named:
            skipped_text += 1
            continue
        spoken = generate(None, None, caption, duration, config)[:, : reference.shape[1]]
        spoken_dir = _direction(spoken)
        text_only.add(spoken_dir, ref_dir, _segment_error(_trajectory(spoken, rate), ref_traj))
        text_only.hits.append(_region_hit(spoken_dir, named))
        text_only.add_levels(level_correlation(spoken, reference, block))
        baselines["vae_reference"].hits.append(_region_hit(vae_dir, named))
        for name, direction in constant.items():
            baselines[name].hits.append(_region_hit(direction, named))

    result: dict[str, Any] = {
        "clips": len(clips),
        "split": split,
        "seed": seed,
        "guidance": {"text": g_text, "video": g_video},
        "sample_rate": rate,
        "conditioning": "video only (angular, trajectory); caption only (text_*)",
        **model.summary(),
    }
    text = text_only.summary()
    result["text_region_accuracy"] = text.pop("text_region_accuracy", None)
    result["text_region_accuracy_strict"] = text.pop("text_region_accuracy_strict", None)
    result["text_region_clips"] = len(text_only.hits)
    result["text_region_tolerance_deg"] = REGION_TOLERANCE_DEG
    result["text_only"] = text
    if video_text:
        result["video_text"] = both.summary()
    result["baselines"] = {name: tally.summary() for name, tally in baselines.items()}
    if rendering:
        result["rendering_rad"] = float(np.mean(rendering))
        result["rendering_deg"] = float(np.rad2deg(np.mean(rendering)))
    result["seconds"] = round(time.perf_counter() - start, 1)
    if skipped_text:
        log.info(
            "%d clip(s) left out of text_region_accuracy: caption names no region", skipped_text
        )
    return result


__all__ = [
    "BASELINES",
    "SCENE_ORACLES",
    "block_levels_db",
    "cue_direction",
    "evaluate_generator",
    "level_correlation",
    "saliency_direction",
    "scene_oracle_direction",
    "vae_round_trip",
]
