"""Corpus statistics: class, direction and duration histograms (PNG + JSON), and a
panorama frame with the ground-truth source positions marked, for a person to check."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from ..data.clip import META_FILE, VIDEO_FILE, clip_dirs, source_tracks, write_json_atomic
from .classes import SOUND_CLASSES

log = logging.getLogger(__name__)


def _load_metas(root: Path) -> tuple[list[tuple[Path, dict]], list[tuple[str, str]]]:
    metas, skipped = [], []
    for folder in clip_dirs(root):
        try:
            metas.append((folder, json.loads((folder / META_FILE).read_text())))
        except (OSError, ValueError) as exc:
            skipped.append((str(folder), f"unreadable {META_FILE}: {exc}"))
            log.warning("skipping %s: %s", folder, exc)
    return metas, skipped


def corpus_stats(root: Path, out: Path) -> dict:
    """Write ``stats.json``, ``histograms.png`` and ``frame_ground_truth.png`` under ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    metas, skipped = _load_metas(Path(root))
    classes: Counter = Counter()
    sources_per_clip: Counter = Counter()
    motions: Counter = Counter()
    durations, azimuths, elevations = [], [], []
    for _, meta in metas:
        durations.append(float(meta.get("duration_s", 0.0)))
        tracks = source_tracks(meta)
        sources_per_clip[len(tracks)] += 1
        for s in meta.get("sources") or []:
            classes[s["class"]] += 1
            motions[s.get("motion", "unknown")] += 1
        for track in tracks:
            azimuths.extend(np.rad2deg(track.azimuth))
            elevations.extend(np.rad2deg(track.elevation))

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    names = [c for c in SOUND_CLASSES if classes[c]] + sorted(set(classes) - set(SOUND_CLASSES))
    axes[0, 0].bar(range(len(names)), [classes[n] for n in names])
    axes[0, 0].set_xticks(range(len(names)), names, rotation=70, fontsize=7)
    axes[0, 0].set_title("sources per class")
    if azimuths:
        h = axes[0, 1].hist2d(
            azimuths, elevations, bins=[36, 18], range=[[-180, 180], [-90, 90]], cmap="magma"
        )
        fig.colorbar(h[3], ax=axes[0, 1], label="keyframes")
    axes[0, 1].set_xlabel("azimuth (deg, +left)")
    axes[0, 1].set_ylabel("elevation (deg)")
    axes[0, 1].set_title("ground-truth directions")
    axes[1, 0].hist(durations, bins=20)
    axes[1, 0].set_title("clip duration (s)")
    axes[1, 1].bar(
        [str(k) for k in sorted(sources_per_clip)],
        [sources_per_clip[k] for k in sorted(sources_per_clip)],
    )
    axes[1, 1].set_title("sources per clip")
    fig.tight_layout()
    hist_path = out / "histograms.png"
    fig.savefig(hist_path, dpi=90)
    plt.close(fig)

    frame_path = _ground_truth_frame(metas, out / "frame_ground_truth.png")
    summary = {
        "clips": len(metas),
        "skipped": len(skipped),
        "skipped_reasons": skipped,
        "audio_hours": round(sum(durations) / 3600, 4),
        "classes": {n: classes[n] for n in names},
        "sources_per_clip": {str(k): v for k, v in sorted(sources_per_clip.items())},
        "motion": dict(motions),
        "duration_s": {"min": min(durations, default=0), "max": max(durations, default=0)},
        "elevation_deg": {
            "min": round(min(elevations, default=0), 2),
            "max": round(max(elevations, default=0), 2),
        },
        "files": {"histograms": str(hist_path), "frame": str(frame_path) if frame_path else None},
    }
    write_json_atomic(out / "stats.json", summary)
    return summary


def _ground_truth_frame(metas: list[tuple[Path, dict]], path: Path) -> Path | None:
    """The middle frame of the first clip with video and ground truth, sources marked."""
    import matplotlib.pyplot as plt

    from swansphere.generation.video import read_video as read_mp4

    from .video import draw_markers

    for folder, meta in metas:
        tracks = source_tracks(meta)
        if not tracks or not (folder / VIDEO_FILE).is_file():
            continue
        try:
            frames, fps = read_mp4(folder / VIDEO_FILE)
        except ValueError as exc:
            log.warning("cannot read %s: %s", folder / VIDEO_FILE, exc)
            continue
        index = len(frames) // 2
        t = index / fps
        points = []
        for track in tracks:
            az, el = track.direction_at(np.array([t]))
            points.append((float(az[0]), float(el[0]), track.class_name))
        marked = draw_markers(frames[index], points)
        fig, ax = plt.subplots(figsize=(10, 5.4))
        ax.imshow(marked, extent=(180, -180, -90, 90))
        ax.set_xlabel("azimuth (deg, +left)")
        ax.set_ylabel("elevation (deg)")
        ax.set_title(f"{meta.get('id', folder.name)} at t = {t:.2f} s: ground-truth sources")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path
    return None
