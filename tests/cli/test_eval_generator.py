"""``swansphere eval generator`` and swansphere_training/evaluation/generator.py on a tiny
captioned corpus, with an untrained generator (plumbing and metric definitions, not quality)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from swansphere.cli import main
from swansphere.foa.encode import encode_mono
from swansphere.models.bundle import load_bundle, write_bundle
from swansphere.models.generator import SpatialGenerator
from swansphere_training.corpus.captioning import caption_corpus
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import synthesize_corpus
from swansphere_training.evaluation.generator import (
    BASELINES,
    block_levels_db,
    evaluate_generator,
    level_correlation,
)

TINY = replace(PRESETS["small"], seconds=2.0, max_distractors=0)
KEYS = {"angular_rad", "angular_deg", "azimuth_rad", "elevation_rad", "trajectory_rad"}


def plane_wave_follower(runtime, direction_of):
    """A stand-in generator: noise from where ``direction_of(runtime, frames, fps,
    n_patches)`` points (the front without frames), as ``evaluate_generator`` calls it."""
    import math

    rng = np.random.default_rng(0)

    def follow(frames, fps, caption, duration, config):
        n = round(duration * runtime.sample_rate)
        az, el = (0.0, 0.0)
        if frames is not None:
            patches = math.ceil(duration / runtime.patch_seconds - 1e-9)
            az, el = direction_of(runtime, frames, fps, patches)
        return encode_mono(rng.standard_normal(n), az, el).astype(np.float32)

    return follow


def assert_scores_like(result: dict, baseline: str) -> None:
    """The evaluated generator's direction figures equal baseline ``baseline``'s."""
    expected = result["baselines"][baseline]
    for key in ("angular_rad", "azimuth_rad", "elevation_rad", "trajectory_rad"):
        assert result[key] == pytest.approx(expected[key], abs=1e-3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evalgen") / "corpus"
    synthesize_corpus(root, clips=2, seed=8, split="test", config=TINY, workers=1, progress=False)
    caption_corpus(root, progress=False)
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The shipped VAE and SVAC with an untrained tiny generator."""
    base = load_bundle("default")
    components = {name: (*base.component(name), name) for name in ("vae", "svac")}
    torch.manual_seed(0)
    generator = SpatialGenerator.from_config("tiny")
    components["generator"] = (generator.config.to_dict(), generator.state_dict(), "generator")
    return write_bundle(tmp_path_factory.mktemp("bundle") / "b", components)


def test_eval_generator_json_has_every_metric_and_baseline(corpus, bundle, capsys) -> None:
    args = ["eval", "generator", "--model", str(bundle), "--data", str(corpus)]
    options = ["--clips", "2", "--steps", "2", "--guidance", "2,3", "--video-text", "--json"]
    assert main([*args, *options]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["clips"] == 2 and result["model"] == str(bundle)
    assert result["guidance"] == {"text": 2.0, "video": 3.0}
    assert KEYS <= set(result)
    assert 0 <= result["angular_rad"] <= np.pi
    assert result["angular_deg"] == pytest.approx(np.rad2deg(result["angular_rad"]))
    assert {"text_region_accuracy", "text_region_accuracy_strict", "text_only"} <= set(result)
    assert KEYS <= set(result["video_text"]) and KEYS <= set(result["text_only"])
    assert set(result["baselines"]) == set(BASELINES)
    for name in BASELINES:
        if name != "video_direction_cue":
            assert KEYS | {"text_region_accuracy"} <= set(result["baselines"][name])
    assert result["baselines"]["video_direction_cue"] == {}  # this bundle has no cue
    # The VAE round trip of the reference keeps its direction far better than chance,
    # and its loudness from patch to patch.
    assert result["baselines"]["vae_reference"]["angular_rad"] < 0.5
    assert result["baselines"]["vae_reference"]["level_correlation"] > 0.9
    for levels in (result, result["video_text"], result["text_only"]):
        assert -1 <= levels["level_correlation"] <= 1
    assert "level_correlation" not in result["baselines"]["front"]  # no audio to follow
    # Where the LM meant the sound to be, and how far the rendering strays from it.
    assert 0 <= result["rendering_deg"] <= 180
    assert result["rendering_deg"] == pytest.approx(np.rad2deg(result["rendering_rad"]))


def test_metrics_of_a_front_source_equal_the_front_baseline(corpus, bundle) -> None:
    """A 'generator' that always puts a plane wave in front scores exactly like the
    always-front baseline: the model and the baselines go through the same metric."""
    from swansphere.generation.session import GeneratorRuntime

    runtime = GeneratorRuntime.load(bundle)
    rng = np.random.default_rng(0)

    def front(frames, fps, caption, duration, config):
        n = round(duration * runtime.sample_rate)
        return encode_mono(rng.standard_normal(n), 0.0, 0.0).astype(np.float32)

    configs = []

    def recorded(frames, fps, caption, duration, config):
        configs.append(config)
        return front(frames, fps, caption, duration, config)

    result = evaluate_generator(runtime, corpus, "test", 2, generate=recorded, guidance=(2.0, 4.0))
    assert {(c.guidance_text, c.guidance_video) for c in configs} == {(2.0, 4.0)}
    assert result["guidance"] == {"text": 2.0, "video": 4.0}
    ref = result["baselines"]["front"]
    for key in ("angular_rad", "azimuth_rad", "elevation_rad", "trajectory_rad"):
        assert result[key] == pytest.approx(ref[key], abs=1e-6)
    assert result["text_region_accuracy"] == ref["text_region_accuracy"]
    # A stand-in generator has no LM to trace.
    assert "rendering_deg" not in result and result["baselines"]["lm_estimate"] == {}


def test_a_generator_that_follows_its_saliency_scores_like_the_saliency_baseline(
    corpus, bundle
) -> None:
    """A 'generator' that puts a plane wave where its video saliency points scores like
    the video_saliency baseline; without the saliency input there is no such direction."""
    import dataclasses

    from swansphere.generation.session import GeneratorRuntime
    from swansphere_training.evaluation.generator import saliency_direction

    runtime = GeneratorRuntime.load(bundle)
    follow = plane_wave_follower(runtime, saliency_direction)
    result = evaluate_generator(runtime, corpus, "test", 2, generate=follow)
    assert_scores_like(result, "video_saliency")
    plain = dataclasses.replace(runtime.generator.config, video_saliency=False)
    runtime.generator.config = plain
    frames = np.zeros((2, 32, 64, 3), np.uint8)
    assert saliency_direction(runtime, frames, 4.0, 3) is None


def test_a_generator_that_follows_the_direction_cue_scores_like_its_baseline(
    corpus, bundle, tmp_path
) -> None:
    """With a video direction cue in the bundle, eval reports where it points
    (video_direction_cue); a 'generator' that puts a plane wave there scores the same."""
    from swansphere.generation.session import GeneratorRuntime
    from swansphere.models.direction import VideoDirectionConfig, VideoDirectionCue
    from swansphere_training.evaluation.generator import cue_direction

    base = load_bundle(bundle)
    components = {name: (*base.component(name), name) for name in base.components}
    torch.manual_seed(1)
    cue = VideoDirectionCue(VideoDirectionConfig(window=4, taps=3, smoothing=2))
    components["direction"] = (cue.config.to_dict(), cue.state_dict(), "direction")
    runtime = GeneratorRuntime.from_bundle(load_bundle(write_bundle(tmp_path / "c", components)))
    assert runtime.direction is not None and not runtime.uses_direction_cue
    follow = plane_wave_follower(runtime, cue_direction)
    result = evaluate_generator(runtime, corpus, "test", 2, generate=follow)
    assert_scores_like(result, "video_direction_cue")
    runtime.direction = None
    assert cue_direction(runtime, np.zeros((2, 32, 64, 3), np.uint8), 4.0, 3) is None


def test_block_levels_and_their_correlation_follow_the_w_channel() -> None:
    foa = np.zeros((4, 400))
    foa[0, :100], foa[0, 100:200] = 0.5, -0.05  # -6.02 dB, -26.02 dB; then silence
    foa[1:, :] = 1.0  # the dipoles do not count
    levels = block_levels_db(foa, 100)
    np.testing.assert_allclose(levels, [20 * np.log10(0.5), 20 * np.log10(0.05), -80, -80])
    assert len(block_levels_db(foa[:, :350], 100)) == 3  # a partial block is dropped
    rng = np.random.default_rng(0)
    envelope = np.repeat([1.0, 0.2, 0.6, 0.05, 0.8], 100)
    reference = encode_mono(rng.standard_normal(500) * envelope, 30.0, 0.0)
    assert level_correlation(0.3 * reference, reference, 100) == pytest.approx(1.0)
    inverse = encode_mono(
        rng.standard_normal(500) * np.repeat([0.05, 0.8, 0.2, 1.0, 0.1], 100), 0, 0
    )
    assert level_correlation(inverse, reference, 100) < -0.8
    steady = np.ones((4, 500))
    assert level_correlation(steady, reference, 100) is None  # nothing to follow
    assert level_correlation(reference[:, :200], reference, 100) is None  # too short


def test_source_oracle_sums_the_sounding_sources_directions() -> None:
    from swansphere_training.evaluation.generator import source_oracle_direction

    def source(az, el):
        return {"trajectory": {"azimuth_deg": az, "elevation_deg": el}}

    meta = {"sources": [source([0.0, 0.0], [0.0, 0.0]), source([80.0, 100.0], [0.0, 0.0])]}
    az, el = source_oracle_direction(meta)
    assert np.rad2deg(az) == pytest.approx(45.0, abs=0.5) and el == pytest.approx(0.0, abs=1e-9)
    assert source_oracle_direction({"sources": []}) is None
    assert source_oracle_direction({}) is None  # an imported clip without a source list


def test_source_power_oracle_weighs_each_source_by_the_power_it_delivers() -> None:
    from swansphere_training.evaluation.generator import source_oracle_direction

    def source(az, level_db, distance):
        track = {"azimuth_deg": [az, az], "elevation_deg": [0.0, 0.0], "distance_m": distance}
        return {"level_db": level_db, "trajectory": track}

    # Equal levels, the second source twice as far: a quarter of the power.
    meta = {"sources": [source(0.0, 0.0, [1.0, 1.0]), source(90.0, 0.0, [2.0, 2.0])]}
    az, el = source_oracle_direction(meta, power=True)
    assert np.rad2deg(az) == pytest.approx(np.rad2deg(np.arctan2(0.25, 1.0)), abs=0.01)
    assert el == pytest.approx(0.0, abs=1e-9)
    assert np.rad2deg(source_oracle_direction(meta)[0]) == pytest.approx(45.0, abs=0.01)
    # 10 dB louder at the same distance: ten times the power; a distance per point.
    meta = {"sources": [source(0.0, 0.0, [1.0, 1.0]), source(90.0, 10.0, [1.0, 3.0])]}
    az, _ = source_oracle_direction(meta, power=True)
    assert np.rad2deg(az) == pytest.approx(np.rad2deg(np.arctan2((10 + 10 / 9) / 2, 1.0)), abs=0.01)
    del meta["sources"][1]["level_db"]  # a source list without levels: no power oracle
    assert source_oracle_direction(meta, power=True) is None
    assert source_oracle_direction(meta) is not None


def test_scene_oracles_weigh_each_object_by_what_they_know_of_its_loudness(monkeypatch) -> None:
    """signal: level + the signal's own power; video: the class's typical power; visible:
    that for the distractors too. Pulses count as relative power over the clip."""
    from swansphere_training.corpus import sources
    from swansphere_training.evaluation.generator import scene_oracle_direction

    typical = {"siren": 0.0, "rain": -20.0}
    monkeypatch.setattr(sources, "typical_power_db", lambda name, *_: typical[name])

    def track(az, distance):
        return {"t": [0.0, 1.0], "azimuth_deg": [az, az], "elevation_deg": [0.0, 0.0],
                "distance_m": [distance, distance]}  # fmt: skip

    meta = {
        "duration_s": 1.0,
        "sample_rate": 22050,
        "video": {"fps": 4.0},
        "sources": [
            # In front, a rain the class makes quiet, but this one is loud (power 0 dB).
            {
                "class": "rain",
                "level_db": 0.0,
                "power_db": 0.0,
                "trajectory": track(0.0, 1.0),
                "activity": [1.0, 1.0, 1.0, 1.0],
            },
            # On the left, a siren 10 dB quieter than the class would have it.
            {
                "class": "siren",
                "level_db": 0.0,
                "power_db": -10.0,
                "trajectory": track(90.0, 1.0),
                "activity": [1.0, 1.0, 1.0, 1.0],
            },
        ],
        "distractors": [
            {
                "class": "siren",
                "azimuth_deg": -90.0,
                "elevation_deg": 0.0,
                "distance_m": 1.0,
                "activity": [1.0, 1.0, 0.0, 0.0],
            },
        ],
    }
    az, el = scene_oracle_direction(meta, "signal")  # front 1, left 0.1
    assert np.rad2deg(az) == pytest.approx(np.rad2deg(np.arctan2(0.1, 1.0)), abs=0.01)
    assert el == pytest.approx(0.0, abs=1e-9)
    az, _ = scene_oracle_direction(meta, "video")  # front 0.01, left 1
    assert np.rad2deg(az) == pytest.approx(np.rad2deg(np.arctan2(1.0, 0.01)), abs=0.01)
    # The silent siren on the right cancels the left one: what is left is the rain in front.
    # Its pulse (on for half the clip) is a relative power: its mean over the clip is 1.
    az, _ = scene_oracle_direction(meta, "visible")
    assert np.rad2deg(az) == pytest.approx(0.0, abs=0.01)
    # A pulse 30 dB down is a thousandth of the power; the oracle weighs frame by frame.
    meta["sources"][0]["activity"] = [1.0, 1.0, 0.0, 0.0]
    meta["sources"][1]["activity"] = [0.0, 0.0, 1.0, 1.0]
    x, y = (2.0 + 2e-3) / (1.0 + 1e-3) * 1e-2, (2.0 + 2e-3) / (1.0 + 1e-3)  # per frame sums
    az, _ = scene_oracle_direction(meta, "video")
    assert np.rad2deg(az) == pytest.approx(np.rad2deg(np.arctan2(y, x)), abs=0.01)
    # An older clip.json without pulses has no scene oracle; an imported clip neither.
    del meta["distractors"][0]["activity"]
    assert scene_oracle_direction(meta, "visible") is None
    assert scene_oracle_direction(meta, "video") is not None
    del meta["sources"][0]["activity"]
    assert scene_oracle_direction(meta, "signal") is None
    assert scene_oracle_direction({"sources": []}, "video") is None
    with pytest.raises(ValueError, match="unknown oracle knowledge 'audio'"):
        scene_oracle_direction(meta, "audio")
