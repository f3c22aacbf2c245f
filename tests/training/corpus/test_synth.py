import json
from dataclasses import replace

import numpy as np
import pytest

from swansphere.foa.doa import angular_error, clip_direction
from swansphere.foa.io import read_foa
from swansphere_training.corpus import synth
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import clip_rng, make_clip, synthesize_corpus
from swansphere_training.data.clip import source_tracks

TINY = replace(PRESETS["small"], seconds=2.0, max_distractors=1)


def test_clip_is_complete_and_deterministic(tmp_path):
    a = make_clip(tmp_path / "a", "train", seed=3, index=5, config=TINY)
    b = make_clip(tmp_path / "b", "train", seed=3, index=5, config=TINY)
    assert sorted(p.name for p in a.iterdir()) == ["clip.json", "clip.mp4", "clip.wav"]
    foa_a, rate = read_foa(a / "clip.wav")
    foa_b, _ = read_foa(b / "clip.wav")
    assert rate == 22050 and foa_a.shape == (4, 44100)
    np.testing.assert_array_equal(foa_a, foa_b)
    meta = json.loads((a / "clip.json").read_text())
    assert meta == json.loads((b / "clip.json").read_text())
    assert meta["video"]["frames"] == 8 and meta["sources"]
    assert np.max(np.abs(foa_a)) <= 10 ** (-1 / 20) + 1e-6


def test_splits_never_share_random_streams():
    draws = {s: clip_rng(0, s, 7).integers(0, 2**62, 4).tolist() for s in ("train", "val", "test")}
    assert len({tuple(v) for v in draws.values()}) == 3


def test_single_source_direction_matches_ground_truth(tmp_path):
    config = replace(TINY, moving_probability=0.0, ambience_range_db=(-45.0, -40.0))
    errors = []
    for index in range(4):
        folder = make_clip(tmp_path, "test", seed=1, index=index, config=config, n_sources=1)
        foa, _ = read_foa(folder / "clip.wav")
        track = source_tracks(json.loads((folder / "clip.json").read_text()))[0]
        errors.append(
            np.rad2deg(angular_error(*clip_direction(foa), track.azimuth[0], track.elevation[0]))
        )
    # Metadata and audio agree: a convention slip (sign, axis order) would be off by 90-180 deg.
    # Tonal classes in reverberant rooms bias the intensity by tens of degrees, hence the median.
    assert np.median(errors) < 10.0


def test_corpus_run_counts_and_skips_failures(tmp_path, monkeypatch):
    real = synth.render_scene_video

    calls = {"n": 0}

    def flaky(scene, config, seed, activity=None):
        calls["n"] += 1
        if calls["n"] in (2, 5):
            raise RuntimeError("simulated failure")
        return real(scene, config, seed, activity)

    monkeypatch.setattr(synth, "render_scene_video", flaky)
    summary = synthesize_corpus(
        tmp_path, clips=6, seed=0, split="val", config=TINY, workers=1, progress=False
    )
    data = summary.to_json()
    assert data["clips"] == 4 and data["skipped"] == 2
    written = [p for p in (tmp_path / "val").iterdir()]
    assert len(written) == data["clips"]  # failed clips leave nothing behind, not even temp dirs
    assert all(not p.name.startswith(".") for p in written)
    for reason in data["skipped_reasons"]:
        assert "simulated failure" in reason[1]


def test_unknown_split_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        synthesize_corpus(tmp_path, clips=1, split="dev", config=TINY, progress=False)


def test_activity_envelope_follows_the_sound():
    rate, fps = 8000, 4.0
    mono = np.zeros(rate * 2)
    mono[rate // 2 : rate] = np.sin(np.arange(rate // 2) * 0.3)  # sounds from 0.5 s to 1.0 s
    env = synth.activity_envelope(mono, rate, fps, 8)
    assert env.shape == (8,) and env.max() == 1.0
    assert env[2] > 0.85 and env[3] == 1.0  # frame 2 (0.375-0.625 s) is half sounding
    assert env[0] == 0.0 and env[6] == 0.0
    assert not synth.activity_envelope(np.zeros(rate), rate, fps, 4).any()


def test_sources_pulse_with_their_sound_and_decoys_with_their_own_rhythm():
    rng = np.random.default_rng(3)
    decoy = synth.decoy_activity(40, 4.0, rng)
    assert decoy.shape == (40,) and 0.0 <= decoy.min() and decoy.max() <= 1.0
    assert decoy.std() > 0.1  # on/off, not constant
    from swansphere_training.corpus.video import VisualObject, render_frames

    still = np.zeros(2)
    kwargs = dict(azimuth=still, elevation=still, distance=still + 3.0, sounding=True, seed=1)
    quiet = render_frames(
        [VisualObject("drum_kit", **kwargs, pulse=np.zeros(2))], 2, background_seed=0
    )
    loud = render_frames(
        [VisualObject("drum_kit", **kwargs, pulse=np.ones(2))], 2, background_seed=0
    )
    background = render_frames([], 2, background_seed=0)
    changed_quiet = np.any(quiet != background, axis=-1).sum()
    changed_loud = np.any(loud != background, axis=-1).sum()
    assert changed_loud > 1.3 * changed_quiet  # a loud source is drawn larger


def test_clip_json_records_the_pulses_the_video_shows_and_the_dry_power(tmp_path, monkeypatch):
    """clip.json keeps each object's pulse exactly as the frames were drawn with it, and
    each source's dry signal power: what the scene oracles of eval generator read."""
    from swansphere_training.corpus import video

    drawn = []
    real = video.render_frames

    def recording(objects, *args, **kwargs):
        drawn.extend(objects)
        return real(objects, *args, **kwargs)

    monkeypatch.setattr(video, "render_frames", recording)
    config = replace(TINY, max_distractors=2)
    for index in range(6):  # until a clip has a distractor
        drawn.clear()
        folder = make_clip(tmp_path, "test", seed=2, index=index, config=config)
        meta = json.loads((folder / "clip.json").read_text())
        if meta["distractors"]:
            break
    assert meta["distractors"], "no clip with a distractor in 6 draws"
    recorded = [s["activity"] for s in meta["sources"]] + [
        d["activity"] for d in meta["distractors"]
    ]
    assert len(drawn) == len(recorded)
    for obj, pulse in zip(drawn, recorded, strict=True):
        assert len(pulse) == meta["video"]["frames"]
        np.testing.assert_allclose(obj.pulse, pulse, atol=5e-5)
    # The dry power, replayed from the clip's random stream: the first source's signal is
    # the first thing drawn after the room and the scene.
    from swansphere_training.corpus.room import random_room
    from swansphere_training.corpus.scene import random_scene
    from swansphere_training.corpus.sources import synthesize_source

    rng = clip_rng(2, "test", index)
    random_room(rng)
    first = random_scene(rng, config, None).sources[0]
    mono = synthesize_source(first.track.class_name, config.seconds, config.sample_rate, rng)
    power_db = 10 * np.log10(np.mean(mono[: int(config.seconds * config.sample_rate)] ** 2))
    assert meta["sources"][0]["power_db"] == pytest.approx(power_db, abs=1e-3)


def test_typical_class_power_is_deterministic_and_tells_loud_classes_from_quiet():
    from swansphere_training.corpus.sources import typical_power_db

    siren = typical_power_db("siren", 1.0, 22050, draws=2)
    rain = typical_power_db("rain", 1.0, 22050, draws=2)
    assert siren == typical_power_db("siren", 1.0, 22050, draws=2)
    assert siren > rain + 15.0  # a siren is far louder than a drizzle at the same peak
    with pytest.raises(ValueError, match="unknown sound class 'kazoo'"):
        typical_power_db("kazoo", 1.0, 22050)
