import numpy as np

from swansphere_training.corpus.classes import SOUND_CLASSES
from swansphere_training.corpus.scene import SynthConfig, random_scene, random_track


def test_tracks_stay_in_the_elevation_band_and_keyframe_at_video_rate():
    config = SynthConfig(seconds=4.0)
    rng = np.random.default_rng(0)
    for i in range(200):
        track = random_track(rng, "siren", moving=bool(i % 2), config=config)
        assert track.t.size == 17 and track.t[-1] == 4.0
        el = np.rad2deg(track.elevation)
        assert el.min() >= -40 - 1e-9 and el.max() <= 60 + 1e-9
        assert np.all(track.distance >= 0.99)


def test_static_tracks_do_not_move_and_moving_ones_do():
    config = SynthConfig(seconds=2.0)
    rng = np.random.default_rng(1)
    static = random_track(rng, "rain", moving=False, config=config)
    assert np.ptp(static.azimuth) == 0 and np.ptp(static.elevation) == 0
    travel = []
    for _ in range(50):
        moving = random_track(rng, "rain", moving=True, config=config)
        v = np.stack(
            [
                np.cos(moving.azimuth) * np.cos(moving.elevation),
                np.sin(moving.azimuth) * np.cos(moving.elevation),
                np.sin(moving.elevation),
            ],
            1,
        )
        travel.append(
            np.rad2deg(np.arccos(np.clip(v[0] @ v[-1], -1, 1)))
            + abs(np.log(moving.distance[-1] / moving.distance[0]))
        )
    assert np.median(travel) > 10


def test_scene_classes_are_distinct_and_counts_in_range():
    config = SynthConfig()
    rng = np.random.default_rng(2)
    for _ in range(100):
        scene = random_scene(rng, config)
        names = [s.track.class_name for s in scene.sources] + [
            d.class_name for d in scene.distractors
        ]
        assert len(set(names)) == len(names)
        assert set(names) <= set(SOUND_CLASSES)
        assert 1 <= len(scene.sources) <= 3 and len(scene.distractors) <= 2
        assert scene.sources[0].level_db == 0.0
    assert len(random_scene(rng, config, n_sources=2).sources) == 2
