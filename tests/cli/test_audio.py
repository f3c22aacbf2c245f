"""End-to-end checks of `swansphere encode | render | doa` through the CLI entry point."""

import json

import numpy as np
import pytest
import soundfile as sf

from swansphere.cli import main
from swansphere.foa.doa import angular_error, clip_direction
from swansphere.foa.io import read_audio, read_foa, write_audio

RATE = 48000


@pytest.fixture
def noise_wav(tmp_path):
    path = tmp_path / "noise.wav"
    write_audio(path, np.random.default_rng(0).standard_normal((1, RATE)) * 0.2, RATE)
    return path


def test_encode_fixed_direction(tmp_path, noise_wav):
    out = tmp_path / "foa.wav"
    assert main(["encode", str(noise_wav), str(out), "--az", "120", "--el", "-20"]) == 0
    foa, rate = read_foa(out)
    assert rate == RATE and sf.info(str(out)).format == "WAVEX"
    assert np.rad2deg(angular_error(*clip_direction(foa), np.deg2rad(120), np.deg2rad(-20))) < 1e-3


def test_encode_moving_then_doa_json(tmp_path, noise_wav, capsys):
    out = tmp_path / "moving.wav"
    long = tmp_path / "long.wav"
    write_audio(long, np.random.default_rng(1).standard_normal((1, 4 * RATE)) * 0.2, RATE)
    assert main(["encode", str(long), str(out), "--az", "-90", "--to-az", "90"]) == 0
    capsys.readouterr()
    assert main(["doa", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"clip", "segments"}
    azimuths = [s["azimuth_deg"] for s in result["segments"]]
    assert len(azimuths) == 4 and azimuths == sorted(azimuths)  # moves right to left
    assert set(result["segments"][0]) == {
        "start_s",
        "end_s",
        "azimuth_deg",
        "elevation_deg",
        "distance",
    }


@pytest.mark.parametrize(
    ("fmt", "channels"), [("binaural", 2), ("stereo", 2), ("5.1", 6), ("7.1.4", 12), ("foa", 4)]
)
def test_render_formats_keep_rate_and_channel_count(tmp_path, noise_wav, fmt, channels):
    foa_path = tmp_path / "foa.wav"
    main(["encode", str(noise_wav), str(foa_path), "--az", "90"])
    out = tmp_path / f"{fmt}.wav"
    assert main(["render", str(foa_path), str(out), "--format", fmt]) == 0
    audio, rate = read_audio(out)
    assert rate == RATE and audio.shape[0] == channels


def test_render_head_turn_moves_source_between_ears(tmp_path, noise_wav):
    foa_path = tmp_path / "front.wav"
    main(["encode", str(noise_wav), str(foa_path), "--az", "0"])

    def ild(*head):
        out = tmp_path / "bin.wav"
        main(["render", str(foa_path), str(out), *head])
        audio, _ = read_audio(out)
        return 10 * np.log10(np.sum(audio[0] ** 2) / np.sum(audio[1] ** 2))

    assert abs(ild()) < 1.0  # front: balanced
    assert ild("--ypr", "90,0,0") < -6  # head turned left: the source is on the right
    assert ild("--quat", f"{np.cos(np.pi / 4)},0,0,{-np.sin(np.pi / 4)}") > 6  # turned right


def test_bad_input_is_one_clear_line(tmp_path, noise_wav, capsys):
    stereo = tmp_path / "stereo.wav"
    write_audio(stereo, np.zeros((2, 100)), RATE)
    assert main(["render", str(stereo), str(tmp_path / "o.wav")]) == 2
    assert "has 2 channel(s); expected 4" in capsys.readouterr().err
    foa_path = tmp_path / "foa.wav"
    main(["encode", str(noise_wav), str(foa_path)])
    assert main(["render", str(foa_path), str(tmp_path / "o.wav"), "--quat", "0,0,0,0"]) == 2
    assert "zero norm" in capsys.readouterr().err
    assert main(["render", str(foa_path), str(tmp_path / "o.wav"), "--quat", "nan,0,0,1"]) == 2
    assert "non-finite" in capsys.readouterr().err
    bad_sofa = tmp_path / "bad.sofa"
    bad_sofa.write_text("not hdf5")
    assert main(["render", str(foa_path), str(tmp_path / "o.wav"), "--hrtf", str(bad_sofa)]) == 2
    assert "bad.sofa" in capsys.readouterr().err
    odd = tmp_path / "odd.wav"
    write_audio(odd, np.zeros((4, 100)), 12000)
    assert main(["render", str(odd), str(tmp_path / "o.wav")]) == 2
    assert "unsupported sample rate 12000" in capsys.readouterr().err
    assert main(["encode", str(stereo), str(tmp_path / "o.wav")]) == 2
    assert "encode takes mono" in capsys.readouterr().err
