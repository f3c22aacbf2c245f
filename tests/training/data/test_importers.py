"""Tests of training/swansphere_training/data/importers.py on tiny synthetic corpora.

Source videos are 64 x 32 at 8 fps whose frame i is a uniform grey of level
20 + 9 i, so the level of an imported frame tells which source frame it came from.
FOA sources are 48 kHz sines with a different gain per channel, so the imported audio
can be checked against the same sines computed directly at 44.1 kHz.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from swansphere.errors import InputError
from swansphere_training.data import importers
from swansphere_training.data.dataset import ClipDataset
from swansphere_training.data.importers import (
    ImportSummary,
    dipole_axis,
    import_caption_corpus,
    import_paired_corpus,
    plan_pieces,
)

SRC_RATE = 48000
OUT_RATE = 44100
SRC_FPS = 8
GAINS = np.array([1.0, 0.5, 0.2, -0.3])  # W, Y, Z, X
FREQ = 440.0
AMP = 0.3
SIZE = (32, 16)  # output (width, height) in the tests: small and 2:1


def grey_level(i: int) -> int:
    return 20 + 9 * i


def source_index(frames: np.ndarray) -> list[int]:
    """The source frame each decoded frame (n, H, W, 3) shows, from its mean grey level."""
    return [round((float(f.mean()) - 20) / 9) for f in frames]


def write_video(path: Path, seconds: float = 3.0, width: int = 64, height: int = 32) -> None:
    """A video of uniform grey frames at SRC_FPS, level grey_level(i) for frame i."""
    n = round(seconds * SRC_FPS)
    codec = "libvpx" if path.suffix == ".webm" else "libx264"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=SRC_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 2_000_000  # libvpx's default rate blurs the grey levels
        for i in range(n):
            img = np.full((height, width, 3), grey_level(i), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def sine_foa(seconds: float, rate: int) -> np.ndarray:
    """(4, n) FOA: channel c is GAINS[c] * AMP * sin(2 pi FREQ t)."""
    t = np.arange(round(seconds * rate)) / rate
    return GAINS[:, None] * AMP * np.sin(2 * np.pi * FREQ * t)[None, :]


def write_wav(path: Path, audio: np.ndarray, rate: int = SRC_RATE) -> None:
    sf.write(str(path), np.asarray(audio).T, rate, subtype="FLOAT")


def assert_no_partial_clips(split_dir: Path, with_video: bool = True) -> None:
    """No hidden temporary folders or files; every clip folder holds all its files."""
    hidden = [p for p in split_dir.rglob(".*")]
    assert hidden == []
    for clip in split_dir.iterdir():
        assert clip.is_dir()
        names = {p.name for p in clip.iterdir()}
        expected = {"clip.wav", "clip.json"} | ({"clip.mp4"} if with_video else set())
        assert names == expected, clip


def read_clip(clip: Path) -> tuple[dict, np.ndarray, int]:
    meta = json.loads((clip / "clip.json").read_text())
    audio, rate = sf.read(str(clip / "clip.wav"), always_2d=True)
    return meta, audio.T, rate


def decode_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# --------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------


def test_plan_pieces_keeps_remainders_of_half_a_clip_or_more():
    assert plan_pieces(3.0, 1.0) == [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]
    assert plan_pieces(30.0, 10.0) == [(0.0, 10.0), (10.0, 10.0), (20.0, 10.0)]
    last = plan_pieces(2.6, 1.0)[-1]
    assert last[0] == 2.0 and last[1] == pytest.approx(0.6)
    assert plan_pieces(2.4, 1.0) == [(0.0, 1.0), (1.0, 1.0)]
    assert plan_pieces(0.4, 1.0) == []
    assert plan_pieces(0.5, 1.0) == [(0.0, 0.5)]


def test_dipole_axis_is_deterministic_and_uniform():
    ids = [f"clip-{i}" for i in range(3000)]
    axes = [dipole_axis(7, i) for i in ids]
    assert axes == [dipole_axis(7, i) for i in ids]
    fractions = [axes.count(a) / len(axes) for a in "xyz"]
    assert all(abs(f - 1 / 3) < 0.03 for f in fractions), fractions
    assert axes != [dipole_axis(8, i) for i in ids]


# --------------------------------------------------------------------------------------
# Paired corpora
# --------------------------------------------------------------------------------------


def check_pair_clips(split_dir: Path, item_id: str, n_clips: int = 3) -> None:
    """The clips of one 3-s pair imported with clip_seconds=1: audio and frames exact."""
    reference = sine_foa(3.0, OUT_RATE)
    for i in range(n_clips):
        meta, audio, rate = read_clip(split_dir / f"{item_id}-{i:03d}")
        assert rate == OUT_RATE and audio.shape == (4, OUT_RATE)
        assert meta["sample_rate"] == OUT_RATE and meta["duration_s"] == pytest.approx(1.0)
        assert meta["video"] == {"fps": 4.0, "width": SIZE[0], "height": SIZE[1], "frames": 4}
        assert meta["sources"] == [] and meta["id"] == f"{item_id}-{i:03d}"
        expected = reference[:, i * OUT_RATE : (i + 1) * OUT_RATE]
        # resample_poly has edge transients only at the ends of the whole recording.
        inner = slice(500 if i == 0 else 0, OUT_RATE - (500 if i == n_clips - 1 else 0))
        np.testing.assert_allclose(audio[:, inner], expected[:, inner], atol=2e-3)
        frames = decode_frames(split_dir / meta["id"] / "clip.mp4")
        assert frames.shape == (4, SIZE[1], SIZE[0], 3)
        # Output frame j of clip i shows time i + j / 4 s: source frame 8 i + 2 j.
        assert source_index(frames) == [8 * i + 2 * j for j in range(4)]


def test_sphere360_layout(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    write_video(src / "a.mp4")
    write_wav(src / "a.wav", sine_foa(3.0, SRC_RATE))
    write_video(src / "sub" / "b.mkv")
    sf.write(str(src / "sub" / "b.flac"), sine_foa(3.0, SRC_RATE).T, SRC_RATE, subtype="PCM_24")
    write_video(src / "c.webm")
    write_wav(src / "c.wav", sine_foa(3.0, SRC_RATE))
    summary = import_paired_corpus(
        src, dst, "sphere360", clip_seconds=1.0, size=SIZE, progress=False
    )
    assert summary.skipped == []
    assert (summary.imported, summary.clips_written) == (3, 9)
    assert summary.seconds == pytest.approx(9.0)
    for item_id in ("a", "sub_b", "c"):
        check_pair_clips(dst / "train", item_id)
    meta, _, _ = read_clip(dst / "train" / "sub_b-001")
    assert meta["origin"] == "sphere360" and meta["split"] == "train"
    assert meta["provenance"]["start_s"] == 1.0
    assert_no_partial_clips(dst / "train")
    assert len(ClipDataset(dst, "train", require_video=True)) == 9
    json.dumps(summary.to_json())


def test_reimport_into_a_destination_inside_the_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "a.mp4")
    write_wav(src / "a.wav", sine_foa(3.0, SRC_RATE))
    for _ in range(2):  # the second run must not pick up the clips of the first
        summary = import_paired_corpus(
            src, src / "clips", "sphere360", clip_seconds=1.0, size=SIZE, progress=False
        )
        assert (summary.imported, summary.clips_written, summary.skipped) == (1, 3, [])
    assert sorted(p.name for p in (src / "clips" / "train").iterdir()) == [
        "a-000",
        "a-001",
        "a-002",
    ]


def test_ytambigen_layout_with_meta_csv(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "video").mkdir(parents=True)
    (src / "audio").mkdir()
    for name in ("x1", "x2"):
        write_video(src / "video" / f"{name}.mp4")
        write_wav(src / "audio" / f"{name}.wav", sine_foa(3.0, SRC_RATE))
    write_wav(src / "audio" / "lonely.wav", sine_foa(3.0, SRC_RATE))
    (src / "meta.csv").write_text("id,caption,label\nx1,a car passes on the left,car\n")
    summary = import_paired_corpus(
        src, dst, "ytambigen", split="val", clip_seconds=2.0, size=SIZE, progress=False
    )
    # 3 s at 2-s clips: one whole clip and a 1-s remainder (>= half a clip) kept unpadded.
    assert (summary.imported, summary.clips_written) == (2, 4)
    assert [(Path(p).name, r) for p, r in summary.skipped] == [
        ("lonely.wav", "no video with this id in video/")
    ]
    meta0, audio0, _ = read_clip(dst / "val" / "x1-000")
    meta1, audio1, _ = read_clip(dst / "val" / "x1-001")
    assert audio0.shape == (4, 2 * OUT_RATE) and audio1.shape == (4, OUT_RATE)
    assert meta0["video"]["frames"] == 8 and meta1["video"]["frames"] == 4
    assert meta1["duration_s"] == pytest.approx(1.0)
    assert meta0["caption"] == "a car passes on the left" and meta0["label"] == "car"
    assert meta0["origin"] == "ytambigen"
    meta_x2, _, _ = read_clip(dst / "val" / "x2-000")
    assert meta_x2["caption"] is None and meta_x2["label"] is None
    frames = decode_frames(dst / "val" / "x1-001" / "clip.mp4")
    assert source_index(frames) == [16, 18, 20, 22]
    assert_no_partial_clips(dst / "val")


def test_bad_pairs_are_skipped_with_reasons(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_video(src / "good.mp4")
    write_wav(src / "good.wav", sine_foa(3.0, SRC_RATE))
    write_video(src / "quiet.mp4")
    write_wav(src / "quiet.wav", np.zeros((4, 3 * SRC_RATE)))
    write_video(src / "short.mp4")
    write_wav(src / "short.wav", sine_foa(2.0, SRC_RATE))
    write_video(src / "stereo.mp4")
    write_wav(src / "stereo.wav", sine_foa(3.0, SRC_RATE)[:2])
    (src / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    write_wav(src / "broken.wav", sine_foa(3.0, SRC_RATE))
    (src / "garbage.mp4").write_bytes(b"")
    (src / "garbage.wav").write_bytes(b"RIFF not really a wave file")
    write_video(src / "noaudio.mp4")
    # Within tolerance: 3.3 s of audio against 3 s of video keeps the common 3 s.
    write_video(src / "close.mp4")
    write_wav(src / "close.wav", sine_foa(3.3, SRC_RATE))
    summary = import_paired_corpus(
        src, dst, "sphere360", clip_seconds=1.0, size=SIZE, progress=False
    )
    reasons = {Path(p).stem: r for p, r in summary.skipped}
    assert set(reasons) == {"quiet", "short", "stereo", "broken", "garbage", "noaudio"}
    assert reasons["quiet"].startswith("silent")
    assert reasons["short"].startswith("mismatched lengths")
    assert "2 channel" in reasons["stereo"]
    assert "cannot decode video" in reasons["broken"]
    assert "cannot read audio" in reasons["garbage"]
    assert "no FOA audio" in reasons["noaudio"]
    assert (summary.imported, summary.clips_written) == (2, 6)
    check_pair_clips(dst / "train", "good")
    assert sorted(p.name for p in (dst / "train").iterdir()) == [
        "close-000",
        "close-001",
        "close-002",
        "good-000",
        "good-001",
        "good-002",
    ]
    assert_no_partial_clips(dst / "train")


def test_silent_pieces_of_a_good_pair_are_skipped(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    audio = sine_foa(3.0, SRC_RATE)
    audio[:, SRC_RATE : 2 * SRC_RATE] = 0.0  # the middle second is digital silence
    write_video(src / "gap.mp4")
    write_wav(src / "gap.wav", audio)
    summary = import_paired_corpus(
        src, dst, "sphere360", clip_seconds=1.0, size=SIZE, progress=False
    )
    assert sorted(p.name for p in (dst / "train").iterdir()) == ["gap-000", "gap-002"]
    assert len(summary.skipped) == 1 and summary.skipped[0][1].startswith("silent piece")
    assert "[1.00-2.00 s]" in summary.skipped[0][0]


def test_a_failure_while_writing_leaves_no_partial_clip(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for name in ("p", "q"):
        write_video(src / f"{name}.mp4")
        write_wav(src / f"{name}.wav", sine_foa(3.0, SRC_RATE))
    from swansphere_training.corpus import video

    real_write = video.write_mp4
    calls = []

    def flaky_write(path, frames, fps=4.0):
        calls.append(path)
        if len(calls) == 2:  # second clip of the first pair: after clip.wav was written
            raise OSError("disk full")
        real_write(path, frames, fps)

    monkeypatch.setattr(video, "write_mp4", flaky_write)
    summary = import_paired_corpus(
        src, dst, "sphere360", clip_seconds=1.0, size=SIZE, progress=False
    )
    assert summary.skipped == [(str(src / "p.mp4"), "OSError: disk full")]
    # The first pair keeps the clip written before the failure; the second is whole.
    assert sorted(p.name for p in (dst / "train").iterdir()) == ["p-000", "q-000", "q-001", "q-002"]
    assert summary.clips_written == 4 and summary.imported == 2
    assert_no_partial_clips(dst / "train")


def test_non_equirect_aspect_warns_and_resizes(tmp_path, caplog):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write_video(src / "square.mp4", width=32, height=32)
    write_wav(src / "square.wav", sine_foa(3.0, SRC_RATE))
    with caplog.at_level(logging.WARNING, logger=importers.__name__):
        summary = import_paired_corpus(
            src, dst, "sphere360", clip_seconds=1.0, size=SIZE, progress=False
        )
    assert summary.clips_written == 3
    assert any("not 2:1" in r.getMessage() for r in caplog.records)
    assert decode_frames(dst / "train" / "square-000" / "clip.mp4").shape == (4, 16, 32, 3)


def test_paired_import_rejects_bad_arguments(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(InputError, match="layout"):
        import_paired_corpus(tmp_path / "src", tmp_path / "dst", "sphere", progress=False)
    with pytest.raises(InputError, match="even"):
        import_paired_corpus(
            tmp_path / "src", tmp_path / "dst", "sphere360", size=(33, 16), progress=False
        )
    with pytest.raises(InputError, match="video/ and audio/"):
        import_paired_corpus(tmp_path / "src", tmp_path / "dst", "ytambigen", progress=False)
    with pytest.raises(InputError, match="not found"):
        import_paired_corpus(tmp_path / "nope", tmp_path / "dst", "sphere360", progress=False)


# --------------------------------------------------------------------------------------
# Caption corpora
# --------------------------------------------------------------------------------------


def stereo(seconds: float, rate: int) -> np.ndarray:
    """(2, n): L = 0.4 sin(440 Hz), R = 0.2 sin(660 Hz)."""
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)])


def test_caption_corpus_to_pseudo_foa(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "audio").mkdir(parents=True)
    write_wav(src / "audio" / "a.wav", stereo(3.0, SRC_RATE))
    sf.write(str(src / "audio" / "b.flac"), stereo(3.0, OUT_RATE).T, OUT_RATE)
    write_wav(src / "audio" / "m.wav", stereo(3.0, SRC_RATE)[0])
    write_wav(src / "audio" / "six.wav", np.tile(stereo(3.0, SRC_RATE), (3, 1)))
    write_wav(src / "audio" / "quiet.wav", np.zeros((2, SRC_RATE)))
    write_wav(src / "audio" / "tiny.wav", stereo(0.3, SRC_RATE))
    (src / "audio" / "bad.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (src / "captions.csv").write_text(
        "file,caption\n"
        "audio/a.wav,a dog barks\n"
        "a.wav,a dog barks twice\n"  # same file, resolved through audio/
        "b.flac,rain on a roof\n"
        "m.wav,a bell rings\n"
        "six.wav,six channels\n"
        "quiet.wav,nothing\n"
        "tiny.wav,too short\n"
        "bad.wav,unreadable\n"
        "missing.wav,gone\n"
        "b.flac,\n"
    )
    summary = import_caption_corpus(src, dst, clip_seconds=1.0, seed=3, progress=False)
    reasons = {p if p.startswith("captions.csv") else Path(p).name: r for p, r in summary.skipped}
    assert "6 channels" in reasons["six.wav"]
    assert reasons["quiet.wav"].startswith("silent")
    assert reasons["tiny.wav"].startswith("too short")
    assert "cannot read audio" in reasons["bad.wav"]
    assert reasons["captions.csv:10"] == "audio file not found: missing.wav"
    assert reasons["captions.csv:11"] == "empty caption"
    assert len(summary.skipped) == 6
    assert (summary.imported, summary.clips_written) == (3, 9)

    split_dir = dst / "train"
    assert_no_partial_clips(split_dir, with_video=False)
    acn = {"y": 1, "z": 2, "x": 3}
    for stem, rate in (("a", SRC_RATE), ("b", OUT_RATE)):
        lr = stereo(3.0, OUT_RATE)
        for i in range(3):
            meta, foa, out_rate = read_clip(split_dir / f"{stem}-{i:03d}")
            assert out_rate == OUT_RATE and foa.shape == (4, OUT_RATE)
            assert meta["video"] is None and meta["sources"] == []
            axis = meta["pseudo_foa"]["axis"]
            assert axis == dipole_axis(3, meta["id"])
            nonzero = [c for c in (1, 2, 3) if np.max(np.abs(foa[c])) > 0]
            assert nonzero == [acn[axis]]  # exactly one dipole holds the signal
            piece = slice(i * OUT_RATE, (i + 1) * OUT_RATE)
            inner = slice(500 if i == 0 else 0, OUT_RATE - (500 if i == 2 else 0))
            tol = 1e-4 if rate == OUT_RATE else 2e-3  # b.flac is 16-bit: 3e-5 steps
            np.testing.assert_allclose(foa[0, inner], (lr[0] + lr[1])[piece][inner], atol=tol)
            np.testing.assert_allclose(
                foa[acn[axis], inner], (lr[0] - lr[1])[piece][inner], atol=tol
            )
    meta_a, _, _ = read_clip(split_dir / "a-000")
    assert meta_a["caption"] == "a dog barks"
    assert meta_a["captions"] == ["a dog barks", "a dog barks twice"]
    meta_m, foa_m, _ = read_clip(split_dir / "m-001")
    assert meta_m["caption"] == "a bell rings" and meta_m["pseudo_foa"]["channels"] == 1
    assert np.all(foa_m[1:] == 0) and np.max(np.abs(foa_m[0])) > 0.3  # mono: W only
    dataset = ClipDataset(dst, "train", require_caption=True)
    assert len(dataset) == 9
    assert dataset[0].caption_text() == "a dog barks"

    # Same seed, same axes; the clip id (not the import order) picks the axis.
    again = import_caption_corpus(src, tmp_path / "again", clip_seconds=1.0, seed=3, progress=False)
    assert again.clips_written == 9
    for clip in split_dir.iterdir():
        first = json.loads((clip / "clip.json").read_text())["pseudo_foa"]["axis"]
        second = json.loads((tmp_path / "again" / "train" / clip.name / "clip.json").read_text())[
            "pseudo_foa"
        ]["axis"]
        assert first == second


def test_audiocaps_style_ids(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "audio").mkdir(parents=True)
    write_wav(src / "audio" / "yt123.wav", stereo(2.0, SRC_RATE))
    (src / "val.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n"
        "91,yt123,30,Birds chirp\n"
        "92,yt123,30,Birds are chirping loudly\n"
        "93,yt999,0,Nothing here\n"
    )
    summary = import_caption_corpus(src, dst, split="val", clip_seconds=2.0, progress=False)
    assert (summary.imported, summary.clips_written) == (1, 1)
    assert summary.skipped == [("val.csv:4", "audio file not found: audio/93")]
    meta, foa, _ = read_clip(dst / "val" / "yt123-000")
    assert meta["captions"] == ["Birds chirp", "Birds are chirping loudly"]
    assert meta["split"] == "val" and foa.shape == (4, 2 * OUT_RATE)


def test_caption_csv_must_name_its_columns(tmp_path):
    (tmp_path / "captions.csv").write_text("name,text\nx.wav,hello\n")
    with pytest.raises(InputError, match="caption"):
        import_caption_corpus(tmp_path, tmp_path / "dst", progress=False)
    (tmp_path / "captions.csv").write_text("name,caption\nx.wav,hello\n")
    with pytest.raises(InputError, match="audio column"):
        import_caption_corpus(tmp_path, tmp_path / "dst", progress=False)


def test_summary_to_json():
    summary = ImportSummary(imported=1, clips_written=2, skipped=[("a", "silent")], seconds=20.0)
    data = json.loads(json.dumps(summary.to_json()))
    assert data["skipped"] == [{"item": "a", "reason": "silent"}]
    assert data["clips_written"] == 2 and data["seconds"] == 20.0
