"""``swansphere generate`` and ``swansphere bench stream`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from swansphere.bench.machine import cpu_description
from swansphere.cli import main
from swansphere.foa.io import read_audio
from swansphere.generation import GeneratorRuntime


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from swansphere_training.corpus.video import write_mp4

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 32, 64, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("video") / "pano.mp4"
    write_mp4(path, frames, fps=4.0)
    return path


def run(capsys, *args) -> dict:
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("fmt,channels", [("binaural", 2), ("foa", 4), ("5.1", 6)])
def test_generate_from_video_and_caption(tmp_path, capsys, video, random_generator_bundle, fmt,
                                         channels):  # fmt: skip
    out = tmp_path / f"out-{fmt}.wav"
    result = run(
        capsys, "generate", "--video", str(video), "--caption", "a dog barks on the left",
        "--out", str(out), "--format", fmt, "--model", str(random_generator_bundle),
        "--steps", "2", "--rate", "44100",
    )  # fmt: skip
    audio, rate = read_audio(out)
    assert rate == 44100 and audio.shape[0] == channels == result["channels"]
    assert audio.shape[1] == pytest.approx(44100, abs=2)  # 4 frames at 4 fps = 1 s
    assert np.abs(audio).max() > 0 and result["rtf"] > 0


def test_generate_text_only_and_field_of_view(tmp_path, capsys, video, random_generator_bundle):
    model = str(random_generator_bundle)
    out = tmp_path / "text.wav"
    run(capsys, "generate", "--caption", "rain", "--duration", "0.5", "--out", str(out),
        "--model", model, "--steps", "2")  # fmt: skip
    assert read_audio(out)[0].shape == (4, 24000)
    out = tmp_path / "fov.wav"
    run(capsys, "generate", "--video", str(video), "--fov", "90", "--camera-ypr", "90,0,0",
        "--out", str(out), "--model", model, "--steps", "2")  # fmt: skip
    assert read_audio(out)[0].shape[0] == 4


def test_generate_errors(tmp_path, capsys, random_generator_bundle):
    out = str(tmp_path / "x.wav")
    assert main(["generate", "--out", out]) == 2
    assert "give --video, --caption, or both" in capsys.readouterr().err
    assert main(["generate", "--caption", "rain", "--out", out]) == 2
    assert "needs --duration" in capsys.readouterr().err
    assert main(["generate", "--video", str(tmp_path / "missing.mp4"), "--out", out,
                 "--model", str(random_generator_bundle)]) == 2  # fmt: skip
    assert "no such file" in capsys.readouterr().err
    assert main(["generate", "--caption", "rain", "--duration", "1", "--out", out,
                 "--model", str(tmp_path / "nope")]) == 2  # fmt: skip
    assert "nope" in capsys.readouterr().err


def test_bench_stream_reports_latency_and_rtf(capsys):
    result = run(capsys, "bench", "stream", "--sessions", "1", "--patches", "3", "--steps", "2",
                 "--threads", "1")  # fmt: skip
    for key in ("ttfc_ms", "rtf", "patch_ms", "steps", "device", "threads", "params"):
        assert key in result
    assert set(result["ttfc_split_ms"]) == {"lm", "locdit", "encode_decode"}
    assert result["steps"] == 2 and result["threads"] == 1
    assert result["params"]["generator"] == sum(
        p.numel() for p in GeneratorRuntime.random("tiny").generator.parameters()
    )
    assert result["ttfc_ms"] > 0 and 0 < result["rtf"] < 100
    assert result["accel"] == "eager" and result["warmup_s"] > 0
    assert result["euler_chunk"] is None  # eager runs a patch's steps in one EulerSteps call
    assert result["guidance_rows"] == 3 and result["caption_ms"] > 0
    # The CPU by name and vector instructions, not just "x86_64": runs on two machines compare.
    assert result["device"] == f"cpu: {cpu_description(torch.backends.cpu.get_cpu_capability())}"


def test_bench_stream_times_video_only_sessions(capsys):
    result = run(capsys, "bench", "stream", "--sessions", "1", "--patches", "3", "--steps", "2",
                 "--threads", "1", "--no-caption")  # fmt: skip
    assert result["caption_ms"] is None and result["guidance_rows"] == 2
    assert result["ttfc_ms"] > 0 and 0 < result["rtf"] < 100
