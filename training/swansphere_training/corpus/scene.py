"""Random scenes of the procedural corpus: which sources, where they go, which room.

A scene is pure data (classes, keyframed trajectories, levels, room, distractors);
``synth.py`` turns it into audio, video and metadata. Trajectories are keyframed at
the video frame rate in the listener's frame (x front, y left, z up, metres), so
the ground truth is as dense as the pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from swansphere.foa.encode import direction_to_vector, vector_to_direction
from swansphere_training.corpus.classes import SOUND_CLASSES

from ..data.clip import SourceTrack


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the procedural corpus (one preset per model size)."""

    seconds: float = 10.0  # clip length
    sample_rate: int = 44100  # Hz; the small preset uses 22050
    fps: float = 4.0  # video frame rate (paper: 4 fps)
    width: int = 256  # equirectangular frame width (2:1)
    height: int = 128
    min_sources: int = 1
    max_sources: int = 3
    max_distractors: int = 2  # silent look-alike visuals
    moving_probability: float = 0.5
    elevation_range_deg: tuple[float, float] = (-40.0, 60.0)
    distance_range_m: tuple[float, float] = (1.5, 8.0)
    source_level_range_db: tuple[float, float] = (-12.0, 0.0)  # relative between sources
    ambience_range_db: tuple[float, float] = (-45.0, -30.0)  # ambient bed, dB below the sources
    image_source_order: int = 2
    peak_dbfs: float = -1.0  # clip mix normalised to this peak


PRESETS: dict[str, SynthConfig] = {
    "default": SynthConfig(),
    "small": SynthConfig(sample_rate=22050),
}


@dataclass(frozen=True)
class SceneSource:
    """One sounding source: its class, ground-truth track and level."""

    track: SourceTrack
    motion: str  # "static" or "moving"
    level_db: float


@dataclass(frozen=True)
class Distractor:
    """A silent visual object drawn with the same vocabulary as the sources."""

    class_name: str
    azimuth: float
    elevation: float
    distance: float


@dataclass(frozen=True)
class Scene:
    sources: list[SceneSource]
    distractors: list[Distractor] = field(default_factory=list)
    ambience_db: float = -40.0


def _random_direction(rng: np.random.Generator, config: SynthConfig) -> tuple[float, float]:
    """Azimuth uniform all round; elevation uniform on the sphere within the configured band."""
    lo, hi = np.sin(np.deg2rad(config.elevation_range_deg))
    return float(rng.uniform(-np.pi, np.pi)), float(np.arcsin(rng.uniform(lo, hi)))


def _keyframe_times(config: SynthConfig) -> np.ndarray:
    frames = int(round(config.seconds * config.fps))
    return np.arange(frames + 1) / config.fps


def _clamp_elevation(positions: np.ndarray, config: SynthConfig) -> np.ndarray:
    """Keep every keyframe inside the elevation band by scaling its height."""
    az, el = vector_to_direction(positions)
    lo, hi = np.deg2rad(config.elevation_range_deg)
    el = np.clip(el, lo, hi)
    dist = np.linalg.norm(positions, axis=1)
    return direction_to_vector(az, el) * dist[:, None]


def random_track(
    rng: np.random.Generator, class_name: str, moving: bool, config: SynthConfig
) -> SourceTrack:
    """A static point or a motion: a straight pass, an arc around the listener, or an approach."""
    t = _keyframe_times(config)
    az0, el0 = _random_direction(rng, config)
    d0 = rng.uniform(*config.distance_range_m)
    start = direction_to_vector(az0, el0) * d0
    if not moving:
        positions = np.repeat(start[None, :], t.size, axis=0)
    else:
        kind = rng.choice(["pass", "arc", "approach"])
        frac = (t / t[-1])[:, None]
        if kind == "pass":
            # A straight line that passes the listener at a random closest distance.
            az1, el1 = _random_direction(rng, config)
            end = direction_to_vector(az1, el1) * rng.uniform(*config.distance_range_m)
            positions = start + frac * (end - start)
            positions = np.where(
                np.linalg.norm(positions, axis=1, keepdims=True) < 1.0,
                positions / np.maximum(np.linalg.norm(positions, axis=1, keepdims=True), 1e-9),
                positions,
            )
        elif kind == "arc":
            sweep = rng.choice([-1, 1]) * rng.uniform(np.pi / 2, 1.5 * np.pi)
            el1 = _random_direction(rng, config)[1]
            az = az0 + frac[:, 0] * sweep
            el = el0 + frac[:, 0] * (el1 - el0)
            positions = direction_to_vector(az, el) * d0
        else:
            d1 = (
                rng.uniform(config.distance_range_m[0], d0)
                if rng.random() < 0.5
                else rng.uniform(d0, config.distance_range_m[1])
            )
            drift = rng.normal(0, 0.4, 2)
            az = az0 + frac[:, 0] * drift[0]
            el = el0 + frac[:, 0] * drift[1]
            positions = direction_to_vector(az, el) * (d0 + frac * (d1 - d0))
        positions = _clamp_elevation(positions, config)
    az, el = vector_to_direction(positions)
    return SourceTrack(class_name, t, az, el, np.linalg.norm(positions, axis=1))


def random_scene(
    rng: np.random.Generator, config: SynthConfig, n_sources: int | None = None
) -> Scene:
    """Draw classes (distinct within a clip), tracks, levels, distractors and the ambient level."""
    n = int(n_sources or rng.integers(config.min_sources, config.max_sources + 1))
    n_distractors = int(rng.integers(0, config.max_distractors + 1))
    classes = rng.choice(len(SOUND_CLASSES), size=n + n_distractors, replace=False)
    sources = []
    for i in range(n):
        moving = bool(rng.random() < config.moving_probability)
        track = random_track(rng, SOUND_CLASSES[classes[i]], moving, config)
        level = 0.0 if i == 0 else float(rng.uniform(*config.source_level_range_db))
        sources.append(SceneSource(track, "moving" if moving else "static", level))
    distractors = []
    for c in classes[n:]:
        az, el = _random_direction(rng, config)
        distractors.append(
            Distractor(SOUND_CLASSES[c], az, el, float(rng.uniform(*config.distance_range_m)))
        )
    return Scene(sources, distractors, float(rng.uniform(*config.ambience_range_db)))
