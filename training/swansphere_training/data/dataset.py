"""The dataset API every trainer consumes: clip records, a scanned clip set and a torch view.

:class:`ClipDataset` scans a corpus in the clip format of :mod:`.clip` (procedural,
imported or caption corpora alike) and holds one :class:`ClipRecord` per valid clip
folder. Broken folders (clip.json unreadable or invalid, clip.wav missing, clip.mp4
missing although clip.json announces a video) are skipped, logged and listed in
``ClipDataset.skipped`` so that a corpus with a few bad clips still trains.

:class:`TorchClipDataset` turns records into fixed-size tensors for a
``torch.utils.data.DataLoader``; :func:`collate_clips` batches them, filling absent video
with zeros and a ``has_video`` mask (the trainer substitutes its null embedding there).

Audio is AmbiX FOA (ACN W, Y, Z, X; SN3D). Video is equirectangular RGB (the convention
of :mod:`swansphere.foa.panorama`: the centre column is the front).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from swansphere.errors import InputError
from swansphere.foa.io import read_foa, resample
from swansphere_training.data.clip import (
    AUDIO_FILE,
    CAPTION_FILE,
    META_FILE,
    VIDEO_FILE,
    SourceTrack,
    clip_dirs,
    source_tracks,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# One clip
# --------------------------------------------------------------------------------------


@dataclass
class ClipRecord:
    """One clip folder: its path, its clip.json and its caption.json (None when absent)."""

    path: Path
    meta: dict[str, Any]
    caption: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def split(self) -> str:
        """The split named in clip.json, else the name of the folder holding the clip."""
        return str(self.meta.get("split") or self.path.parent.name)

    @property
    def duration_s(self) -> float:
        """Clip duration in seconds, as recorded in clip.json."""
        return float(self.meta["duration_s"])

    @property
    def sample_rate(self) -> int:
        """Audio sample rate in Hz, as recorded in clip.json."""
        return int(self.meta["sample_rate"])

    @property
    def has_video(self) -> bool:
        """True when clip.json describes a video and clip.mp4 exists."""
        return self.meta.get("video") is not None and (self.path / VIDEO_FILE).is_file()

    @property
    def tracks(self) -> list[SourceTrack]:
        """Ground-truth source tracks (empty for real and caption clips)."""
        return source_tracks(self.meta)

    def load_audio(self) -> tuple[np.ndarray, int]:
        """The clip's FOA as (4, samples) float64, AmbiX ACN/SN3D, and its rate in Hz."""
        return read_foa(self.path / AUDIO_FILE)

    def load_video(self) -> tuple[np.ndarray, float]:
        """The clip's frames (n, H, W, 3) uint8 RGB equirectangular and their rate in fps.

        Raises InputError when the clip has no video or the file cannot be decoded.
        """
        # Imported here so that audio-only users do not pay for PyAV (and the module
        # loads even where the video module is unavailable).
        from swansphere.generation.video import read_video as read_mp4

        if not self.has_video:
            raise InputError(f"clip {self.id} at {self.path} has no video")
        return read_mp4(self.path / VIDEO_FILE)

    def caption_text(self) -> str | None:
        """caption.json "caption" when present, else clip.json "caption", else None.

        Empty or whitespace-only captions count as absent.
        """
        for source in (self.caption, self.meta):
            text = (source or {}).get("caption")
            if isinstance(text, str) and text.strip():
                return text.strip()
        return None


# --------------------------------------------------------------------------------------
# Validation and scanning
# --------------------------------------------------------------------------------------


def _positive_number(meta: dict[str, Any], key: str, where: str = "clip.json") -> float:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where} field {key!r} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{where} field {key!r} must be positive and finite, got {value!r}")
    return float(value)


def validate_clip_meta(meta: Any) -> None:
    """Raise InputError naming the first problem of a parsed clip.json, if any.

    Checks what trainers rely on: an object with a non-empty string ``id``, positive
    ``duration_s`` and integer ``sample_rate``, ``video`` null or an object with positive
    ``fps``, ``width``, ``height`` and ``frames``, and ``sources`` that parse as tracks.
    """
    if not isinstance(meta, dict):
        raise InputError(f"clip.json must hold a JSON object, got {type(meta).__name__}")
    if not isinstance(meta.get("id"), str) or not meta["id"]:
        raise InputError(f"clip.json field 'id' must be a non-empty string, got {meta.get('id')!r}")
    _positive_number(meta, "duration_s")
    rate = _positive_number(meta, "sample_rate")
    if rate != int(rate):
        raise InputError(f"clip.json field 'sample_rate' must be an integer, got {rate}")
    video = meta.get("video")
    if video is not None:
        if not isinstance(video, dict):
            raise InputError(f"clip.json field 'video' must be an object or null, got {video!r}")
        for key in ("fps", "width", "height", "frames"):
            _positive_number(video, key, where="clip.json video")
    try:
        source_tracks(meta)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"clip.json field 'sources' is malformed: {exc!r}") from exc


def _read_json(path: Path) -> Any:
    """Parse a JSON file; InputError naming the file when it is unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path.name}: {exc}") from exc


def load_clip(path: Path) -> ClipRecord:
    """Load and validate the clip folder ``path``; InputError names what is broken.

    A broken caption.json does not make the clip broken (its audio and video are fine):
    it is logged and the record gets no caption.json (``require_caption`` then leaves the
    clip out unless clip.json carries a caption).
    """
    path = Path(path)
    meta = _read_json(path / META_FILE)
    validate_clip_meta(meta)
    if not (path / AUDIO_FILE).is_file():
        raise InputError(f"{AUDIO_FILE} missing")
    if meta.get("video") is not None and not (path / VIDEO_FILE).is_file():
        raise InputError(f"{VIDEO_FILE} missing although clip.json describes a video")
    caption = None
    if (path / CAPTION_FILE).is_file():
        try:
            caption = _read_json(path / CAPTION_FILE)
            if not isinstance(caption, dict):
                raise InputError(f"{CAPTION_FILE} must hold a JSON object")
        except InputError as exc:
            log.warning("ignoring caption of clip %s: %s", path, exc)
            caption = None
    return ClipRecord(path, meta, caption)


def scan_clips(
    root: Path,
    split: str | None = None,
    require_video: bool = False,
    require_caption: bool = False,
) -> tuple[list[ClipRecord], list[tuple[Path, str]]]:
    """Valid clips under ``root`` (or ``root/split``) and the (path, reason) of the others.

    Broken folders are logged as warnings; clips left out only because they lack the
    video or caption asked for are counted in one info line.
    """
    records: list[ClipRecord] = []
    skipped: list[tuple[Path, str]] = []
    unwanted: Counter[str] = Counter()
    for path in clip_dirs(Path(root), split):
        try:
            record = load_clip(path)
        except InputError as exc:
            log.warning("skipping clip folder %s: %s", path, exc)
            skipped.append((path, str(exc)))
            continue
        reason = None
        if require_video and not record.has_video:
            reason = "no video"
        elif require_caption and record.caption_text() is None:
            reason = "no caption"
        if reason:
            unwanted[reason] += 1
            skipped.append((path, reason))
            continue
        records.append(record)
    for reason, count in unwanted.items():
        log.info("left out %d clip(s) under %s: %s", count, root, reason)
    return records, skipped


class ClipDataset(Sequence[ClipRecord]):
    """The valid clips of a corpus, sorted by path.

    root: corpus folder (holding split folders). split: one split folder, or None for
    all. require_video / require_caption: leave out clips without them.
    ``skipped`` lists (path, reason) for every clip folder left out at scan time.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        require_video: bool = False,
        require_caption: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = split
        base = self.root / split if split else self.root
        if not base.is_dir():
            raise InputError(f"corpus folder not found: {base}")
        self.records, self.skipped = scan_clips(self.root, split, require_video, require_caption)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> ClipRecord: ...

    @overload
    def __getitem__(self, index: slice) -> ClipDataset: ...

    def __getitem__(self, index: int | slice) -> ClipRecord | ClipDataset:
        if isinstance(index, slice):
            return self._subset(self.records[index])
        return self.records[index]

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return (
            f"ClipDataset(root={str(self.root)!r}, split={self.split!r}, "
            f"clips={len(self)}, skipped={len(self.skipped)})"
        )

    @property
    def total_seconds(self) -> float:
        """Summed duration of the clips, in seconds."""
        return float(sum(r.duration_s for r in self.records))

    def filter(self, predicate: Callable[[ClipRecord], bool]) -> ClipDataset:
        """A new dataset of the clips for which ``predicate`` holds (``skipped`` is kept)."""
        return self._subset([r for r in self.records if predicate(r)])

    def _subset(self, records: list[ClipRecord]) -> ClipDataset:
        subset = copy.copy(self)
        subset.records = list(records)
        return subset


# --------------------------------------------------------------------------------------
# Torch view
# --------------------------------------------------------------------------------------


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.cache
def limit_heap_fragmentation(mmap_threshold: int = 64 * 1024) -> bool:
    """Have glibc serve blocks above ``mmap_threshold`` bytes with their own mappings and
    return freed heap tops at once; True when it took (glibc), False elsewhere (a no-op).

    Why: a dataset that keeps decoded clips in memory interleaves its long-lived 1 MB
    arrays with the decoder's larger short-lived buffers, and glibc's growing heap then
    keeps the freed pages. A direction run over 6000 cached clips held about 3.5 MB
    resident per clip this way (heading past this machine's 24 GB); with these settings
    about 1.5 MB. Equivalent to MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ in the
    environment; it applies to the whole process, once."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    took = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return took and mallopt(_M_TRIM_THRESHOLD, 0) == 1


def crop_or_pad(audio: np.ndarray, offset: int, length: int) -> np.ndarray:
    """Samples [offset, offset + length) of (channels, n) audio, zero-padded past the end."""
    out = np.zeros((audio.shape[0], length), dtype=audio.dtype)
    piece = audio[:, offset : offset + length]
    out[:, : piece.shape[1]] = piece
    return out


def frame_indices(
    start_s: float, window_s: float, num_frames: int, fps: float, n: int
) -> np.ndarray:
    """Nearest source frame (n frames at ``fps``, frame i shown at i / fps) per output frame.

    Output frame j shows time start_s + j * window_s / num_frames; indices past the last
    source frame repeat it. Returns (num_frames,) int64.
    """
    times = start_s + np.arange(num_frames) * (window_s / num_frames)
    # floor(x + 0.5) rather than round(): ties go to the later frame, never to banker's.
    return np.clip(np.floor(times * fps + 0.5).astype(np.int64), 0, n - 1)


class TorchClipDataset(torch.utils.data.Dataset):
    """Fixed-size tensors of clips for a DataLoader (use :func:`collate_clips` to batch).

    Each item is a dict:

    - ``foa``: float32 (4, num_samples), AmbiX ACN/SN3D at ``sample_rate`` Hz (clips at
      another rate are resampled), cropped to num_samples from offset 0 or, with
      ``random_crop``, a uniformly drawn offset; zero-padded at the end when shorter.
    - ``video``: uint8 (num_frames, 3, H, W) of the same time window, nearest frame per
      output time, resized to ``frame_size`` (width, height) when given; a clip without
      video gives an empty (0, 3, H, W) tensor (H = W = 0 when frame_size is None).
    - ``has_video``: bool scalar tensor.
    - ``caption``: str, "" when the clip has none.
    - ``id``: str clip id. ``start_s``: float offset of the crop in the clip, seconds.

    Random offsets come from torch's global RNG (or ``generator``), which DataLoader
    seeds differently per worker and epoch.
    """

    def __init__(
        self,
        clips: Sequence[ClipRecord],
        num_samples: int,
        sample_rate: int = 44100,
        num_frames: int = 40,
        frame_size: tuple[int, int] | None = None,
        random_crop: bool = False,
        generator: torch.Generator | None = None,
        cache: bool = False,
    ) -> None:
        if int(num_samples) != num_samples or num_samples < 1:
            raise InputError(f"num_samples must be a positive integer, got {num_samples}")
        if int(num_frames) != num_frames or num_frames < 1:
            raise InputError(f"num_frames must be a positive integer, got {num_frames}")
        if int(sample_rate) != sample_rate or sample_rate < 1:
            raise InputError(f"sample_rate must be a positive integer, got {sample_rate}")
        if frame_size is not None and (len(frame_size) != 2 or min(frame_size) < 1):
            raise InputError(f"frame_size must be (width, height) > 0, got {frame_size}")
        self.clips = clips
        self.num_samples = int(num_samples)
        self.sample_rate = int(sample_rate)
        self.num_frames = int(num_frames)
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.random_crop = random_crop
        self.generator = generator
        # cache: keep each clip's resampled audio and resized frames in memory after the
        # first read (training re-reads every clip every epoch; decoding dominates on CPU).
        self.cache = cache
        if cache:
            limit_heap_fragmentation()
        self._audio_cache: dict[int, np.ndarray] = {}
        self._video_cache: dict[int, tuple[np.ndarray, float]] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def _offset(self, n: int) -> int:
        if not self.random_crop or n <= self.num_samples:
            return 0
        high = n - self.num_samples + 1
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def _video(self, record: ClipRecord, start_s: float) -> torch.Tensor:
        """(num_frames, 3, H, W) uint8 frames of the crop window, or (0, 3, H, W)."""
        if not record.has_video:
            width, height = self.frame_size or (0, 0)
            return torch.zeros((0, 3, height, width), dtype=torch.uint8)
        key = id(record)
        if self.cache and key in self._video_cache:
            frames, fps = self._video_cache[key]
        else:
            frames, fps = record.load_video()  # (n, H, W, 3)
            if self.cache:
                frames = self._resize(torch.from_numpy(frames).permute(0, 3, 1, 2))
                frames = frames.permute(0, 2, 3, 1).numpy()
                self._video_cache[key] = (frames, fps)
        window_s = self.num_samples / self.sample_rate
        idx = frame_indices(start_s, window_s, self.num_frames, fps, frames.shape[0])
        video = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2)
        return self._resize(video).contiguous()

    def _resize(self, video: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) uint8 resized to ``frame_size`` when given (antialiased bilinear)."""
        if self.frame_size is None or video.shape[-2:] == (self.frame_size[1], self.frame_size[0]):
            return video
        size = (self.frame_size[1], self.frame_size[0])
        resized = torch.nn.functional.interpolate(
            video.float(), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        return resized.round().clamp(0, 255).to(torch.uint8)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.clips[index]
        if self.cache and id(record) in self._audio_cache:
            audio = self._audio_cache[id(record)]
        else:
            audio, rate = record.load_audio()
            audio = resample(audio, rate, self.sample_rate).astype(np.float32)
            if self.cache:
                self._audio_cache[id(record)] = audio
        offset = self._offset(audio.shape[1])
        foa = crop_or_pad(audio, offset, self.num_samples).astype(np.float32)
        start_s = offset / self.sample_rate
        video = self._video(record, start_s)
        return {
            "foa": torch.from_numpy(foa),
            "video": video,
            "has_video": torch.tensor(video.shape[0] > 0),
            "caption": record.caption_text() or "",
            "id": record.id,
            "start_s": start_s,
        }


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`TorchClipDataset`.

    Returns foa (B, 4, num_samples) float32, video (B, F, 3, H, W) uint8 with zeros where
    ``has_video`` (B,) bool is False, caption and id as lists of str, start_s (B,) float64.
    F, H, W come from the clips that have video (all must agree; pass ``frame_size`` to
    the dataset when sources differ in size); a batch without video has F = 0.
    """
    if not items:
        raise InputError("cannot collate an empty batch")
    has_video = torch.stack([it["has_video"] for it in items])
    shapes = {tuple(it["video"].shape) for it in items if it["has_video"]}
    if len(shapes) > 1:
        raise InputError(
            f"clips in a batch have different video shapes {sorted(shapes)}; "
            "give TorchClipDataset a frame_size"
        )
    shape = shapes.pop() if shapes else tuple(items[0]["video"].shape)
    video = torch.zeros((len(items), *shape), dtype=torch.uint8)
    for i, it in enumerate(items):
        if it["has_video"]:
            video[i] = it["video"]
    return {
        "foa": torch.stack([it["foa"] for it in items]),
        "video": video,
        "has_video": has_video,
        "caption": [it["caption"] for it in items],
        "id": [it["id"] for it in items],
        "start_s": torch.tensor([it["start_s"] for it in items], dtype=torch.float64),
    }
