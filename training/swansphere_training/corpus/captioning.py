"""Automated spatial captioning of a corpus (SwanSphere paper, appendix A.2).

For each clip: the DoA trajectory is measured from the FOA (STFT, 500-8000 Hz
intensity, 1 s segments, smoothing, distance, diffuseness), attached to the clip's
label (class metadata for procedural clips, the user label for real clips), turned
into the structured scene JSON, and handed to a captioner. The default captioner is
``swansphere.captions.TemplateCaptioner``; any object with ``caption(scene, rng)``
(an LLM client wrapped in ``CallableCaptioner``, say) can take its place.

The measured trajectory is a single dominant direction per segment, so it is given
to the loudest source; further sources are named without a direction.

When ground truth exists the summary scores the pipeline: ``doa_mean_error_deg`` is
the per-segment angle between the measured direction and the loudest source's true
mean direction over that segment. ``region_accuracy`` is the share of clips whose
caption names, for the start and for the end of the clip, a correct coarse region of
the loudest source: the true direction is averaged over the first and last segment
(the windows the caption is built from), and a region counts as correct if the true
direction lies in it or within ``REGION_TOLERANCE_DEG`` of it (a source 1 degree from
the front/right boundary is fairly called either). ``region_accuracy_strict`` uses no
tolerance.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from swansphere.captions import (
    Captioner,
    SceneDescription,
    TemplateCaptioner,
    coarse_region,
    label_phrase,
    regions_in_caption,
    scene_from_trajectories,
)
from swansphere.errors import InputError
from swansphere.foa.doa import angular_error, doa_trajectory
from swansphere.foa.encode import direction_to_vector, vector_to_direction
from swansphere.foa.io import read_foa

from ..data.clip import (
    AUDIO_FILE,
    CAPTION_FILE,
    META_FILE,
    SourceTrack,
    clip_dirs,
    source_tracks,
    write_json_atomic,
)
from .classes import CLASS_PHRASES

log = logging.getLogger(__name__)

REGION_TOLERANCE_DEG = 10.0

_ALSO = ("{x} can also be heard.", "{x} is audible too.", "In the background there is {x}.")


def _labels(meta: dict[str, Any]) -> list[str]:
    """Source labels, loudest first: class names for procedural clips, else the user label."""
    sources = sorted(meta.get("sources") or [], key=lambda s: -float(s.get("level_db", 0.0)))
    if sources:
        return [s["class"] for s in sources]
    return [meta["label"]] if meta.get("label") else ["sound"]


def _loudest_track(meta: dict[str, Any]) -> SourceTrack | None:
    tracks = source_tracks(meta)
    if not tracks:
        return None
    levels = [float(s.get("level_db", 0.0)) for s in meta["sources"]]
    return tracks[int(np.argmax(levels))]


def segment_truth(track: SourceTrack, start: float, end: float) -> tuple[float, float]:
    """Mean true direction (azimuth, elevation; radians) of a track over [start, end] s."""
    times = np.linspace(start, end, 32)
    az, el = track.direction_at(times)
    return vector_to_direction(direction_to_vector(az, el).mean(axis=0))


def regions_near(azimuth: float, elevation: float, tolerance_deg: float) -> set[str]:
    """Coarse regions of every direction within ``tolerance_deg`` of (azimuth, elevation)."""
    if tolerance_deg <= 0:
        return {coarse_region(azimuth, elevation)}
    centre = direction_to_vector(azimuth, elevation)
    # Probe a ring at the tolerance and the centre itself.
    helper = np.cross(centre, [0.0, 0.0, 1.0] if abs(centre[2]) < 0.9 else [1.0, 0.0, 0.0])
    u = helper / np.linalg.norm(helper)
    v = np.cross(centre, u)
    t = np.deg2rad(tolerance_deg)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.cos(t) * centre + np.sin(t) * (
        np.outer(np.cos(angles), u) + np.outer(np.sin(angles), v)
    )
    az, el = vector_to_direction(np.vstack([centre, ring]))
    return {coarse_region(float(a), float(e)) for a, e in zip(az, el, strict=True)}


def caption_clip(
    folder: Path, captioner: Captioner, rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Caption one clip; returns (caption record written to caption.json, scores or None)."""
    meta = json.loads((folder / META_FILE).read_text())
    foa, rate = read_foa(folder / AUDIO_FILE)
    trajectory = doa_trajectory(foa, rate)
    segments = trajectory.to_json()
    labels = _labels(meta)
    scene: SceneDescription = scene_from_trajectories(
        labels[:1], [segments], duration_s=foa.shape[1] / rate
    )
    text = captioner.caption(scene, rng)
    for other in labels[1:]:
        template = _ALSO[int(rng.integers(len(_ALSO)))]
        sentence = template.format(x=label_phrase(other, CLASS_PHRASES))
        text += " " + sentence[0].upper() + sentence[1:]
    record = {
        "caption": text,
        "captioner": type(captioner).__name__,
        "labels": labels,
        "structured": scene.to_json(),
        "trajectory": segments,
    }
    track = _loudest_track(meta)
    if track is None:
        return record, None
    errors = []
    for s, az, el in zip(segments, trajectory.azimuth, trajectory.elevation, strict=True):
        true_az, true_el = segment_truth(track, s["start_s"], s["end_s"])
        errors.append(float(np.rad2deg(angular_error(az, el, true_az, true_el))))
    first, last = segments[0], segments[-1]
    start_truth = segment_truth(track, first["start_s"], first["end_s"])
    end_truth = segment_truth(track, last["start_s"], last["end_s"])
    named = regions_in_caption(text.split(".")[0])  # the first sentence is the loudest source
    strict = {coarse_region(*start_truth), coarse_region(*end_truth)}
    tolerant_start = regions_near(*start_truth, REGION_TOLERANCE_DEG)
    tolerant_end = regions_near(*end_truth, REGION_TOLERANCE_DEG)
    scores = {
        "sources": len(meta.get("sources") or []),
        "doa_error_deg": float(np.mean(errors)),
        "region_correct": bool(named & tolerant_start and named & tolerant_end),
        "region_correct_strict": strict <= named,
        "expected_regions": sorted(strict),
        "caption_regions": sorted(named),
    }
    return record, scores


def caption_corpus(
    root: Path,
    split: str | None = None,
    captioner: Captioner | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Caption every clip under ``root`` (or ``root/split``), writing caption.json beside each."""
    captioner = captioner or TemplateCaptioner(phrases=CLASS_PHRASES)
    folders = clip_dirs(root, split)
    if not folders:
        raise InputError(f"no clips found under {Path(root) / (split or '')}")
    skipped: list[tuple[str, str]] = []
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    examples = []
    captioned = 0
    for i, folder in enumerate(tqdm(folders, desc="caption", unit="clip", disable=not progress)):
        try:
            record, scores = caption_clip(folder, captioner, np.random.default_rng([seed, i]))
            write_json_atomic(folder / CAPTION_FILE, record)
        except (InputError, OSError, ValueError, KeyError) as exc:
            skipped.append((str(folder), f"{type(exc).__name__}: {exc}"))
            log.warning("skipping %s: %s", folder, exc)
            continue
        captioned += 1
        if len(examples) < 5:
            examples.append({"clip": folder.name, "caption": record["caption"]})
        if scores is not None:
            groups[scores["sources"]].append(scores)
    summary: dict[str, Any] = {
        "clips": len(folders),
        "captioned": captioned,
        "skipped": len(skipped),
        "skipped_reasons": skipped,
        "examples": examples,
    }
    scored = [s for group in groups.values() for s in group]
    if scored:
        errors = [s["doa_error_deg"] for s in scored]
        summary["doa_mean_error_deg"] = round(float(np.mean(errors)), 3)
        summary["region_accuracy"] = round(float(np.mean([s["region_correct"] for s in scored])), 4)
        summary["region_accuracy_strict"] = round(
            float(np.mean([s["region_correct_strict"] for s in scored])), 4
        )
        summary["region_tolerance_deg"] = REGION_TOLERANCE_DEG
        summary["by_sources"] = {
            str(n): {
                "clips": len(group),
                "doa_mean_error_deg": round(float(np.mean([s["doa_error_deg"] for s in group])), 3),
                "region_accuracy": round(float(np.mean([s["region_correct"] for s in group])), 4),
                "region_accuracy_strict": round(
                    float(np.mean([s["region_correct_strict"] for s in group])), 4
                ),
            }
            for n, group in sorted(groups.items())
        }
    return summary
