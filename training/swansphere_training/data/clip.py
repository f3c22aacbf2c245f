"""On-disk clip format shared by the procedural corpus, the importers and every trainer.

A corpus is a folder of splits, each a folder of clips::

    ROOT/<split>/<clip_id>/clip.wav      AmbiX FOA (ACN W, Y, Z, X; SN3D), float32 WAVEX
                          clip.mp4      equirectangular video (optional: caption corpora have none)
                          clip.json     metadata (schema below)
                          caption.json  written by ``swansphere data caption`` (optional)

clip.json::

    {
      "id": "train-000012", "split": "train", "seed": 4711, "origin": "procedural",
      "duration_s": 10.0, "sample_rate": 44100,
      "video": {"fps": 4.0, "width": 256, "height": 128, "frames": 40} | null,
      "sources": [                       # ground truth, when known (procedural clips)
        {"class": "siren", "class_id": 1, "motion": "static" | "moving", "level_db": -12.0,
         "trajectory": {"t": [...], "azimuth_deg": [...], "elevation_deg": [...],
                        "distance_m": [...]},   # keyframes, linear in between
         "activity": [...],   # per video frame, in [0, 1]: the pulse the video shows
         "power_db": -24.3}   # the dry signal's mean power, before level_db
      ],
      "distractors": [{"class": "...", "azimuth_deg": .., "elevation_deg": .., "distance_m": ..,
                       "activity": [...]}],   # silent look-alikes with a pulse of their own
      "room": {...} | null, "ambience_db": -40.0 | null,
      "label": "dog barking" | null,      # user label for real clips
      "caption": "..." | null             # a caption that came with the data (caption corpora)
    }

A clip folder appears atomically: it is assembled under a hidden temporary name in
the split folder and renamed into place, so a crash never leaves a partial clip.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swansphere.permissions import publish

AUDIO_FILE = "clip.wav"
VIDEO_FILE = "clip.mp4"
META_FILE = "clip.json"
CAPTION_FILE = "caption.json"


@dataclass(frozen=True)
class SourceTrack:
    """Ground-truth track of one sounding source: keyframes at times ``t`` (s), linear between."""

    class_name: str
    t: np.ndarray
    azimuth: np.ndarray  # radians
    elevation: np.ndarray  # radians
    distance: np.ndarray  # metres

    def direction_at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Azimuth and elevation (radians) at ``times``, interpolated on unwrapped azimuth."""
        az = np.interp(times, self.t, np.unwrap(self.azimuth))
        return np.angle(np.exp(1j * az)), np.interp(times, self.t, self.elevation)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": [round(float(x), 4) for x in self.t],
            "azimuth_deg": [round(float(x), 3) for x in np.rad2deg(self.azimuth)],
            "elevation_deg": [round(float(x), 3) for x in np.rad2deg(self.elevation)],
            "distance_m": [round(float(x), 3) for x in self.distance],
        }

    @classmethod
    def from_json(cls, class_name: str, data: dict[str, Any]) -> SourceTrack:
        return cls(
            class_name,
            np.asarray(data["t"], dtype=float),
            np.deg2rad(np.asarray(data["azimuth_deg"], dtype=float)),
            np.deg2rad(np.asarray(data["elevation_deg"], dtype=float)),
            np.asarray(data["distance_m"], dtype=float),
        )


def source_tracks(meta: dict[str, Any]) -> list[SourceTrack]:
    """The ground-truth tracks of a clip's metadata (empty for real clips)."""
    return [SourceTrack.from_json(s["class"], s["trajectory"]) for s in meta.get("sources") or []]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_clip_dir(split_dir: Path, clip_id: str, fill: Callable[[Path], None]) -> Path:
    """Create ``split_dir/clip_id`` atomically: ``fill(tmp_dir)`` writes the files, then a rename.

    If ``fill`` raises, the temporary folder is removed and the exception propagates.
    An existing clip of the same id is replaced.
    """
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{clip_id}.", suffix=".tmp", dir=split_dir))
    try:
        publish(tmp)  # mkdtemp's folder is private
        fill(tmp)
        final = split_dir / clip_id
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def clip_dirs(root: Path, split: str | None = None) -> list[Path]:
    """Clip folders (those holding clip.json) under ``root`` or ``root/split``, sorted by path.

    Symbolic links to folders are followed (a corpus may be assembled from links to
    another's clips; ``Path.rglob`` does not follow them), each real folder walked once so
    that a link back up the tree cannot loop. Hidden clip folders (a clip being written
    under a temporary name) are left out."""
    base = Path(root) / split if split else Path(root)
    found, walked = [], set()
    for folder, subfolders, files in os.walk(base, followlinks=True):
        real = os.path.realpath(folder)
        if real in walked:
            subfolders.clear()
            continue
        walked.add(real)
        if META_FILE in files and not Path(folder).name.startswith("."):
            found.append(Path(folder))
    return sorted(found)
