"""`swansphere data synth | caption | stats | import` through the CLI entry point."""

import json

import numpy as np
import soundfile

from swansphere.cli import main
from swansphere.foa.io import write_audio


def test_synth_caption_stats(tmp_path, capsys):
    root = tmp_path / "corpus"
    args = ["data", "synth", "--out", str(root), "--clips", "3", "--seed", "5", "--split", "test"]
    assert main([*args, "--preset", "small", "--seconds", "2", "--workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 3 and summary["skipped"] == 0 and summary["clips_per_s"] > 0
    assert main(["data", "caption", str(root), "--json"]) == 0
    captions = json.loads(capsys.readouterr().out)
    assert (
        captions["captioned"] == 3
        and "doa_mean_error_deg" in captions
        and "region_accuracy" in captions
    )
    assert main(["data", "stats", str(root)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["clips"] == 3 and sum(stats["classes"].values()) >= 3
    assert (root / "stats" / "histograms.png").stat().st_size > 1000
    assert (root / "stats" / "frame_ground_truth.png").stat().st_size > 1000


def test_synth_start_extends_a_corpus_with_the_same_clips(tmp_path, capsys):
    """--start S writes clips S .. S+N-1: two clips, then two more from index 2, give the
    four clips of one run (the same clip.json and the same samples)."""
    small = ["--seed", "5", "--preset", "small", "--seconds", "1", "--workers", "1"]
    whole, grown = tmp_path / "whole", tmp_path / "grown"
    assert main(["data", "synth", "--out", str(whole), "--clips", "4", *small]) == 0
    assert main(["data", "synth", "--out", str(grown), "--clips", "2", *small]) == 0
    assert main(["data", "synth", "--out", str(grown), "--clips", "2", "--start", "2", *small]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in (whole / "train").iterdir())
    assert names == [f"train-{i:06d}" for i in range(4)]
    assert sorted(p.name for p in (grown / "train").iterdir()) == names
    for name in names:
        meta = (grown / "train" / name / "clip.json").read_bytes()
        assert meta == (whole / "train" / name / "clip.json").read_bytes()
        # The samples, not the file's bytes: libsndfile stamps float WAVs with the time.
        audio, rate = soundfile.read(grown / "train" / name / "clip.wav")
        reference, reference_rate = soundfile.read(whole / "train" / name / "clip.wav")
        assert rate == reference_rate and np.array_equal(audio, reference)
    assert main(["data", "synth", "--out", str(grown), "--clips", "1", "--start", "-1"]) == 2
    assert "--start" in capsys.readouterr().err


def test_import_captions_layout(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "audio").mkdir(parents=True)
    write_audio(
        src / "audio" / "a.wav", np.random.default_rng(0).standard_normal((2, 22050)) * 0.3, 22050
    )
    (src / "captions.csv").write_text("file,caption\naudio/a.wav,a bird sings\n")
    assert (
        main(
            [
                "data",
                "import",
                "--layout",
                "captions",
                str(src),
                str(tmp_path / "dst"),
                "--clip-seconds",
                "1",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips_written"] == 1


def test_bad_arguments(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--clips", "0"]) == 2
    assert "--clips" in capsys.readouterr().err
    assert (
        main(
            ["data", "import", "--layout", "sphere360", str(tmp_path / "nope"), str(tmp_path / "d")]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
