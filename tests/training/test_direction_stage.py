"""The video direction cue's stage: its loss and targets, train -> bundle -> a runtime whose
lock aims at the cue, through the CLI on a tiny corpus (plumbing, not quality)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from swansphere.cli import main
from swansphere.errors import InputError
from swansphere.generation import GeneratorRuntime, SessionConfig
from swansphere.models.bundle import load_bundle, write_bundle
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import synthesize_corpus
from swansphere_training.data.dataset import ClipDataset
from swansphere_training.stages.base import FitOptions
from swansphere_training.stages.direction import (
    DirectionStage,
    DirectionStageConfig,
    PatchFrameDataset,
    caption_embeddings,
    cell_loss,
    clip_patches,
    crop_symmetry,
    cue_loss,
    length_correlation,
    length_loss,
    length_share_loss,
    object_pulse_maps,
    pulse_loss,
    source_cell_targets,
)

TINY = replace(PRESETS["small"], seconds=2.0, max_distractors=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("direction") / "corpus"
    for split, clips in (("train", 3), ("test", 2)):
        synthesize_corpus(root, clips=clips, seed=3, split=split, config=TINY, workers=1,
                          progress=False)  # fmt: skip
    assert main(["data", "caption", str(root)]) == 0  # the cue reads captions too
    return root


def test_the_loss_is_zero_on_target_and_largest_opposite():
    target = torch.randn(2, 5, 3)
    valid = torch.ones(2, 5, dtype=torch.bool)
    assert float(cue_loss(3 * target, target, valid)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(cue_loss(-target, target, valid)[0]) == pytest.approx(4.0, abs=1e-5)
    # Invalid (padded) patches do not count.
    valid[:, 3:] = False
    noisy = target.clone()
    noisy[:, 3:] = torch.randn(2, 2, 3)
    assert float(cue_loss(noisy, target, valid)[0]) == pytest.approx(0.0, abs=1e-6)


def _lengths_case(seed: int) -> tuple[torch.Tensor, ...]:
    """Targets (2 clips, 6 patches), all valid, and estimates as long as the targets but
    pointing anywhere (turned), the same times a per-clip factor (scaled) and the targets
    in another patch order (shuffled)."""
    torch.manual_seed(seed)
    target = torch.randn(2, 6, 3)
    valid = torch.ones(2, 6, dtype=torch.bool)
    turned = torch.randn(2, 6, 3)
    turned = turned / turned.norm(dim=-1, keepdim=True) * target.norm(dim=-1, keepdim=True)
    scaled = turned * torch.tensor([0.5, 4.0])[:, None, None]
    return target, valid, turned, scaled, target[:, torch.randperm(6)]


def _check_padding_and_gradient(term, target, valid, turned, shuffled) -> None:
    """Invalid (padded) patches do not count in ``term``, which has a gradient."""
    valid = valid.clone()
    valid[:, 4:] = False
    padded = turned.clone()
    padded[:, 4:] = 100.0
    assert float(term(padded, target, valid)) == pytest.approx(0.0, abs=1e-6)
    estimate = shuffled.clone().requires_grad_(True)
    term(estimate, target, valid).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad[:, :4].abs().sum() > 0
    assert estimate.grad[:, 4:].abs().sum() == 0


def test_the_length_term_is_free_of_a_clip_scale_and_of_direction():
    target, valid, turned, scaled, shuffled = _lengths_case(0)
    # Each clip's estimates c_b times as long as its targets, pointing anywhere: no loss.
    # LENGTH_FLOOR keeps it from exact: lengths near it are compressed differently.
    assert float(length_loss(scaled, target, valid)) < 0.05
    assert float(length_loss(turned, target, valid)) == pytest.approx(0.0, abs=1e-6)
    assert float(length_loss(shuffled, target, valid)) > 0.05
    _check_padding_and_gradient(length_loss, target, valid, turned, shuffled)
    t = target[0].numpy()
    assert length_correlation(2 * t, t) == pytest.approx(1.0, abs=0.01)
    assert length_correlation(t[::-1], t) < 0.9
    assert length_correlation(np.ones((6, 3)), t) == pytest.approx(0.0, abs=1e-6)


def test_the_length_share_term_weighs_each_patch_by_its_share_of_the_clip():
    target, valid, turned, scaled, shuffled = _lengths_case(1)
    # Each clip's estimates c_b times as long as its targets, pointing anywhere: no loss.
    assert float(length_share_loss(scaled, target, valid)) == pytest.approx(0.0, abs=1e-6)
    assert float(length_share_loss(shuffled, target, valid)) > 0.01
    # A patch the reference makes loud costs more when missed than a quiet one.
    loud = torch.ones(1, 4, 3)
    loud[0, 0] *= 10.0
    one = torch.ones(1, 4, dtype=torch.bool)
    miss_loud, miss_quiet = loud.clone(), loud.clone()
    miss_loud[0, 0] *= 0.5
    miss_quiet[0, 1] *= 0.5
    assert float(length_share_loss(miss_loud, loud, one)) > float(
        length_share_loss(miss_quiet, loud, one)
    )
    _check_padding_and_gradient(length_share_loss, target, valid, turned, shuffled)


def test_term_weights_must_be_finite_and_not_negative(corpus):
    for name, value in (("length_weight", -1.0), ("cell_weight", float("nan")),
                        ("pulse_weight", -0.5)):  # fmt: skip
        with pytest.raises(InputError, match=f"{name} must be a finite number >= 0"):
            DirectionStageConfig(data=str(corpus), **{name: value})
    with pytest.raises(InputError, match="length_term must be one of log, share"):
        DirectionStageConfig(data=str(corpus), length_term="loudness")


def _source(azimuth_deg: float, level_db: float, activity: list[float]) -> dict:
    return {
        "class": "siren",
        "level_db": level_db,
        "power_db": -20.0,
        "activity": activity,
        "trajectory": {
            "t": [0.0, 2.0],
            "azimuth_deg": [azimuth_deg, azimuth_deg],
            "elevation_deg": [0.0, 0.0],
            "distance_m": [2.0, 2.0],
        },
    }


def test_source_maps_put_each_patch_on_its_sounding_sources():
    from swansphere.foa.panorama import grid_directions

    directions = grid_directions(8, 16).astype(np.float64)
    left, right = 90.0, -90.0
    # Left sounds throughout, 10 dB louder; right only in the second second.
    meta = {
        "duration_s": 2.0,
        "video": {"fps": 4.0},
        "sources": [_source(left, 10.0, [1.0] * 8), _source(right, 0.0, [0.0] * 4 + [1.0] * 4)],
        "distractors": [{"class": "dog_bark", "azimuth_deg": 0.0, "elevation_deg": 0.0}],
    }
    cells = source_cell_targets(meta, 12, 0.2, directions)  # the last 2 patches are past 2 s
    assert cells.shape == (12, 128) and cells.dtype == np.float32
    np.testing.assert_allclose(cells[:10].sum(1), 1.0, atol=1e-6)
    assert not cells[10:].any()
    y = directions[:, 1]  # the left (+y) half of the sphere
    # Early: the right source is 30 dB down (a pulse at rest), so almost all is left.
    assert cells[0][y > 0].sum() > 0.99
    # Late: both at their loudest, the left 10 dB louder (pulses count from the loudest frame).
    late = cells[8]
    share = late[y > 0].sum() / late[y < 0].sum()
    assert 9.0 < share < 11.0
    assert abs(directions[np.argmax(cells[0])] @ np.array([0.0, 1.0, 0.0])) > 0.95
    front = directions[:, 0] > 0.9  # the silent distractor's cells get (nearly) nothing
    assert cells[:10, front].sum(1).max() < 1e-3
    # Pulses measured against their clip mean (as the signal oracle does): the right source
    # sounds half the time, so at its loudest it counts 1 / (0.5 + 0.5e-3) ~ 2x, the
    # steady left 1x: 10 dB louder is now a 5x share.
    mean = source_cell_targets(meta, 12, 0.2, directions, pulse_reference="mean")
    late = mean[8]
    assert 4.5 < late[y > 0].sum() / late[y < 0].sum() < 5.5
    np.testing.assert_allclose(mean[:10].sum(1), 1.0, atol=1e-6)
    with pytest.raises(InputError, match="pulse_reference"):
        source_cell_targets(meta, 12, 0.2, directions, pulse_reference="median")
    # Another corpus (no pulses in clip.json): no map.
    del meta["sources"][1]["activity"]
    assert not source_cell_targets(meta, 12, 0.2, directions).any()


def test_pulse_maps_show_every_object_and_how_it_pulses_at_each_patchs_frame():
    from swansphere.foa.panorama import grid_directions

    directions = grid_directions(8, 16).astype(np.float64)
    pulse = [0.1 * k for k in range(8)]
    moving = _source(90.0, 0.0, pulse)
    moving["trajectory"]["azimuth_deg"] = [90.0, 0.0]  # left to front over 2 s
    decoy = {"class": "dog_bark", "azimuth_deg": -90.0, "elevation_deg": 0.0,
             "distance_m": 3.0, "activity": [0.0, 0.0, 0.8, 0.8, 0.8, 0.0, 0.0, 0.0]}  # fmt: skip
    meta = {"duration_s": 2.0, "video": {"fps": 4.0}, "sources": [moving], "distractors": [decoy]}
    frames = np.array([0, 0, 1, 3, 4, 7])  # each patch's video frame, repeats included
    maps = object_pulse_maps(meta, frames, directions)
    assert maps.shape == (6, 128, 2) and maps.dtype == np.float32
    assert bool(((maps >= 0) & (maps <= 1)).all())
    for p, frame in enumerate(frames):
        t = frame / 4.0  # clip.json's keyframes interpolate positions, left to front
        source = np.array([t / 2, 1 - t / 2, 0.0]) / np.hypot(t / 2, 1 - t / 2)
        at_source = np.argmax(directions @ source)
        at_decoy = np.argmax(directions @ np.array([0.0, -1.0, 0.0]))
        # Both are seen (at elevation 0, between two rows of cells, 11.25 degrees off each).
        assert maps[p, at_source, 0] > 0.3 and maps[p, at_decoy, 0] > 0.3
        assert maps[p, at_source, 1] == pytest.approx(pulse[frame])
        assert maps[p, at_decoy, 1] == pytest.approx(decoy["activity"][frame])
    behind = directions[:, 0] < -0.9  # nothing stands behind
    assert maps[:, behind, 0].max() < 1e-3
    del meta["distractors"][0]["activity"]  # another corpus: no map
    assert not object_pulse_maps(meta, frames, directions).any()


def test_the_pulse_loss_favours_the_true_readings_and_skips_padded_patches():
    torch.manual_seed(0)
    maps = torch.rand(2, 5, 128, 2)
    valid = torch.ones(2, 5, dtype=torch.bool)
    true = pulse_loss(maps, maps, valid)
    assert float(true) < float(pulse_loss(maps.flip(-2), maps, valid))
    assert float(true) < float(pulse_loss(torch.full_like(maps, 0.5), maps, valid))
    valid[:, 3:] = False
    wrong = maps.clone()
    wrong[:, 3:] = 1 - wrong[:, 3:]
    torch.testing.assert_close(pulse_loss(wrong, maps, valid), pulse_loss(maps, maps, valid))
    # The level counts only where an object stands.
    absent = maps.clone()
    absent[..., 0] = 0
    level_free = absent.clone()
    level_free[..., 1] = 1 - level_free[..., 1]
    torch.testing.assert_close(
        pulse_loss(level_free, absent, valid), pulse_loss(absent, absent, valid)
    )


def test_the_cell_loss_is_zero_on_the_map_and_skips_patches_without_one():
    cells = torch.softmax(torch.randn(2, 5, 128), dim=-1)
    valid = torch.ones(2, 5, dtype=torch.bool)
    assert float(cell_loss(7 * cells, cells, valid)) == pytest.approx(0.0, abs=1e-5)
    flat = torch.ones(2, 5, 128)
    assert float(cell_loss(flat, cells, valid)) > 0.1
    cells[:, 3:] = 0  # patches without a map
    valid[:, 2] = False  # a padded patch
    wrong = 7 * cells.clone()
    wrong[:, 2:] = flat[:, 2:]
    assert float(cell_loss(wrong, cells, valid)) == pytest.approx(0.0, abs=1e-5)


def test_crops_follow_the_patches_and_pad_short_clips(corpus):
    from swansphere.models.direction import VideoDirectionConfig

    config = VideoDirectionConfig()
    clips = list(ClipDataset(corpus, split="train", require_video=True))
    canvases, index, targets = clip_patches(clips[0], config)
    n = len(index)  # 2 s of 0.186 s patches
    assert n == 11 and targets.shape == (n, 3) and canvases.shape[1:] == (3, 64, 128)
    assert np.all(np.diff(index.numpy()) >= 0)
    item = PatchFrameDataset(clips, config, crop=n + 3)[0]
    assert item["frames"].shape == (n + 3, 3, 64, 128)
    assert item["valid"].tolist() == [True] * n + [False] * 3
    torch.testing.assert_close(item["targets"][:n], torch.from_numpy(targets))
    assert not item["targets"][n:].any()
    assert item["cells"].shape == (n + 3, 128) and not item["cells"].any()  # maps off
    mapped = PatchFrameDataset(clips, config, crop=n + 3, source_maps=True)[0]
    torch.testing.assert_close(mapped["cells"][:n].sum(1), torch.ones(n))
    assert not mapped["cells"][n:].any()
    torch.manual_seed(0)
    short = PatchFrameDataset(clips, config, crop=4)[0]
    assert short["frames"].shape[0] == 4 and short["valid"].all()


def test_crops_carry_their_clips_caption_unless_dropped(corpus):
    from swansphere.models.direction import DIRECTION_PRESETS

    config = DIRECTION_PRESETS["tiny"]
    clips = list(ClipDataset(corpus, split="train", require_video=True))
    captions = caption_embeddings(clips, config.text_dim)
    assert captions.shape == (3, 384)
    torch.testing.assert_close(captions.norm(dim=-1), torch.ones(3))
    kept = PatchFrameDataset(clips, config, 4, captions, caption_dropout=0.0)
    torch.testing.assert_close(kept[1]["text"], captions[1])
    dropped = PatchFrameDataset(clips, config, 4, captions, caption_dropout=1.0)
    assert not dropped[1]["text"].any()
    without = PatchFrameDataset(clips, config, 4)  # no captions given: none
    assert without[1]["text"].shape == (384,) and not without[1]["text"].any()
    with pytest.raises(InputError, match="caption_dropout"):
        PatchFrameDataset(clips, config, 4, captions, caption_dropout=1.5)
    with pytest.raises(InputError, match=r"captions must be \(3, 384\)"):
        PatchFrameDataset(clips, config, 4, captions[:2])


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("shift", [0, 3, 15])
def test_crop_symmetry_moves_pixels_cells_and_targets_alike(shift, mirror):
    from swansphere.foa.panorama import grid_directions

    rows, cols = 8, 16
    directions = torch.from_numpy(grid_directions(rows, cols)).double()
    # One crop patch per cell: a white square on the cell, its map on the cell, its target
    # the cell's direction. Wherever the symmetry takes them, all three must stay together.
    frames = torch.zeros(rows * cols, 3, 64, 128, dtype=torch.uint8)
    for cell in range(rows * cols):
        r, c = divmod(cell, cols)
        frames[cell, :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] = 255
    cells = torch.eye(rows * cols)
    moved, targets, maps = crop_symmetry(frames, directions, cells, (rows, cols), shift, mirror)
    assert moved.dtype == torch.uint8 and maps.shape == cells.shape
    square = moved[:, 0].double().reshape(-1, rows, 8, cols, 8).mean((2, 4)).flatten(1)
    assert torch.equal(square.argmax(1), maps.argmax(1))
    assert bool((square.max(1).values == 255).all())  # a square never straddles two cells
    torch.testing.assert_close(directions[maps.argmax(1)], targets, atol=1e-6, rtol=0)
    assert bool((maps.argmax(1) != torch.arange(rows * cols)).any()) == (shift > 0 or mirror)
    yaw = np.deg2rad(360.0 * shift / cols)  # Rz(yaw) turns the front to azimuth +yaw
    front = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    turned = crop_symmetry(frames[:1], front, cells[:1], (rows, cols), shift, mirror)[1]
    torch.testing.assert_close(turned[0], torch.tensor([np.cos(yaw), np.sin(yaw), 0.0]).double())
    with pytest.raises(InputError, match="whole number of 16 cells"):
        crop_symmetry(frames[:, :, :, :120], directions, cells, (rows, cols), shift, mirror)


def test_augmentation_turns_only_crops_without_a_caption(corpus):
    from swansphere.models.direction import DIRECTION_PRESETS

    config = DIRECTION_PRESETS["tiny"]
    clips = list(ClipDataset(corpus, split="train", require_video=True))
    captions = caption_embeddings(clips, config.text_dim)

    def item(augment: str, dropout: float, seed: int) -> dict:
        torch.manual_seed(seed)
        data = PatchFrameDataset(clips, config, 6, captions, dropout, True, "mean", augment)
        return data[0]

    plain = item("none", 0.0, 1)
    assert all(torch.equal(plain[k], item("yaw_mirror", 0.0, 1)[k]) for k in plain)  # captioned
    turned = [item("yaw_mirror", 1.0, seed) for seed in range(6)]
    bare = [item("none", 1.0, seed) for seed in range(6)]  # the same crops, untouched
    assert any(not torch.equal(t["frames"], b["frames"]) for t, b in zip(turned, bare, strict=True))
    for t, b in zip(turned, bare, strict=True):
        assert not t["text"].any()
        torch.testing.assert_close(t["targets"].norm(dim=-1), b["targets"].norm(dim=-1))
        torch.testing.assert_close(t["cells"].sum(-1), b["cells"].sum(-1))
        torch.testing.assert_close(t["targets"][:, 2], b["targets"][:, 2])  # yaw keeps z

    # The pulse maps turn with the frames and the source maps: find the crop's turn from
    # its source maps, and the pulse maps must have made the same.
    def mapped(augment: str, seed: int) -> dict:
        torch.manual_seed(seed)
        return PatchFrameDataset(clips, config, 6, captions, 1.0, True, "mean", augment, True)[0]

    turns = set()
    for seed in range(4):
        bare, turned = mapped("none", seed), mapped("yaw", seed)
        assert bare["pulse"][..., 0].any()
        grid = (6, 8, 16)
        shifts = [k for k in range(16) if torch.equal(
            torch.roll(bare["cells"].reshape(grid), -k, dims=-1), turned["cells"].reshape(grid)
        )]  # fmt: skip
        assert len(shifts) == 1
        turns.add(shifts[0])
        for channel in range(2):
            rolled = torch.roll(bare["pulse"][..., channel].reshape(grid), -shifts[0], dims=-1)
            assert torch.equal(rolled, turned["pulse"][..., channel].reshape(grid))
    assert turns != {0}
    stage_config = DirectionStageConfig(data=str(corpus), augment="yaw_mirror")
    stage = DirectionStage(stage_config, FitOptions(out_dir=corpus / "unused", track=False))
    assert stage.build_data().augment == "yaw_mirror"  # the stage's setting reaches the crops
    with pytest.raises(InputError, match="augment must be one of none, yaw, yaw_mirror"):
        DirectionStageConfig(data=str(corpus), augment="roll")
    with pytest.raises(InputError, match="augment must be one of"):
        PatchFrameDataset(clips, config, 6, augment="flip")


def test_train_bundle_and_generate_with_the_cue(corpus, tmp_path, capsys):
    run = tmp_path / "direction"
    args = ["train", "direction", "--data", str(corpus), "--steps", "2", "--no-track",
            "--out", str(run), "--set", "batch_size=2", "--set", "crop_patches=6",
            "--set", "cell_weight=0.5", "--set", "length_weight=0.5",
            "--set", 'length_term="share"', "--set", "caption_dropout=0.5",
            "--set", 'augment="yaw_mirror"']  # fmt: skip
    assert main(args) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["metrics"]["cell_loss"] > 0  # the source-map term trains too
    assert trained["metrics"]["length_loss"] > 0  # and the length term (its share form)
    # The tiny cue reads captions: the test clips are scored without and with theirs.
    figures = {"angular_error_deg", "median_error_deg", "patch_error_deg", "length_correlation"}
    assert set(trained["eval"]) == figures | {f"caption_{k}" for k in figures}
    for key, value in trained["eval"].items():
        assert -1 <= value <= 1 if key.endswith("length_correlation") else 0 <= value <= 180

    # A bundle whose generator aims its lock at the cue needs the cue.
    shipped = load_bundle("default")
    parts = {n: (*shipped.component(n), shipped.kind(n)) for n in ("vae", "svac", "generator")}
    parts["generator"][0].update(direction_source="lm", level_lock=0.0)
    without_cue = write_bundle(tmp_path / "without-cue", parts)
    orphan = ["bundle", str(tmp_path / "orphan"), "--base", str(without_cue),
              "--tune", "generator.direction_source=video"]  # fmt: skip
    assert main(orphan) == 2
    assert "no direction cue" in capsys.readouterr().err

    out = tmp_path / "bundle"
    assert main(["bundle", str(out), "--direction", str(run), "--base", "default"]) == 0
    bundle = load_bundle(out)
    # The base's generator figures were measured with its cue: left out with it.
    assert not [k for k in bundle.metrics if k.startswith(("generator", "direction"))]
    assert "vae" in bundle.metrics and "svac" in bundle.metrics
    assert bundle.kind("direction") == "direction"
    assert "swansphere train direction" in bundle.training_command["direction"]
    assert bundle.data["tuned"]["generator"]["direction_source"] == {
        "trained_with": "lm",
        "bundled": "video",
    }
    # eval direction scores the bundled cue as the run scored its last step.
    capsys.readouterr()  # the bundle's summary
    cue_eval = ["eval", "direction", "--model", str(out), "--data", str(corpus), "--per-clip"]
    assert main(cue_eval) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["clips"] == scored["captioned_clips"] == 2
    assert (
        len(scored["per_clip"]) == 2
        and scored["per_clip"].keys() == scored["caption_per_clip"].keys()
    )
    for key, value in trained["eval"].items():
        assert scored[key] == pytest.approx(value, abs=1e-4), key
    assert main(["eval", "direction", "--model", str(without_cue), "--data", str(corpus)]) == 2
    assert "no direction cue" in capsys.readouterr().err

    runtime = GeneratorRuntime.from_bundle(bundle)
    assert runtime.uses_direction_cue
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 128, 3), dtype=np.uint8)
    audio = runtime.generate(frames, 4.0, None, config=SessionConfig(seed=0, steps=2))
    assert audio.shape == (4, round(0.75 * runtime.sample_rate))
    assert np.isfinite(audio).all()


def test_init_from_starts_at_the_bundles_cue_and_refuses_another_network(tmp_path):
    from swansphere.models.direction import VideoDirectionConfig, VideoDirectionCue
    from swansphere_training.stages.direction import load_initial_cue

    config, state = load_bundle("default").component("direction")
    cue = VideoDirectionCue(VideoDirectionConfig.from_dict(config))
    load_initial_cue(cue, "default")
    for name, value in cue.state_dict().items():
        torch.testing.assert_close(value, state[name].float())

    # A cue without caption layers starts one with them, which then acts as it did.
    plain_config = VideoDirectionConfig.from_dict(config | {"text_dim": 0})
    plain_state = {k: v for k, v in state.items() if not k.startswith(("caption.", "null_"))}
    plain = write_bundle(
        tmp_path / "plain", {"direction": (plain_config.to_dict(), plain_state, "direction")}
    )
    reading = VideoDirectionCue(VideoDirectionConfig.from_dict(config | {"text_dim": 384}))
    load_initial_cue(reading, str(plain))
    for name, value in plain_state.items():
        torch.testing.assert_close(reading.state_dict()[name], value.float())
    assert not reading.caption.weight.any() and not reading.null_caption.any()

    # So does one with the long filter: it starts at zero, and the estimates are the same.
    longer = VideoDirectionCue(VideoDirectionConfig.from_dict(config | {"long_taps": 16}))
    load_initial_cue(longer, "default")
    assert not longer.long_filter.weight.any() and not longer.long_filter.bias.any()
    video = torch.randint(0, 256, (1, 20, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(longer.eval()(video), cue.eval()(video))

    # A run may measure the frames' change otherwise: the same weights, read anew.
    by_frame = VideoDirectionCue(VideoDirectionConfig.from_dict(config | {"change_from": "frame"}))
    load_initial_cue(by_frame, "default")
    for name, value in by_frame.state_dict().items():
        torch.testing.assert_close(value, state[name].float())

    # Or wrap its convolutions around the panorama's seam: the same weights, read anew.
    wrapped = VideoDirectionCue(
        VideoDirectionConfig.from_dict(config | {"azimuth_padding": "circular"})
    )
    load_initial_cue(wrapped, "default")
    for name, value in wrapped.state_dict().items():
        torch.testing.assert_close(value, state[name].float())

    # And one with the pulse reader, whose output layer starts at zero.
    reader = VideoDirectionCue(VideoDirectionConfig.from_dict(config | {"pulse_taps": 6}))
    load_initial_cue(reader, "default")
    assert not reader.pulse_out[1].weight.any() and reader.pulse_head.weight.any()
    with torch.no_grad():
        torch.testing.assert_close(reader.eval()(video), cue.eval()(video))

    wider = VideoDirectionCue(VideoDirectionConfig.from_dict(config | {"dim": 8}))
    with pytest.raises(InputError, match="differs from this run's"):
        load_initial_cue(wider, "default")
    shipped = load_bundle("default")
    no_cue = write_bundle(tmp_path / "no-cue", {"vae": (*shipped.component("vae"), "vae")})
    with pytest.raises(InputError, match="has no direction cue"):
        load_initial_cue(cue, str(no_cue))


def test_fine_tuning_anneals_the_rate_to_zero(corpus, tmp_path, capsys):
    run = tmp_path / "anneal"
    # The shipped cue plus a long filter and a pulse reader, which start at zero
    # (load_initial_cue), reading the change since the last different frame; the reader
    # fitted to the pulse maps.
    args = ["train", "direction", "--data", str(corpus), "--steps", "3", "--no-track",
            "--out", str(run), "--eval-every", "0", "--set", "batch_size=2",
            "--set", "crop_patches=6", "--set", 'init_from="default"',
            "--set", "warmup_steps=1", "--set", "lr_decay_steps=2", "--set", "pulse_weight=1.0",
            "--set", 'model={"long_taps": 3, "change_from": "frame", "pulse_taps": 4}']  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    from swansphere_training.checkpoint import load_checkpoint

    # One warm-up step and two decay steps: the rate has fallen to 0 and stays there.
    checkpoint = load_checkpoint(run / "checkpoints")
    assert checkpoint.step == 3
    assert checkpoint.scheduler_state["main"]["_last_lr"] == [0.0]
    # The bundle it started from is pinned by digest, in the checkpoint and the bundle.
    started = {"spec": "default", "digest": load_bundle("default").digest}
    assert checkpoint.extra["init_from"] == started
    assert main(["bundle", str(tmp_path / "b"), "--direction", str(run), "--base", "default"]) == 0
    assert load_bundle(tmp_path / "b").data["stages"]["direction"]["init_from"] == started
    # The long filter it added was trained, and the bundle carries it to serving.
    runtime = GeneratorRuntime.from_bundle(load_bundle(tmp_path / "b"))
    assert runtime.direction.config.long_taps == 3
    assert runtime.direction.config.change_from == "frame"
    assert runtime.direction.long_filter.weight.any()
    assert runtime.direction.config.pulse_taps == 4
    assert runtime.direction.pulse_out[1].weight.any()
    # A pulse term needs a reader to fit.
    refused = [*args[:-2], "--set", 'model={"long_taps": 3}']
    refused[refused.index(str(run))] = str(tmp_path / "refused")
    capsys.readouterr()
    assert main(refused) == 2
    assert "pulse_weight fits the pulse reader" in capsys.readouterr().err
