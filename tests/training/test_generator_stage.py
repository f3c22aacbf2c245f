"""Tests of swansphere_training/stages/generator.py and data/features.py on a tiny captioned
corpus: training steps in both phases, exact resumption, the feature cache, modality dropout,
and the bundle export with a generator."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from swansphere.errors import InputError
from swansphere.generation import GeneratorRuntime, SessionConfig
from swansphere.generation.conditioning import SaliencyWindow
from swansphere.models.bundle import load_bundle, write_bundle
from swansphere.models.generator import SpatialGenerator
from swansphere_training.checkpoint import load_checkpoint
from swansphere_training.corpus.captioning import caption_corpus
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import synthesize_corpus
from swansphere_training.data.dataset import ClipDataset
from swansphere_training.data.features import pseudo_foa
from swansphere_training.pipeline import export_bundle
from swansphere_training.stages import FitOptions
from swansphere_training.stages.generator import (
    GeneratorStage,
    GeneratorStageConfig,
    modality_masks,
    split_into_restarts,
)

TINY = replace(PRESETS["small"], seconds=2.0, max_distractors=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gen") / "corpus"
    synthesize_corpus(root, clips=4, seed=5, split="train", config=TINY, workers=1, progress=False)
    synthesize_corpus(root, clips=2, seed=6, split="test", config=TINY, workers=1, progress=False)
    caption_corpus(root, progress=False)
    return root


def make_stage(out: Path, corpus: Path, **overrides) -> GeneratorStage:
    settings = {
        "batch_size": 2,
        "curriculum_steps": 2,
        "warmup_steps": 2,
        "clip_patches": 4,
        "restart_patches": 2,  # every other step trains 2-patch pieces as clip starts
        "eval_clips": 2,
        **overrides,
    }
    config = GeneratorStageConfig(data=str(corpus), seed=1, **settings)
    options = FitOptions(out_dir=out, checkpoint_every=2, track=False, progress=False)
    return GeneratorStage(config, options)


def test_pseudo_foa_folds_the_cardioid_pair_into_w_and_one_dipole() -> None:
    foa = np.random.default_rng(0).standard_normal((4, 64))
    for axis, row in ((0, 3), (1, 1), (2, 2)):
        out = pseudo_foa(foa, axis)
        np.testing.assert_allclose(out[0], foa[0])  # L + R = W: the level is kept
        np.testing.assert_allclose(out[row], foa[1])  # L - R = Y
        assert np.all(out[[r for r in (1, 2, 3) if r != row]] == 0)
    with pytest.raises(InputError):
        pseudo_foa(foa, 3)


def test_modality_dropout_covers_every_combination() -> None:
    gen = torch.Generator().manual_seed(0)
    ones = torch.ones(4000, dtype=torch.bool)
    video, text = modality_masks(ones, ones, 0.3, 0.3, curriculum=False, generator=gen)
    combos = {(bool(v), bool(t)) for v, t in zip(video, text, strict=True)}
    assert combos == {(True, True), (True, False), (False, True), (False, False)}
    assert abs(float((~video & ~text).float().mean()) - 0.09) < 0.03  # the null condition
    # The curriculum drops all video; a clip's missing modality is always dropped.
    video, text = modality_masks(ones, ~ones, 0.3, 0.3, curriculum=True, generator=gen)
    assert not video.any() and not text.any()


def test_restarts_cut_rows_into_pieces_that_keep_their_video() -> None:
    z = torch.arange(2 * 3 * 20, dtype=torch.float32).reshape(2, 3, 20)  # 5 patches of 4
    batch = {
        "video": torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1, 1),
        "intensity": torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3),
        "has_video": torch.tensor([True, False]),
    }
    pieces, out = split_into_restarts(z, batch, patches=2, patch_frames=4)
    assert pieces.shape == (4, 3, 8) and out["video"].shape == (4, 2, 1, 1)
    assert torch.equal(out["intensity"][3], batch["intensity"][1, 2:4])
    assert torch.equal(pieces[1], z[0, :, 8:16]) and torch.equal(pieces[2], z[1, :, :8])
    assert out["video"][1, :, 0, 0].tolist() == [2.0, 3.0]
    assert out["has_video"].tolist() == [True, True, False, False]


def test_train_resume_cache_and_bundle(corpus: Path, tmp_path: Path) -> None:
    straight = make_stage(tmp_path / "a", corpus)
    result = straight.fit(4)
    assert result.step == 4 and np.isfinite(result.metrics["loss"])
    assert result.metrics["curriculum"] == 0.0  # steps 3-4 are past the 2 curriculum steps
    assert {"loss_full", "loss_video", "loss_text", "loss_none"} <= set(result.eval_metrics)
    for name in ("full", "video", "text", "none"):
        assert 0.0 <= result.eval_metrics[f"direction_deg_{name}"] <= 180.0
    assert np.isfinite(result.metrics["direction_loss"])
    features = tmp_path / "a/features/train.safetensors"
    assert features.is_file() and (tmp_path / "a/features/test.safetensors").is_file()
    state = load_checkpoint(tmp_path / "a/checkpoints").model_state
    # Latent statistics and the mean video token per cell are measured on the training
    # corpus and saved with the weights.
    assert not torch.equal(state["latent_std"], torch.ones_like(state["latent_std"]))
    assert state["lm.video.token_mean"].abs().sum() > 0

    # Stop after step 2 (the curriculum), resume to 4: bitwise the same weights, and the
    # run's feature cache is reused, not rebuilt.
    early = make_stage(tmp_path / "b", corpus).fit(2)
    assert early.metrics["curriculum"] == 1.0 and early.metrics["video_kept"] == 0.0
    cache = tmp_path / "b/features/train.safetensors"
    mtime = cache.stat().st_mtime_ns
    make_stage(tmp_path / "b", corpus).fit(4, resume=True)
    assert cache.stat().st_mtime_ns == mtime
    resumed = load_checkpoint(tmp_path / "b/checkpoints").model_state
    assert state.keys() == resumed.keys()
    for key in state:
        assert torch.equal(state[key], resumed[key]), key
    first = load_checkpoint(tmp_path / "a/checkpoints/step_00000002").model_state
    assert not torch.equal(first["dit.final.weight"], state["dit.final.weight"])

    # Bundle: the trained generator beside the shipped VAE and SVAC, float16 weights.
    bundle = export_bundle(
        tmp_path / "bundle", {"generator": tmp_path / "a"}, {}, {}, base="default"
    )
    loaded = load_bundle(bundle)
    assert set(loaded.components) == {"vae", "svac", "generator", "direction"}
    assert loaded.data["stages"]["vae"]["from_bundle"]["spec"] == "default"
    generator = loaded.build("generator")
    assert isinstance(generator, SpatialGenerator)
    assert torch.equal(generator.latent_std, state["latent_std"])
    size = sum(p.stat().st_size for p in Path(bundle).iterdir())
    assert size <= 40 * 2**20
    # Accepted beside a new VAE decoder; refused beside another VAE encoder, which would
    # not make the latents the generator learnt.
    base = load_bundle("default")
    vae_config, vae_state = base.component("vae")
    for part, ok in (("decoder.", True), ("encoder.", False)):
        state = {
            k: v + 1e-3 if k.startswith(part) and k.endswith("bias") else v
            for k, v in vae_state.items()
        }
        other = write_bundle(
            tmp_path / part,
            {"vae": (vae_config, state, "vae"), "svac": (*base.component("svac"), "svac")},
        )
        if ok:
            export_bundle(tmp_path / "new-decoder", {"generator": tmp_path / "a"}, {}, {}, other)
        else:
            with pytest.raises(InputError, match="features of another vae"):
                export_bundle(tmp_path / "refused", {"generator": tmp_path / "a"}, {}, {}, other)


def test_rows_can_train_without_an_lm_past(corpus: Path, tmp_path: Path) -> None:
    result = make_stage(tmp_path / "a", corpus, curriculum_steps=0, p_drop_lm_history=1.0).fit(1)
    assert result.metrics["lm_history_kept"] == 0.0 and np.isfinite(result.metrics["loss"])
    with pytest.raises(InputError, match="p_drop_lm_history must be in"):
        make_stage(tmp_path / "b", corpus, p_drop_lm_history=1.5).fit(1)


def test_intensity_is_added_to_an_older_cache_and_init_from_a_bundle(
    corpus: Path, tmp_path: Path
) -> None:
    stage = make_stage(tmp_path, corpus, init_from="default")
    stage.model = stage.build_model()
    shipped = load_bundle("default").component("generator")[1]
    key = "dit.final.weight"
    torch.testing.assert_close(stage.model.state_dict()[key], shipped[key].float())
    features = stage.features("train")
    intensity = features.get(0, "intensity")
    assert intensity.shape == (features.patches(0), 3) and intensity.abs().sum() > 0

    # A cache written before the intensity existed gains it on load, without a model pass.
    cache = tmp_path / "features/train.safetensors"
    with safe_open(str(cache), framework="pt") as f:
        meta = f.metadata()
        old = {k: f.get_tensor(k) for k in f.keys() if not k.endswith(".intensity")}
    save_file(old, str(cache), metadata=meta)
    upgraded = stage.features("train")
    torch.testing.assert_close(upgraded.get(0, "intensity"), intensity)
    with safe_open(str(cache), framework="pt") as f:
        assert f"{features.ids[0]}.intensity" in set(f.keys())

    with pytest.raises(InputError, match="config differs"):
        make_stage(tmp_path / "x", corpus, init_from="default", preset="S").build_model()

    # A generator from before the saliency input, sampled with other guidance, starts one
    # with it: the new weights at zero.
    base = load_bundle("default")
    config, weights = base.component("generator")
    config = {k: v for k, v in config.items() if k not in ("video_saliency", "saliency_window")}
    config |= {"guidance_text": 1.5, "guidance_video": 1.5}
    weights = {k: v for k, v in weights.items() if not k.startswith("lm.video.prior_")}
    older = {name: (*base.component(name), name) for name in ("vae", "svac")}
    older["generator"] = (config, weights, "generator")
    older_bundle = write_bundle(tmp_path / "older", older)
    model = make_stage(tmp_path / "y", corpus, init_from=str(older_bundle)).build_model()
    assert model.lm.video.prior_proj.weight.abs().sum() == 0 and model.lm.video.prior_scale == 0


def test_a_stale_feature_cache_is_rebuilt(corpus: Path, tmp_path: Path) -> None:
    stage = make_stage(tmp_path, corpus)
    stage.model = stage.build_model()
    first = stage.features("train")
    cache = tmp_path / "features/train.safetensors"
    mtime = cache.stat().st_mtime_ns
    assert stage.features("train").ids == first.ids and cache.stat().st_mtime_ns == mtime
    clip = sorted((corpus / "train").iterdir())[0]
    record = json.loads((clip / "caption.json").read_text())
    try:
        (clip / "caption.json").write_text(json.dumps({**record, "caption": "A bell above."}))
        rebuilt = stage.features("train")
        assert cache.stat().st_mtime_ns != mtime
        index = rebuilt.ids.index(clip.name)
        assert not torch.equal(rebuilt.get(index, "text"), first.get(index, "text"))
    finally:
        (clip / "caption.json").write_text(json.dumps(record))


def test_the_cached_saliency_is_what_generation_computes(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = make_stage(tmp_path, corpus)
    stage.model = stage.build_model()
    assert stage.model.config.video_saliency
    features = stage.features("train")
    saliency = features.get(0, "saliency")
    assert saliency.shape == (features.patches(0), stage.model.config.video_tokens)
    torch.testing.assert_close(saliency.sum(dim=1), torch.ones(len(saliency)))

    # The runtime (same VAE and SVAC) pushes the same frames through the same window.
    seen: list[torch.Tensor] = []
    push = SaliencyWindow.push

    def recorded(window: SaliencyWindow, cues) -> torch.Tensor:
        seen.append(push(window, cues))
        return seen[-1]

    monkeypatch.setattr(SaliencyWindow, "push", recorded)
    clip = next(c for c in ClipDataset(corpus, split="train") if c.id == features.ids[0])
    frames, fps = clip.load_video()
    runtime = GeneratorRuntime.random("tiny")
    duration = features.patches(0) * runtime.patch_seconds
    runtime.generate(frames, fps, None, duration, SessionConfig(steps=1))
    torch.testing.assert_close(torch.cat(seen), saliency, atol=1e-5, rtol=0)


def test_the_lr_anneals_over_lr_decay_steps(corpus: Path, tmp_path: Path) -> None:
    stage = make_stage(tmp_path, corpus, curriculum_steps=0, warmup_steps=1, lr_decay_steps=2)
    result = stage.fit(3)
    assert np.isfinite(result.metrics["loss"])
    assert stage.optimizers["main"].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
