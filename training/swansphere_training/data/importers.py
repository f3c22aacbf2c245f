"""Importers that turn real corpora into the clip format of :mod:`.clip`.

Two kinds of corpora are accepted.

**Paired corpora** (:func:`import_paired_corpus`): 360 videos with FOA audio
(Sphere360, YT-Ambigen). Two layouts:

- ``"sphere360"``: anywhere under ``src`` (subfolders included, hidden ones skipped),
  each video file ``NAME.mp4`` / ``NAME.mkv`` / ``NAME.webm`` with its FOA audio
  ``NAME.wav`` or ``NAME.flac`` in the same folder (.wav preferred when both exist).
  The item id is the video's path relative to ``src`` without suffix, "/" -> "_".
- ``"ytambigen"``: ``src/video/ID.{mp4,mkv,webm}`` and ``src/audio/ID.{wav,flac}``
  (no subfolders); the item id is ``ID``.

Both layouts may carry ``src/meta.csv`` with a header row holding ``id`` (the file
stem) and ``caption`` and/or ``label``; those values go into clip.json. A video without
audio, or audio without video, is reported as skipped.

The FOA audio must be AmbiX (ACN W, Y, Z, X; SN3D), 4 channels. Each pair is resampled
to ``sample_rate`` (polyphase), its video decoded with PyAV, resized to ``size``
equirectangular and sampled at ``fps`` (nearest frame by timestamp), checked for
matching length and silence, cut into non-overlapping ``clip_seconds`` pieces (a
remainder of at least half a clip is kept as a shorter last clip; nothing is padded)
and each piece written as one clip folder (``<item id>-<piece:03d>``).

**Caption corpora** (:func:`import_caption_corpus`): AudioCaps-like folders of mono or
stereo audio with a caption CSV, turned into curriculum pseudo-FOA clips without video.

Every clip folder appears atomically (:func:`~.clip.write_clip_dir`). A bad item never
aborts an import: its reason is logged and listed in :attr:`ImportSummary.skipped`.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from swansphere.errors import InputError
from swansphere.foa.encode import pseudo_foa
from swansphere.foa.io import check_sample_rate, read_audio, resample, write_foa
from swansphere_training.data.clip import AUDIO_FILE, META_FILE, VIDEO_FILE, write_json_atomic
from swansphere_training.data.clip import write_clip_dir as _write_clip_dir

log = logging.getLogger(__name__)

LAYOUTS = ("sphere360", "ytambigen")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")
FOA_SUFFIXES = (".wav", ".flac")
CAPTION_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SILENCE_DBFS = -60.0  # RMS re full scale (a +-1 square wave is 0 dBFS)
MAX_LENGTH_MISMATCH_S = 0.5
ASPECT_TOLERANCE = 0.02  # relative deviation from 2:1 before a warning
PATH_COLUMNS = ("file", "path", "audio")
ID_COLUMNS = ("audiocap_id", "youtube_id")


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


@dataclass
class ImportSummary:
    """Outcome of an import.

    imported: source items (pairs or audio files) that gave at least one clip.
    clips_written: clip folders written. skipped: (item, reason) for every item or
    piece left out. seconds: audio written, summed over the clips, in seconds.
    elapsed_s: wall-clock time of the import in seconds.
    """

    imported: int = 0
    clips_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    elapsed_s: float = 0.0

    def skip(self, item: str | Path, reason: str) -> None:
        """Record and log one item (or piece) left out."""
        self.skipped.append((str(item), reason))
        log.warning("skipped %s: %s", item, reason)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the summary."""
        return {
            "imported": self.imported,
            "clips_written": self.clips_written,
            "skipped": [{"item": item, "reason": reason} for item, reason in self.skipped],
            "seconds": round(self.seconds, 3),
            "elapsed_s": round(self.elapsed_s, 3),
        }


# --------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of ``audio`` (any shape) in dB re full scale; -inf for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(audio)))) if np.size(audio) else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def plan_pieces(duration_s: float, clip_seconds: float) -> list[tuple[float, float]]:
    """Non-overlapping (start_s, length_s) pieces of a recording of ``duration_s``.

    Whole clips of ``clip_seconds`` from 0; a remainder of at least half a clip becomes
    a shorter last piece, a shorter one is dropped. Nothing is padded.
    """
    eps = 1e-9  # durations computed from sample counts land a hair off whole clips
    whole = int(math.floor(duration_s / clip_seconds + eps))
    pieces = [(i * clip_seconds, clip_seconds) for i in range(whole)]
    rest = duration_s - whole * clip_seconds
    if rest >= clip_seconds / 2 - eps and rest > eps:
        pieces.append((whole * clip_seconds, rest))
    return pieces


def frame_count(length_s: float, fps: float) -> int:
    """Video frames of a piece of ``length_s`` at ``fps`` (at least one)."""
    return max(1, round(length_s * fps))


def safe_id(text: str) -> str:
    """A clip-id-safe version of ``text``: [A-Za-z0-9_.-] only, never hidden or empty."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).lstrip("._")
    return cleaned or "item-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def _unique_ids(names: Iterable[str]) -> list[str]:
    """safe_id of each name, with a short hash appended where two would collide."""
    names = list(names)
    ids = [safe_id(n) for n in names]
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    return [
        i if counts[i] == 1 else f"{i}-{hashlib.sha1(n.encode()).hexdigest()[:8]}"
        for i, n in zip(ids, names, strict=True)
    ]


def _visible_files(folder: Path, suffixes: tuple[str, ...], recursive: bool) -> list[Path]:
    """Files under ``folder`` with one of ``suffixes`` (any case), no hidden path parts."""
    found = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(
        p
        for p in found
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header, keys lower-cased and values stripped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [
                {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
                for row in reader
            ]
            header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not header:
        raise InputError(f"{path} has no header row")
    return rows


# --------------------------------------------------------------------------------------
# Paired corpora: discovery
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairedItem:
    """One (video, FOA) pair of a paired corpus, with its meta.csv values if any."""

    item_id: str
    video: Path
    audio: Path
    label: str | None = None
    caption: str | None = None


def read_meta_csv(path: Path) -> dict[str, dict[str, str | None]]:
    """``{id: {"label": .., "caption": ..}}`` from a meta.csv with id,caption/label columns."""
    rows = _read_csv(path)
    if rows and "id" not in rows[0]:
        raise InputError(
            f"{path} needs an 'id' column (and 'caption' and/or 'label'), found {sorted(rows[0])}"
        )
    return {
        row["id"]: {"label": row.get("label") or None, "caption": row.get("caption") or None}
        for row in rows
        if row.get("id")
    }


def _pair_audio(video: Path) -> Path | None:
    """The FOA file with the video's stem in its folder (.wav before .flac), if any."""
    for suffix in FOA_SUFFIXES:
        for candidate in (video.with_suffix(suffix), video.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def find_pairs(src: Path, layout: str) -> tuple[list[PairedItem], list[tuple[str, str]]]:
    """The (video, FOA) pairs of a paired corpus and the (path, reason) of unpaired files.

    See the module docstring for the two layouts.
    """
    src = Path(src)
    orphans: list[tuple[str, str]] = []
    if layout == "sphere360":
        videos = _visible_files(src, VIDEO_SUFFIXES, recursive=True)
        audios = _visible_files(src, FOA_SUFFIXES, recursive=True)
        names = [
            str(v.relative_to(src).with_suffix("")).replace("\\", "/").replace("/", "_")
            for v in videos
        ]
        pairs = [(name, v, _pair_audio(v)) for name, v in zip(names, videos, strict=True)]
        video_stems = {v.with_suffix("") for v in videos}
        orphans += [
            (str(a), "no video with the same name next to this audio file")
            for a in audios
            if a.with_suffix("") not in video_stems
        ]
    elif layout == "ytambigen":
        vdir, adir = src / "video", src / "audio"
        for folder in (vdir, adir):
            if not folder.is_dir():
                raise InputError(f"ytambigen layout needs {folder} (video/ and audio/ folders)")
        by_stem: dict[str, Path] = {}
        for a in _visible_files(adir, FOA_SUFFIXES, recursive=False):
            by_stem.setdefault(a.stem, a)  # FOA_SUFFIXES order: .wav before .flac
            if FOA_SUFFIXES.index(a.suffix.lower()) < FOA_SUFFIXES.index(
                by_stem[a.stem].suffix.lower()
            ):
                by_stem[a.stem] = a
        videos = _visible_files(vdir, VIDEO_SUFFIXES, recursive=False)
        names = [v.stem for v in videos]
        pairs = [(v.stem, v, by_stem.get(v.stem)) for v in videos]
        video_ids = set(names)
        orphans += [
            (str(a), "no video with this id in video/")
            for stem, a in by_stem.items()
            if stem not in video_ids
        ]
    else:
        raise InputError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    meta = read_meta_csv(src / "meta.csv") if (src / "meta.csv").is_file() else {}
    items = []
    for item_id, (_, video, audio) in zip(_unique_ids(names), pairs, strict=True):
        if audio is None:
            orphans.append((str(video), "no FOA audio file (.wav/.flac) for this video"))
            continue
        values = meta.get(video.stem, {})
        items.append(PairedItem(item_id, video, audio, values.get("label"), values.get("caption")))
    return items, orphans


# --------------------------------------------------------------------------------------
# Paired corpora: decoding
# --------------------------------------------------------------------------------------


def read_foa_file(path: Path) -> tuple[np.ndarray, int]:
    """(4, n) float64 AmbiX audio and its rate; InputError naming a wrong channel count."""
    try:
        channels = sf.info(str(path)).channels
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"cannot read audio {path}: {exc}") from exc
    if channels != 4:
        raise InputError(
            f"FOA audio must have 4 channels (AmbiX W, Y, Z, X), "
            f"{path.name} has {channels} channel(s)"
        )
    return read_audio(path, channels=4)


def sample_video(path: Path, times: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Decode a video and keep, for each time in ``times``, the nearest frame, resized.

    times: (k,) seconds from the first frame, ascending. size: (width, height).
    Returns frames (k, height, width, 3) uint8 RGB and the video duration in seconds
    (last frame time minus first, plus one frame period). Times past the end get the
    last frame. Frames are converted (and resized) only when kept, so decoding long
    high-resolution videos stays cheap in memory. Warns when the source is not 2:1.
    """
    import av  # imported here: discovering and summarising corpora needs no PyAV

    width, height = size
    times = np.asarray(times, dtype=np.float64)
    out = np.empty((times.size, height, width, 3), dtype=np.uint8)
    k = 0
    prev_t: float | None = None
    prev: Any = None  # av.VideoFrame nearest so far
    prev_rgb: np.ndarray | None = None  # its conversion, made when first needed

    def keep(frame: Any) -> np.ndarray:
        return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            t0: float | None = None
            for i, frame in enumerate(container.decode(stream)):
                if t0 is None:
                    _warn_aspect(path, frame.width, frame.height, size)
                if frame.time is not None:
                    t_abs = float(frame.time)
                elif rate:
                    t_abs = i / float(rate)
                else:
                    raise InputError(f"{path.name} has neither timestamps nor a frame rate")
                t0 = t_abs if t0 is None else t0
                t = t_abs - t0
                if prev_t is not None and t <= prev_t:
                    continue  # a repeated or out-of-order timestamp adds nothing
                # Every target up to the midpoint between the previous frame and this
                # one is nearer to the previous frame.
                while prev_t is not None and k < times.size and times[k] <= (prev_t + t) / 2:
                    prev_rgb = keep(prev) if prev_rgb is None else prev_rgb
                    out[k] = prev_rgb
                    k += 1
                prev_t, prev, prev_rgb = t, frame, None
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot decode video {path.name}: {exc}") from exc
    if prev is None or prev_t is None:
        raise InputError(f"{path.name} holds no decodable video frames")
    if k < times.size:
        out[k:] = keep(prev) if prev_rgb is None else prev_rgb
    period = 1.0 / float(rate) if rate else 0.0
    return out, prev_t + period


def _warn_aspect(path: Path, width: int, height: int, size: tuple[int, int]) -> None:
    """Log a warning when a source video is not 2:1 equirectangular."""
    if height <= 0 or abs(width / height / 2.0 - 1.0) > ASPECT_TOLERANCE:
        log.warning(
            "%s is %dx%d, not 2:1 equirectangular; resizing it to %dx%d distorts it",
            path,
            width,
            height,
            size[0],
            size[1],
        )


# --------------------------------------------------------------------------------------
# Writing clips
# --------------------------------------------------------------------------------------


def _clip_meta(
    clip_id: str, split: str, origin: str, length_s: float, sample_rate: int, **extra: Any
) -> dict[str, Any]:
    """clip.json for an imported clip: no ground truth (sources [] and room null)."""
    meta: dict[str, Any] = {
        "id": clip_id,
        "split": split,
        "seed": None,
        "origin": origin,
        "duration_s": round(length_s, 6),
        "sample_rate": sample_rate,
        "video": None,
        "sources": [],
        "distractors": [],
        "room": None,
        "ambience_db": None,
        "label": None,
        "caption": None,
    }
    meta.update(extra)
    return meta


def write_clip(
    split_dir: Path,
    meta: dict[str, Any],
    foa: np.ndarray,
    frames: np.ndarray | None,
    fps: float,
) -> Path:
    """Write one clip folder atomically: clip.wav (float32), clip.mp4 if frames, clip.json."""
    from swansphere_training.corpus.video import write_mp4  # PyAV only when writing video

    def fill(tmp: Path) -> None:
        write_foa(tmp / AUDIO_FILE, foa, meta["sample_rate"])
        if frames is not None:
            write_mp4(tmp / VIDEO_FILE, frames, fps)
        write_json_atomic(tmp / META_FILE, meta)

    return _write_clip_dir(split_dir, meta["id"], fill)


def _run_items(
    items: list[Any],
    name: Callable[[Any], str],
    work: Callable[[Any], None],
    summary: ImportSummary,
    desc: str,
    progress: bool,
) -> None:
    """Run ``work`` on each item with a progress bar, recording failures as skips."""
    for item in tqdm(items, desc=desc, unit="item", file=sys.stderr, disable=not progress):
        before = summary.clips_written
        try:
            work(item)
        except InputError as exc:
            summary.skip(name(item), str(exc))
        except Exception as exc:  # one broken file of any kind must not end the import
            summary.skip(name(item), f"{type(exc).__name__}: {exc}")
        if summary.clips_written > before:
            summary.imported += 1


def _check_common(clip_seconds: float, sample_rate: int) -> None:
    if not (math.isfinite(clip_seconds) and clip_seconds > 0):
        raise InputError(f"clip_seconds must be positive, got {clip_seconds}")
    check_sample_rate(sample_rate)


# --------------------------------------------------------------------------------------
# Paired corpora: import
# --------------------------------------------------------------------------------------


def _import_pair(
    item: PairedItem,
    split_dir: Path,
    layout: str,
    split: str,
    clip_seconds: float,
    sample_rate: int,
    fps: float,
    size: tuple[int, int],
    summary: ImportSummary,
) -> None:
    """Import one (video, FOA) pair; InputError says why it is skipped as a whole."""
    audio, rate = read_foa_file(item.audio)
    level = rms_dbfs(audio[0])
    if level < SILENCE_DBFS:
        raise InputError(f"silent: W at {level:.1f} dBFS RMS, below {SILENCE_DBFS:.0f} dBFS")
    audio = resample(audio, rate, sample_rate)
    audio_s = audio.shape[1] / sample_rate
    # Frame times are planned from the audio; a shorter video keeps a prefix of them
    # (the pieces of a shorter length are a prefix of these pieces, frame for frame).
    planned = plan_pieces(audio_s, clip_seconds)
    if not planned:
        raise InputError(f"too short: {audio_s:.2f} s is less than half a clip")
    counts = [frame_count(length, fps) for _, length in planned]
    times = np.concatenate(
        [start + np.arange(n) / fps for (start, _), n in zip(planned, counts, strict=True)]
    )
    frames, video_s = sample_video(item.video, times, size)
    if abs(video_s - audio_s) > MAX_LENGTH_MISMATCH_S:
        raise InputError(
            f"mismatched lengths: audio {audio_s:.2f} s, video {video_s:.2f} s "
            f"(tolerance {MAX_LENGTH_MISMATCH_S} s)"
        )
    pieces = plan_pieces(min(audio_s, video_s), clip_seconds)
    if not pieces:
        raise InputError(f"too short: {min(audio_s, video_s):.2f} s is less than half a clip")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for i, (start, length) in enumerate(pieces):
        a0 = round(start * sample_rate)
        foa = audio[:, a0 : a0 + round(length * sample_rate)]
        piece_name = f"{item.audio} [{start:.2f}-{start + length:.2f} s]"
        level = rms_dbfs(foa[0])
        if level < SILENCE_DBFS:
            summary.skip(piece_name, f"silent piece: W at {level:.1f} dBFS RMS")
            continue
        n = frame_count(length, fps)
        clip_frames = frames[offsets[i] : offsets[i] + n]
        clip_id = f"{item.item_id}-{i:03d}"
        meta = _clip_meta(
            clip_id,
            split,
            layout,
            foa.shape[1] / sample_rate,
            sample_rate,
            video={"fps": fps, "width": size[0], "height": size[1], "frames": n},
            label=item.label,
            caption=item.caption,
            provenance={
                "video": item.video.name,
                "audio": item.audio.name,
                "start_s": round(start, 6),
            },
        )
        write_clip(split_dir, meta, foa, clip_frames, fps)
        summary.clips_written += 1
        summary.seconds += meta["duration_s"]


def import_paired_corpus(
    src: str | Path,
    dst: str | Path,
    layout: str,
    split: str = "train",
    clip_seconds: float = 10.0,
    sample_rate: int = 44100,
    fps: float = 4.0,
    size: tuple[int, int] = (256, 128),
    progress: bool = True,
) -> ImportSummary:
    """Import a folder of (360 video, FOA) pairs into ``dst/split`` as clip folders.

    layout: "sphere360" or "ytambigen" (see the module docstring). clip_seconds: piece
    length in s. sample_rate: output rate in Hz. fps: output video rate. size: output
    equirectangular (width, height), both even. Items are skipped (with the reason in
    the summary) for: no partner file, unreadable or corrupt files, FOA with other than
    4 channels, silent audio (W below -60 dBFS RMS), audio and video lengths differing
    by more than 0.5 s, or less than half a clip of material. Silent pieces of an
    otherwise good pair are skipped one by one.
    """
    start_time = time.monotonic()
    src, dst = Path(src), Path(dst)
    _check_common(clip_seconds, sample_rate)
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be positive, got {fps}")
    if len(size) != 2 or any(int(s) != s or s < 2 or s % 2 for s in size):
        raise InputError(f"size must be (width, height), even positive integers, got {size}")
    size = (int(size[0]), int(size[1]))
    if not src.is_dir():
        raise InputError(f"source corpus folder not found: {src}")
    summary = ImportSummary()
    items, orphans = find_pairs(src, layout)
    # A destination inside the source tree holds clip.mp4 + clip.wav pairs of earlier
    # imports; they must not be imported again.
    inside_dst = dst.resolve()
    items = [it for it in items if not it.video.resolve().is_relative_to(inside_dst)]
    for path, reason in orphans:
        if not Path(path).resolve().is_relative_to(inside_dst):
            summary.skip(path, reason)
    split_dir = dst / split

    def work(item: PairedItem) -> None:
        _import_pair(item, split_dir, layout, split, clip_seconds, sample_rate, fps, size, summary)

    _run_items(items, lambda it: str(it.video), work, summary, f"import {layout}", progress)
    summary.elapsed_s = time.monotonic() - start_time
    log.info(
        "imported %d of %d pairs from %s: %d clips, %.1f s, %d skipped",
        summary.imported,
        len(items),
        src,
        summary.clips_written,
        summary.seconds,
        len(summary.skipped),
    )
    return summary


# --------------------------------------------------------------------------------------
# Caption corpora
# --------------------------------------------------------------------------------------


@dataclass
class CaptionItem:
    """One audio file of a caption corpus with every caption the CSV gives it."""

    key: str  # clip id stem
    audio: Path
    captions: list[str]


def find_caption_csv(src: Path, split: str) -> Path:
    """``captions.csv``, else ``<split>.csv``, else the only .csv in ``src``."""
    for name in ("captions.csv", f"{split}.csv"):
        if (src / name).is_file():
            return src / name
    found = sorted(p for p in src.glob("*.csv") if p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(f"no caption CSV in {src} (expected captions.csv or {split}.csv)")
    raise InputError(
        f"several CSV files in {src} ({', '.join(p.name for p in found)}); "
        f"name the caption file captions.csv or {split}.csv"
    )


def _resolve_row_audio(row: dict[str, str], src: Path) -> tuple[Path | None, str]:
    """The audio file a CSV row names (None when missing) and a description of it.

    A path column (file/path/audio) is tried relative to ``src``, then to ``src/audio``
    (an absolute path stays as it is); otherwise audiocap_id then youtube_id name
    ``src/audio/<id>.<ext>``.
    """
    given = next((row[c] for c in PATH_COLUMNS if row.get(c)), None)
    if given is not None:
        for candidate in (src / given, src / "audio" / given):
            if candidate.is_file():
                return candidate, given
        return None, given
    ids = [row[c] for c in ID_COLUMNS if row.get(c)]
    for value in ids:
        for suffix in CAPTION_AUDIO_SUFFIXES:
            candidate = src / "audio" / f"{value}{suffix}"
            if candidate.is_file():
                return candidate, value
    return None, "audio/" + (ids[0] if ids else "?")


def find_caption_items(
    csv_path: Path, src: Path
) -> tuple[list[CaptionItem], list[tuple[str, str]]]:
    """Caption items (rows grouped per audio file, CSV order) and (row, reason) of bad rows."""
    rows = _read_csv(csv_path)
    if rows:
        columns = set(rows[0])
        if "caption" not in columns:
            raise InputError(f"{csv_path} needs a 'caption' column, found {sorted(columns)}")
        if not columns & set(PATH_COLUMNS + ID_COLUMNS):
            raise InputError(
                f"{csv_path} needs an audio column (one of "
                f"{', '.join(PATH_COLUMNS + ID_COLUMNS)}), found {sorted(columns)}"
            )
    by_audio: dict[Path, list[str]] = {}
    bad: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        audio, described = _resolve_row_audio(row, src)
        if audio is None:
            bad.append((f"{csv_path.name}:{line}", f"audio file not found: {described}"))
        elif not row.get("caption"):
            bad.append((f"{csv_path.name}:{line}", "empty caption"))
        else:
            by_audio.setdefault(audio, []).append(row["caption"])
    names = []
    for audio in by_audio:
        try:
            names.append(str(audio.resolve().relative_to(src.resolve()).with_suffix("")))
        except ValueError:  # an absolute path outside src
            names.append(audio.stem)
    keys = _unique_ids(n.replace("\\", "/").removeprefix("audio/").replace("/", "_") for n in names)
    items = [
        CaptionItem(key, audio, caps)
        for key, (audio, caps) in zip(keys, by_audio.items(), strict=True)
    ]
    return items, bad


def read_mono_stereo(path: Path) -> tuple[np.ndarray, int]:
    """(n,) mono or (2, n) stereo float64 audio and its rate; InputError otherwise."""
    try:
        channels = sf.info(str(path)).channels
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise InputError(f"cannot read audio {path}: {exc}") from exc
    if channels > 2:
        raise InputError(
            f"{path.name} has {channels} channels; a caption corpus must be mono or stereo"
        )
    audio, rate = read_audio(path)
    return (audio[0] if channels == 1 else audio), rate


def dipole_axis(seed: int, clip_id: str) -> str:
    """The pseudo-FOA dipole axis of a clip, drawn from an rng seeded by (seed, clip id).

    Keyed on the clip id rather than on the order of import, so a clip keeps its axis
    when other files are added, removed or skipped.
    """
    rng = np.random.default_rng([int(seed), zlib.crc32(clip_id.encode())])
    return str(rng.choice(["x", "y", "z"]))


def _import_caption_item(
    item: CaptionItem,
    split_dir: Path,
    split: str,
    clip_seconds: float,
    sample_rate: int,
    seed: int,
    origin: str,
    summary: ImportSummary,
) -> None:
    """Import one audio file of a caption corpus as pseudo-FOA clips."""
    audio, rate = read_mono_stereo(item.audio)
    level = rms_dbfs(audio)
    if level < SILENCE_DBFS:
        raise InputError(f"silent: {level:.1f} dBFS RMS, below {SILENCE_DBFS:.0f} dBFS")
    audio = resample(audio, rate, sample_rate)
    length_s = audio.shape[-1] / sample_rate
    pieces = plan_pieces(length_s, clip_seconds)
    if not pieces:
        raise InputError(f"too short: {length_s:.2f} s is less than half a clip")
    for i, (start, length) in enumerate(pieces):
        a0 = round(start * sample_rate)
        piece = audio[..., a0 : a0 + round(length * sample_rate)]
        level = rms_dbfs(piece)
        if level < SILENCE_DBFS:
            summary.skip(
                f"{item.audio} [{start:.2f}-{start + length:.2f} s]",
                f"silent piece: {level:.1f} dBFS RMS",
            )
            continue
        clip_id = f"{item.key}-{i:03d}"
        axis = dipole_axis(seed, clip_id)
        foa = pseudo_foa(piece, axis)
        meta = _clip_meta(
            clip_id,
            split,
            origin,
            piece.shape[-1] / sample_rate,
            sample_rate,
            seed=int(seed),
            caption=item.captions[0],
            captions=item.captions,
            pseudo_foa={"axis": axis, "channels": 1 if audio.ndim == 1 else 2},
            provenance={"audio": item.audio.name, "start_s": round(start, 6)},
        )
        write_clip(split_dir, meta, foa, None, 0.0)
        summary.clips_written += 1
        summary.seconds += meta["duration_s"]


def import_caption_corpus(
    src: str | Path,
    dst: str | Path,
    split: str = "train",
    clip_seconds: float = 10.0,
    sample_rate: int = 44100,
    seed: int = 0,
    origin: str = "captions",
    progress: bool = True,
) -> ImportSummary:
    """Import an AudioCaps-like caption corpus as pseudo-FOA clips (no video).

    src holds a caption CSV (:func:`find_caption_csv`) with a ``caption`` column and
    either a path column (``file``, ``path`` or ``audio``: relative to src, to
    src/audio, or absolute) or ``audiocap_id`` / ``youtube_id`` naming
    ``src/audio/<id>.{wav,flac,ogg,mp3}``. Rows naming the same file are grouped: the
    clip's "caption" is the first and "captions" lists them all. Mono/stereo audio
    becomes curriculum pseudo-FOA (W = L + R, one dipole drawn per clip holds L - R; a
    mono file has silent dipoles). Missing, unreadable, >2-channel, silent and too short
    files are skipped with their reason.
    """
    start_time = time.monotonic()
    src, dst = Path(src), Path(dst)
    _check_common(clip_seconds, sample_rate)
    if not src.is_dir():
        raise InputError(f"source corpus folder not found: {src}")
    summary = ImportSummary()
    items, bad_rows = find_caption_items(find_caption_csv(src, split), src)
    for row, reason in bad_rows:
        summary.skip(row, reason)
    split_dir = dst / split

    def work(item: CaptionItem) -> None:
        _import_caption_item(
            item, split_dir, split, clip_seconds, sample_rate, seed, origin, summary
        )

    _run_items(items, lambda it: str(it.audio), work, summary, "import captions", progress)
    summary.elapsed_s = time.monotonic() - start_time
    log.info(
        "imported %d of %d audio files from %s: %d clips, %.1f s, %d skipped",
        summary.imported,
        len(items),
        src,
        summary.clips_written,
        summary.seconds,
        len(summary.skipped),
    )
    return summary
