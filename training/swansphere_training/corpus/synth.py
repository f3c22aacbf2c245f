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
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from swansphere.errors import InputError
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
# Loudness range of the visual pulse: a frame this many dB below the source's loudest
# frame shows the object at rest.
ACTIVITY_RANGE_DB = 30.0


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


def activity_envelope(
    mono: np.ndarray, sample_rate: float, fps: float, n_frames: int
) -> np.ndarray:
    """How loud a dry source is at each video frame: (n_frames,) in [0, 1].

    RMS over the 1 / fps seconds centred on frame i (time i / fps), in dB relative to the
    loudest frame, mapped linearly from -ACTIVITY_RANGE_DB (0) to 0 dB (1). A silent
    source gives zeros.
    """
    hop = sample_rate / fps
    rms = np.zeros(n_frames)
    for i in range(n_frames):
        lo = max(0, int(round((i - 0.5) * hop)))
        hi = min(mono.size, int(round((i + 0.5) * hop)))
        if hi > lo:
            rms[i] = np.sqrt(np.mean(mono[lo:hi] ** 2))
    peak = rms.max()
    if peak <= 0:
        return rms
    db = 20 * np.log10(np.maximum(rms / peak, 1e-6))
    return np.clip(1.0 + db / ACTIVITY_RANGE_DB, 0.0, 1.0)


def activity_power(activity: Any, reference: str = "peak") -> np.ndarray:
    """The pulse of :func:`activity_envelope` (values in [0, 1]) back as a power per frame
    (float64): relative to the source's loudest frame ("peak": 1 there, 10^-3 at rest),
    or to its mean over the clip ("mean": what each frame delivers against the average)."""
    power = 10.0 ** ((np.asarray(activity, dtype=np.float64) - 1.0) * ACTIVITY_RANGE_DB / 10.0)
    if reference == "mean":
        return power / max(float(power.mean()), 1e-30)
    if reference != "peak":
        raise InputError(f"a pulse's power is relative to 'peak' or 'mean', got {reference!r}")
    return power


def decoy_activity(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """A random on/off envelope (n_frames,) in [0, 1] for a silent distractor.

    Sounding objects pulse with their sound (:func:`activity_envelope`); distractors pulse
    too, to a rhythm of their own, so that only the audio tells which object is heard.
    Bursts of 0.25-1.5 s alternate with pauses of 0.25-2 s, edges softened over a frame.
    """
    out = np.zeros(n_frames)
    t = float(rng.uniform(0.0, 1.0))
    on = bool(rng.integers(0, 2))
    while t * fps < n_frames:
        length = float(rng.uniform(0.25, 1.5) if on else rng.uniform(0.25, 2.0))
        if on:
            lo, hi = int(t * fps), min(n_frames, int(np.ceil((t + length) * fps)))
            out[lo:hi] = rng.uniform(0.6, 1.0)
        t += length
        on = not on
    return np.convolve(out, [0.25, 0.5, 0.25], mode="same")


class SceneAudio(NamedTuple):
    """What :func:`render_scene_audio` makes.

    foa: (4, n) AmbiX mix at the clip's peak. gain: the linear mix gain applied to reach
    that peak. activity: per source, its :func:`activity_envelope` at the video frame rate
    (what the video shows it pulsing with). power_db: per source, the mean power of its dry
    signal in dB re full scale 1, before its level and the mix gain.
    """

    foa: np.ndarray
    gain: float
    activity: list[np.ndarray]
    power_db: list[float]


def render_scene_audio(
    scene: Scene, room, config: SynthConfig, rng: np.random.Generator
) -> SceneAudio:
    """Mix the sources through the room plus the ambient bed (see :class:`SceneAudio`)."""
    from .room import render_ambience, render_source
    from .sources import synthesize_source

    n = int(round(config.seconds * config.sample_rate))
    mix = np.zeros((4, n))
    n_frames = int(round(config.seconds * config.fps))
    activity, power_db = [], []
    for source in scene.sources:
        mono = synthesize_source(source.track.class_name, config.seconds, config.sample_rate, rng)[
            :n
        ]
        activity.append(activity_envelope(mono, config.sample_rate, config.fps, n_frames))
        power_db.append(float(10.0 * np.log10(max(float(np.mean(mono**2)), 1e-30))))
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
    return SceneAudio(mix * gain, float(gain), activity, power_db)


def decoy_pulses(scene: Scene, config: SynthConfig, seed: int) -> list[np.ndarray]:
    """Each distractor's :func:`decoy_activity` (frames,), as :func:`render_scene_video`
    draws them for video seed ``seed``."""
    n_frames = int(round(config.seconds * config.fps))
    decoys = np.random.default_rng([seed, 1])
    return [decoy_activity(n_frames, config.fps, decoys) for _ in scene.distractors]


def render_scene_video(
    scene: Scene, config: SynthConfig, seed: int, activity: list[np.ndarray] | None = None
) -> np.ndarray:
    """Equirectangular frames (frames, H, W, 3) uint8 with sources and distractors drawn.

    ``activity``: per source, its loudness per frame (:func:`render_scene_audio`); the
    sources pulse with it and each distractor with a :func:`decoy_activity` of its own.
    Without it nothing pulses.
    """
    from .video import VisualObject, render_frames

    n_frames = int(round(config.seconds * config.fps))
    frame_times = np.arange(n_frames) / config.fps
    objects = []
    pulses = decoy_pulses(scene, config, seed)
    for i, source in enumerate(scene.sources):
        az, el = source.track.direction_at(frame_times)
        dist = np.interp(frame_times, source.track.t, source.track.distance)
        pulse = None if activity is None else activity[i]
        objects.append(VisualObject(source.track.class_name, az, el, dist, True, seed + i, pulse))
    for j, d in enumerate(scene.distractors):
        ones = np.ones(n_frames)
        pulse = None if activity is None else pulses[j]
        objects.append(
            VisualObject(
                d.class_name,
                ones * d.azimuth,
                ones * d.elevation,
                ones * d.distance,
                False,
                seed + 100 + j,
                pulse,
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
    audio: SceneAudio | None = None,
    decoys: list[np.ndarray] | None = None,
) -> dict:
    """clip.json of a procedural clip. With ``audio`` and ``decoys``, each source also records
    its ``activity`` (the pulse the video shows, per frame) and ``power_db`` (its dry
    signal's mean power, before ``level_db``), and each distractor its ``activity``: what
    the scene oracles of ``eval generator`` read."""
    meta = {
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
    if audio is not None:
        for entry, pulse, power in zip(
            meta["sources"], audio.activity, audio.power_db, strict=True
        ):
            entry["activity"] = [round(float(a), 4) for a in pulse]
            entry["power_db"] = round(power, 3)
    if decoys is not None:
        for entry, pulse in zip(meta["distractors"], decoys, strict=True):
            entry["activity"] = [round(float(a), 4) for a in pulse]
    return meta


def make_clip(
    out: Path, split: str, seed: int, index: int, config: SynthConfig, n_sources: int | None = None
) -> Path:
    """Synthesise clip ``index`` of ``split`` and write it atomically under ``out/split``."""
    from .room import random_room
    from .video import write_mp4

    rng = clip_rng(seed, split, index)
    room = random_room(rng)
    scene = fit_scene_to_room(random_scene(rng, config, n_sources), room)
    audio = render_scene_audio(scene, room, config, rng)
    video_seed = int(rng.integers(0, 2**31 - 1))
    frames = render_scene_video(scene, config, video_seed, audio.activity)
    clip_id = f"{split}-{index:06d}"
    decoys = decoy_pulses(scene, config, video_seed)
    meta = clip_metadata(
        clip_id, split, seed, index, scene, room, config, audio.gain, audio, decoys
    )

    def fill(tmp: Path) -> None:
        write_foa(tmp / AUDIO_FILE, audio.foa, config.sample_rate)
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
