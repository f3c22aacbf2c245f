import json

import numpy as np
import pytest

from swansphere.cli import main
from swansphere.foa.io import read_audio, read_foa
from swansphere.models.bundle import load_bundle


def test_demo_streams_a_clip_and_writes_all_files(tmp_path, capsys):
    assert "generator" in load_bundle("default").components
    assert main(["demo", "--out", str(tmp_path), "--seconds", "2"]) == 0
    out = capsys.readouterr().out
    assert "TTFC" in out and "RTF" in out
    summary = json.loads((tmp_path / "summary.json").read_text())

    gen = summary["generator"]
    foa, rate = read_foa(gen["files"]["generated_foa"])
    binaural, brate = read_audio(gen["files"]["binaural_headtracked"])
    assert foa.shape[0] == 4 and foa.shape[1] == pytest.approx(2 * rate, abs=rate * 0.01)
    assert brate == 48000 and binaural.shape[0] == 2 and np.max(np.abs(binaural)) > 1e-4
    assert gen["ttfc_ms"] > 0 and gen["ttfc_cold_ms"] > 0 and gen["rtf"] > 0
    assert gen["patches"] == 11 and gen["accel"] == "eager"
    assert (tmp_path / "generator" / "generated_doa.png").stat().st_size > 1000

    renderer = summary["renderer"]
    foa, rate = read_foa(renderer["files"]["foa"])
    binaural, _ = read_audio(renderer["files"]["binaural_headtracked"])
    assert rate == 48000 and foa.shape[0] == 4 and binaural.shape[0] == 2
    assert np.max(np.abs(binaural)) > 0.01
    assert (tmp_path / "renderer" / "doa_trajectory.png").stat().st_size > 1000
    # The shipped FOA-VAE keeps the moving source's direction through a streamed round trip
    # (a channel-order or sign slip would be off by 90-180 degrees). Measured with the
    # 2026-11-29 VAE: 32.6 deg per 1 s segment on this 2 s clip, 6.7 on the demo's 8 s
    # circle (the collapsed VAE before it was under 20 here): the bound is loose on purpose.
    vae = renderer["vae_round_trip"]
    assert vae["model"] == "default" and vae["latent_frames"] >= 40
    assert vae["doa_segment_error_deg_mean"] < 40.0
