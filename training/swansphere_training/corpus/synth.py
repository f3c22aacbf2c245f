"""The procedural corpus writer: scenes -> clip folders (clip.wav, clip.mp4, clip.json).

Deterministic by seed: clip ``i`` of split ``s`` draws everything from
``np.random.default_rng([seed, SPLIT_CODES[s], i])``, so splits never share a
random stream and one clip can be regenerated alone. Clips are written atomically
(see ``data/clip.py``); a clip that fails is skipped with its reason and counted,
and the run goes on. Work is spread over processes (both cores by default).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from swansphere.foa.encode import direction_to_vector
from swansphere.foa.io import write_foa

from ..data.clip import (
    AUDIO_FILE,
    META_FILE,
    VIDEO_FILE,
    SourceTrack,
    write_clip_dir,
    write_json_atomic,
)
from .classes import class_id
from .scene import Scene, SynthConfig, random_scene

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass
class SynthSummary:
    clips: int = 0
    seconds: float = 0.0  # wall-clock time of the run
    audio_seconds: float = 0.0
    skipped: int = 0
    skipped_reasons: list[tuple[str, str]] = field(default_factory=list)
    out: str = ""
    split: str = "train"

    def to_json(self) -> dict:
        data = asdict(self)
        data["clips_per_s"] = round(self.clips / self.seconds, 3) if self.seconds else 0.0
        data["seconds"] = round(self.seconds, 3)
        return data


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one clip; distinct for every (seed, split, index)."""
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def _keyframe_positions(track: SourceTrack) -> np.ndarray:
    """Keyframed positions (k, 3) in metres, listener frame (x front, y left, z up)."""
    return direction_to_vector(track.azimuth, track.elevation) * track.distance[:, None]


def fit_scene_to_room(scene: Scene, room) -> Scene:
    """Pull every source inside the room's walls; directions stay, distances may shrink."""
    from .room import fit_to_room

    sources = []
    for source in scene.sources:
        fitted = fit_to_room(room, _keyframe_positions(source.track))
        track = replace(source.track, distance=np.linalg.norm(fitted, axis=1))
        sources.append(replace(source, track=track))
    return replace(scene, sources=sources)


def render_scene_audio(
    scene: Scene, room, config: SynthConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Mix the sources through the room plus the ambient bed; returns (FOA (4, n), gain)."""
    from .room import render_ambience, render_source
    from .sources import synthesize_source

    n = int(round(config.seconds * config.sample_rate))
    mix = np.zeros((4, n))
    for source in scene.sources:
        mono = synthesize_source(source.track.class_name, config.seconds, config.sample_rate, rng)[
            :n
        ]
        foa = render_source(
            mono,
            config.sample_rate,
            _keyframe_positions(source.track),
            room,
            max_order=config.image_source_order,
            rng=rng,
            times_s=source.track.t,
        )
        mix += foa * 10 ** (source.level_db / 20)
    w_rms = np.sqrt(np.mean(mix[0] ** 2)) + 1e-12
    ambience = render_ambience(n, config.sample_rate, rng, level_db=0.0)
    amb_rms = np.sqrt(np.mean(ambience[0] ** 2)) + 1e-12
    mix += ambience * (w_rms / amb_rms) * 10 ** (scene.ambience_db / 20)
    gain = 10 ** (config.peak_dbfs / 20) / max(np.max(np.abs(mix)), 1e-9)
    return mix * gain, float(gain)


def render_scene_video(scene: Scene, config: SynthConfig, seed: int) -> np.ndarray:
    """Equirectangular frames (frames, H, W, 3) uint8 with sources and distractors drawn."""
    from .video import VisualObject, render_frames

    n_frames = int(round(config.seconds * config.fps))
    frame_times = np.arange(n_frames) / config.fps
    objects = []
    for i, source in enumerate(scene.sources):
        az, el = source.track.direction_at(frame_times)
        dist = np.interp(frame_times, source.track.t, source.track.distance)
        objects.append(VisualObject(source.track.class_name, az, el, dist, True, seed + i))
    for j, d in enumerate(scene.distractors):
        ones = np.ones(n_frames)
        objects.append(
            VisualObject(
                d.class_name,
                ones * d.azimuth,
                ones * d.elevation,
                ones * d.distance,
                False,
                seed + 100 + j,
            )
        )
    return render_frames(
        objects,
        n_frames,
        width=config.width,
        height=config.height,
        fps=config.fps,
        background_seed=seed,
    )


def clip_metadata(
    clip_id: str,
    split: str,
    seed: int,
    index: int,
    scene: Scene,
    room,
    config: SynthConfig,
    gain: float,
) -> dict:
    return {
        "id": clip_id,
        "split": split,
        "seed": {"base": int(seed), "split": split, "index": int(index)},
        "origin": "procedural",
        "duration_s": config.seconds,
        "sample_rate": config.sample_rate,
        "video": {
            "fps": config.fps,
            "width": config.width,
            "height": config.height,
            "frames": int(round(config.seconds * config.fps)),
        },
        "sources": [
            {
                "class": s.track.class_name,
                "class_id": class_id(s.track.class_name),
                "motion": s.motion,
                "level_db": round(s.level_db, 2),
                "trajectory": s.track.to_json(),
            }
            for s in scene.sources
        ],
        "distractors": [
            {
                "class": d.class_name,
                "azimuth_deg": round(float(np.rad2deg(d.azimuth)), 3),
                "elevation_deg": round(float(np.rad2deg(d.elevation)), 3),
                "distance_m": round(d.distance, 3),
            }
            for d in scene.distractors
        ],
        "room": room.to_json(),
        "ambience_db": round(scene.ambience_db, 2),
        "mix_gain": round(gain, 6),
        "label": None,
        "caption": None,
    }


def make_clip(
    out: Path, split: str, seed: int, index: int, config: SynthConfig, n_sources: int | None = None
) -> Path:
    """Synthesise clip ``index`` of ``split`` and write it atomically under ``out/split``."""
    from .room import random_room
    from .video import write_mp4

    rng = clip_rng(seed, split, index)
    room = random_room(rng)
    scene = fit_scene_to_room(random_scene(rng, config, n_sources), room)
    foa, gain = render_scene_audio(scene, room, config, rng)
    video_seed = int(rng.integers(0, 2**31 - 1))
    frames = render_scene_video(scene, config, video_seed)
    clip_id = f"{split}-{index:06d}"
    meta = clip_metadata(clip_id, split, seed, index, scene, room, config, gain)

    def fill(tmp: Path) -> None:
        write_foa(tmp / AUDIO_FILE, foa, config.sample_rate)
        write_mp4(tmp / VIDEO_FILE, frames, fps=config.fps)
        write_json_atomic(tmp / META_FILE, meta)

    return write_clip_dir(Path(out) / split, clip_id, fill)


def _worker(task: tuple) -> tuple[int, str | None]:
    out, split, seed, index, config, n_sources = task
    try:
        make_clip(Path(out), split, seed, index, config, n_sources)
        return index, None
    except Exception as exc:  # one bad clip must not stop the corpus
        log.exception("clip %s-%06d failed", split, index)
        return index, f"{type(exc).__name__}: {exc}"


def synthesize_corpus(
    out: Path,
    clips: int,
    seed: int = 0,
    split: str = "train",
    config: SynthConfig | None = None,
    workers: int | None = None,
    n_sources: int | None = None,
    start_index: int = 0,
    progress: bool = True,
) -> SynthSummary:
    """Write ``clips`` clips; returns counts and timing. ``n_sources`` fixes sources per clip."""
    if split not in SPLIT_CODES:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_CODES)}")
    config = config or SynthConfig()
    workers = workers or min(os.cpu_count() or 1, 2 if clips > 1 else 1)
    tasks = [(str(out), split, seed, start_index + i, config, n_sources) for i in range(clips)]
    summary = SynthSummary(out=str(out), split=split)
    started = time.perf_counter()
    bar = tqdm(total=clips, desc=f"synth {split}", unit="clip", disable=not progress)
    if workers == 1:
        results = map(_worker, tasks)
        pool = None
    else:
        # Fork keeps start-up cheap; each worker limits its own math threads to one.
        pool = mp.get_context("fork").Pool(workers, initializer=_limit_threads)
        results = pool.imap_unordered(_worker, tasks)
    try:
        for index, error in results:
            if error is None:
                summary.clips += 1
                summary.audio_seconds += config.seconds
            else:
                summary.skipped += 1
                summary.skipped_reasons.append((f"{split}-{index:06d}", error))
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    summary.seconds = time.perf_counter() - started
    return summary


def _limit_threads() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
