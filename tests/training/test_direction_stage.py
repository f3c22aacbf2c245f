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
from swansphere_training.stages.direction import (
    PatchFrameDataset,
    caption_embeddings,
    clip_patches,
    cue_loss,
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


def test_train_bundle_and_generate_with_the_cue(corpus, tmp_path, capsys):
    run = tmp_path / "direction"
    args = ["train", "direction", "--data", str(corpus), "--steps", "2", "--no-track",
            "--out", str(run), "--set", "batch_size=2", "--set", "crop_patches=6"]  # fmt: skip
    assert main(args) == 0
    trained = json.loads(capsys.readouterr().out)
    # The tiny cue reads captions: the test clips are scored without and with theirs.
    figures = {"angular_error_deg", "median_error_deg", "patch_error_deg"}
    assert set(trained["eval"]) == figures | {f"caption_{k}" for k in figures}
    for value in trained["eval"].values():
        assert 0 <= value <= 180

    # A bundle whose generator aims its lock at the cue needs the cue.
    shipped = load_bundle("default")
    parts = {n: (*shipped.component(n), shipped.kind(n)) for n in ("vae", "svac", "generator")}
    parts["generator"][0]["direction_source"] = "lm"
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

    wider = VideoDirectionCue(VideoDirectionConfig.from_dict(config | {"dim": 8}))
    with pytest.raises(InputError, match="differs from this run's"):
        load_initial_cue(wider, "default")
    shipped = load_bundle("default")
    no_cue = write_bundle(tmp_path / "no-cue", {"vae": (*shipped.component("vae"), "vae")})
    with pytest.raises(InputError, match="has no direction cue"):
        load_initial_cue(cue, str(no_cue))


def test_fine_tuning_anneals_the_rate_to_zero(corpus, tmp_path, capsys):
    run = tmp_path / "anneal"
    args = ["train", "direction", "--data", str(corpus), "--steps", "3", "--no-track",
            "--out", str(run), "--eval-every", "0", "--set", "batch_size=2",
            "--set", "crop_patches=6", "--set", 'init_from="default"',
            "--set", "warmup_steps=1", "--set", "lr_decay_steps=2"]  # fmt: skip
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
