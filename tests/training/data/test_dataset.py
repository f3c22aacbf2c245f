"""Tests of training/swansphere_training/data/dataset.py on hand-written clip folders."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.foa.io import write_foa
from swansphere_training.corpus.video import write_mp4
from swansphere_training.data import dataset as dataset_module
from swansphere_training.data.clip import clip_dirs, write_clip_dir, write_json_atomic
from swansphere_training.data.dataset import (
    ClipDataset,
    TorchClipDataset,
    collate_clips,
    frame_indices,
    validate_clip_meta,
)

RATE = 44100
FPS = 4.0
W, H = 32, 16


def ramp_foa(seconds: float, rate: int = RATE) -> np.ndarray:
    """(4, n) test FOA whose every sample differs: channel c is 0.1 (c + 1) + 0.5 k / n."""
    n = round(seconds * rate)
    return 0.1 * np.arange(1, 5)[:, None] + 0.5 * np.arange(n)[None, :] / n


def grey_frames(n: int) -> np.ndarray:
    """(n, H, W, 3) uint8 frames; frame i is a uniform grey of level 20 + 9 i."""
    return np.stack([np.full((H, W, 3), 20 + 9 * i, dtype=np.uint8) for i in range(n)])


def source_index(frames: torch.Tensor) -> list[int]:
    """Source frame shown by each (3, H, W) frame, from its mean grey level."""
    return [round((float(f.float().mean()) - 20) / 9) for f in frames]


def make_meta(
    clip_id: str, seconds: float, rate: int = RATE, video: bool = True, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": clip_id,
        "split": "train",
        "seed": 1,
        "origin": "test",
        "duration_s": seconds,
        "sample_rate": rate,
        "video": {"fps": FPS, "width": W, "height": H, "frames": round(seconds * FPS)}
        if video
        else None,
        "sources": [],
        "label": None,
        "caption": None,
    }
    meta.update(extra)
    return meta


def make_clip(
    split_dir: Path,
    clip_id: str,
    seconds: float = 1.0,
    rate: int = RATE,
    video: bool = True,
    caption_json: Any = None,
    audio: np.ndarray | None = None,
    **extra: Any,
) -> Path:
    meta = make_meta(clip_id, seconds, rate, video, **extra)

    def fill(tmp: Path) -> None:
        write_foa(tmp / "clip.wav", ramp_foa(seconds, rate) if audio is None else audio, rate)
        if video:
            write_mp4(tmp / "clip.mp4", grey_frames(round(seconds * FPS)), FPS)
        write_json_atomic(tmp / "clip.json", meta)
        if caption_json is not None:
            write_json_atomic(tmp / "caption.json", caption_json)

    return write_clip_dir(split_dir, clip_id, fill)


TRACK = {
    "class": "siren",
    "class_id": 1,
    "motion": "moving",
    "level_db": -12.0,
    "trajectory": {
        "t": [0.0, 1.0],
        "azimuth_deg": [0.0, 90.0],
        "elevation_deg": [0.0, 10.0],
        "distance_m": [2.0, 3.0],
    },
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Three good train clips, one good val clip, and broken folders of every kind."""
    root = tmp_path / "corpus"
    train = root / "train"
    make_clip(
        train,
        "v0",
        caption_json={"caption": "a siren sweeps left"},
        caption="ignored: caption.json wins",
        sources=[TRACK],
    )
    make_clip(train, "a0", video=False, caption="rain on a roof")
    make_clip(train, "a1", seconds=2.0, video=False)
    make_clip(root / "val", "v1", caption="a dog barks", split="val")
    make_clip(train, "z_badcap", video=False, caption_json={"caption": "x"})
    (train / "z_badcap" / "caption.json").write_text("{broken")
    for name in ("b_json", "b_noid", "b_nowav", "b_nomp4", "b_sources", "b_rate"):
        make_clip(train, name)
    (train / "b_json" / "clip.json").write_text("{not json")
    meta = json.loads((train / "b_noid" / "clip.json").read_text())
    del meta["id"]
    write_json_atomic(train / "b_noid" / "clip.json", meta)
    (train / "b_nowav" / "clip.wav").unlink()
    (train / "b_nomp4" / "clip.mp4").unlink()
    write_json_atomic(
        train / "b_sources" / "clip.json", make_meta("b_sources", 1.0, sources=[{"class": "siren"}])
    )
    write_json_atomic(train / "b_rate" / "clip.json", make_meta("b_rate", 1.0, rate=-1))
    # A clip folder still being assembled (hidden temporary name) is never listed.
    hidden = train / ".x.tmp"
    hidden.mkdir()
    write_json_atomic(hidden / "clip.json", make_meta("x", 1.0))
    return root


def test_scan_skips_broken_clip_folders_with_reasons(corpus, caplog):
    with caplog.at_level(logging.WARNING, logger=dataset_module.__name__):
        data = ClipDataset(corpus, "train")
    assert [r.id for r in data] == ["a0", "a1", "v0", "z_badcap"]
    reasons = {p.name: r for p, r in data.skipped}
    assert set(reasons) == {"b_json", "b_noid", "b_nowav", "b_nomp4", "b_sources", "b_rate"}
    assert reasons["b_json"].startswith("cannot read clip.json")
    assert "'id'" in reasons["b_noid"]
    assert reasons["b_nowav"] == "clip.wav missing"
    assert reasons["b_nomp4"].startswith("clip.mp4 missing")
    assert "sources" in reasons["b_sources"]
    assert "sample_rate" in reasons["b_rate"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(name in warned for name in reasons)
    assert "z_badcap" in warned  # broken caption.json: logged, clip kept without it


def test_scan_follows_links_to_clip_folders(corpus, tmp_path):
    # A corpus assembled from links to another's clips (a subset to train on), with a
    # link back to its own root that must not loop.
    linked = tmp_path / "subset"
    (linked / "train").mkdir(parents=True)
    for name in ("v0", "a0"):
        (linked / "train" / name).symlink_to(corpus / "train" / name, target_is_directory=True)
    (linked / "train" / "loop").symlink_to(linked, target_is_directory=True)
    assert [r.id for r in ClipDataset(linked, "train")] == ["a0", "v0"]
    assert [p.name for p in clip_dirs(linked, "train")] == ["a0", "v0"]


def test_splits_requirements_filter_and_slices(corpus):
    everything = ClipDataset(corpus)
    assert len(everything) == 5 and {r.split for r in everything} == {"train", "val"}
    assert [r.id for r in ClipDataset(corpus, "val")] == ["v1"]
    with_video = ClipDataset(corpus, "train", require_video=True)
    assert [r.id for r in with_video] == ["v0"]
    assert "no video" in {reason for _, reason in with_video.skipped}
    captioned = ClipDataset(corpus, "train", require_caption=True)
    assert [r.id for r in captioned] == ["a0", "v0"]
    assert {p.name for p, r in captioned.skipped if r == "no caption"} == {"a1", "z_badcap"}
    long = everything.filter(lambda r: r.duration_s > 1.5)
    assert [r.id for r in long] == ["a1"] and isinstance(long, ClipDataset)
    assert len(everything) == 5  # filter makes a new dataset
    assert [r.id for r in everything[1:3]] == [r.id for r in everything.records[1:3]]
    assert everything.total_seconds == pytest.approx(6.0)
    with pytest.raises(InputError, match="not found"):
        ClipDataset(corpus, "test")


def test_clip_record_accessors(corpus):
    data = ClipDataset(corpus, "train")
    v0 = next(r for r in data if r.id == "v0")
    assert (v0.split, v0.duration_s, v0.sample_rate, v0.has_video) == ("train", 1.0, RATE, True)
    assert v0.caption_text() == "a siren sweeps left"
    (track,) = v0.tracks
    assert track.class_name == "siren"
    az, el = track.direction_at(np.array([0.5]))
    np.testing.assert_allclose(np.rad2deg([az[0], el[0]]), [45.0, 5.0])
    foa, rate = v0.load_audio()
    assert rate == RATE and foa.shape == (4, RATE)
    np.testing.assert_allclose(foa, ramp_foa(1.0), atol=1e-7)  # float32 on disk
    frames, fps = v0.load_video()
    assert frames.shape == (4, H, W, 3) and fps == FPS
    a0 = next(r for r in data if r.id == "a0")
    assert not a0.has_video and a0.caption_text() == "rain on a roof" and a0.tracks == []
    with pytest.raises(InputError, match="no video"):
        a0.load_video()
    a1 = next(r for r in data if r.id == "a1")
    assert a1.caption_text() is None


def test_validate_clip_meta_names_the_problem():
    validate_clip_meta(make_meta("ok", 1.0))
    with pytest.raises(InputError, match="JSON object"):
        validate_clip_meta([1, 2])
    with pytest.raises(InputError, match="duration_s"):
        validate_clip_meta(make_meta("x", 0.0))
    with pytest.raises(InputError, match="video"):
        validate_clip_meta(make_meta("x", 1.0, video=False) | {"video": {"fps": 4}})


def test_frame_indices_pick_the_nearest_frame():
    # 4 frames at 4 fps; window of 1 s from 0 at 4 output frames: identity.
    assert frame_indices(0.0, 1.0, 4, 4.0, 4).tolist() == [0, 1, 2, 3]
    # 2 output frames: times 0 and 0.5 s.
    assert frame_indices(0.0, 1.0, 2, 4.0, 4).tolist() == [0, 2]
    # From 0.3 s: times 0.3, 0.55, 0.8, 1.05 -> nearest 0.25, 0.5, 0.75, then past the end.
    assert frame_indices(0.3, 1.0, 4, 4.0, 4).tolist() == [1, 2, 3, 3]


def test_torch_dataset_shapes_crop_and_pad(corpus):
    data = ClipDataset(corpus, "train")
    ids = [r.id for r in data]
    torch_data = TorchClipDataset(data, num_samples=RATE // 2, num_frames=2)
    item = torch_data[ids.index("v0")]
    assert item["foa"].dtype == torch.float32 and item["foa"].shape == (4, RATE // 2)
    np.testing.assert_allclose(item["foa"].numpy(), ramp_foa(1.0)[:, : RATE // 2], atol=1e-7)
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (2, 3, H, W)
    assert source_index(item["video"]) == [0, 1]  # times 0 and 0.25 s of the 0.5-s window
    assert bool(item["has_video"]) and item["caption"] == "a siren sweeps left"
    assert item["id"] == "v0" and item["start_s"] == 0.0

    padded = TorchClipDataset(data, num_samples=RATE + 1000, num_frames=4)[ids.index("v0")]
    assert padded["foa"].shape == (4, RATE + 1000)
    assert torch.all(padded["foa"][:, RATE:] == 0)
    assert source_index(padded["video"]) == [0, 1, 2, 3]

    audio_only = TorchClipDataset(data, num_samples=100, frame_size=(16, 8))[ids.index("a1")]
    assert audio_only["video"].shape == (0, 3, 8, 16) and not bool(audio_only["has_video"])
    assert audio_only["caption"] == ""


def test_torch_dataset_random_crop_keeps_audio_and_video_aligned(corpus):
    data = ClipDataset(corpus, "train", require_video=True)
    torch_data = TorchClipDataset(
        data,
        num_samples=RATE // 4,
        num_frames=1,
        random_crop=True,
        generator=torch.Generator().manual_seed(0),
    )
    reference = ramp_foa(1.0)
    starts = set()
    for _ in range(20):
        item = torch_data[0]
        offset = round(item["start_s"] * RATE)
        assert 0 <= offset <= RATE - RATE // 4
        np.testing.assert_allclose(
            item["foa"].numpy(), reference[:, offset : offset + RATE // 4], atol=1e-7
        )
        # The one output frame shows the crop start: the nearest of the 4-fps frames.
        nearest = int(np.argmin(np.abs(np.arange(4) / FPS - item["start_s"])))
        assert source_index(item["video"]) == [nearest]
        starts.add(offset)
    assert len(starts) == 20


def test_torch_dataset_resamples_and_resizes(tmp_path):
    rate = 48000
    t = np.arange(rate) / rate
    sine = np.tile(0.5 * np.sin(2 * np.pi * 1000 * t), (4, 1))
    make_clip(tmp_path / "c" / "train", "r0", rate=rate, audio=sine)
    data = TorchClipDataset(
        ClipDataset(tmp_path / "c"), num_samples=RATE, num_frames=4, frame_size=(16, 8)
    )
    item = data[0]
    assert item["foa"].shape == (4, RATE)
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE)
    np.testing.assert_allclose(item["foa"][0, 500:-500].numpy(), expected[500:-500], atol=2e-3)
    assert item["video"].shape == (4, 3, 8, 16)
    assert source_index(item["video"]) == [0, 1, 2, 3]  # uniform grey survives resizing


def test_collate_fills_missing_video_with_zeros(corpus):
    data = ClipDataset(corpus, "train")
    torch_data = TorchClipDataset(data, num_samples=1000, num_frames=3)
    loader = torch.utils.data.DataLoader(torch_data, batch_size=4, collate_fn=collate_clips)
    (batch,) = list(loader)
    assert batch["foa"].shape == (4, 4, 1000) and batch["foa"].dtype == torch.float32
    assert batch["video"].shape == (4, 3, 3, H, W) and batch["video"].dtype == torch.uint8
    assert batch["id"] == ["a0", "a1", "v0", "z_badcap"]
    assert batch["has_video"].tolist() == [False, False, True, False]
    assert torch.all(batch["video"][[0, 1, 3]] == 0)
    assert batch["video"][2].float().mean() > 10
    assert batch["caption"] == ["rain on a roof", "", "a siren sweeps left", ""]
    audio_only = collate_clips([torch_data[0], torch_data[1]])
    assert audio_only["video"].shape == (2, 0, 3, 0, 0)
    with pytest.raises(InputError, match="empty batch"):
        collate_clips([])


def test_torch_dataset_rejects_bad_sizes(corpus):
    data = ClipDataset(corpus, "train")
    with pytest.raises(InputError, match="num_samples"):
        TorchClipDataset(data, num_samples=0)
    with pytest.raises(InputError, match="frame_size"):
        TorchClipDataset(data, num_samples=10, frame_size=(0, 8))


def test_datasets_that_keep_clips_in_memory_limit_heap_fragmentation(corpus, monkeypatch):
    from swansphere.models.direction import DIRECTION_PRESETS
    from swansphere_training.stages import direction as direction_stage

    calls: list[str] = []
    monkeypatch.setattr(dataset_module, "limit_heap_fragmentation", lambda: calls.append("clips"))
    monkeypatch.setattr(direction_stage, "limit_heap_fragmentation", lambda: calls.append("cue"))
    data = ClipDataset(corpus, "train")
    TorchClipDataset(data, num_samples=100)
    assert calls == []  # nothing kept, nothing changed
    TorchClipDataset(data, num_samples=100, cache=True)
    direction_stage.PatchFrameDataset(list(data), DIRECTION_PRESETS["tiny"], crop=4)
    assert calls == ["clips", "cue"]


def test_limit_heap_fragmentation_takes_on_glibc_only():
    """In a fresh process (it changes the process's allocator once): glibc accepts both
    settings, any other C library leaves them (False), and the process goes on allocating
    and freeing as before."""
    import platform
    import subprocess
    import sys

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    code = (
        "import numpy as np\n"
        "from swansphere_training.data.dataset import limit_heap_fragmentation as limit\n"
        "kept = [np.ones(1 << 20)[: 1 << 17].copy() for _ in range(20)]\n"
        "print(limit(), limit(), sum(float(k.sum()) for k in kept))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    took = str(glibc)
    assert out.stdout.split() == [took, took, str(float(20 << 17))]
