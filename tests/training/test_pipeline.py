"""Train -> bundle -> eval through the CLI on a tiny corpus (a few steps: plumbing, not quality)."""

import dataclasses
import json
from dataclasses import replace

import pytest
import torch

from swansphere.cli import main
from swansphere.models.bundle import load_bundle
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import synthesize_corpus

TINY = replace(PRESETS["small"], seconds=2.0, max_distractors=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline")
    corpus = root / "corpus"
    synthesize_corpus(
        corpus, clips=4, seed=2, split="train", config=TINY, workers=1, progress=False
    )
    synthesize_corpus(corpus, clips=3, seed=2, split="test", config=TINY, workers=1, progress=False)
    common = ["--data", str(corpus), "--steps", "2", "--no-track", "--checkpoint-every", "1"]
    assert (
        main(
            [
                "train",
                "vae",
                *common,
                "--out",
                str(root / "vae"),
                "--set",
                "batch_size=2",
                "--set",
                "eval_clips=1",
                "--set",
                "adversarial_start=1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "svac",
                *common,
                "--out",
                str(root / "svac"),
                "--set",
                "batch_size=2",
                "--set",
                "eval_clips=3",
            ]
        )
        == 0
    )
    return root, corpus


def test_bundle_and_eval_commands(runs, capsys):
    root, corpus = runs
    capsys.readouterr()
    bundle = root / "bundle"
    assert (
        main(
            [
                "bundle",
                str(bundle),
                "--vae",
                str(root / "vae"),
                "--svac",
                str(root / "svac"),
                "--data",
                str(corpus),
            ]
        )
        == 0
    )
    loaded = load_bundle(bundle)
    assert set(loaded.components) == {"vae", "svac"}
    assert loaded.data["train_clips"] == 4
    vae_stage = loaded.data["stages"]["vae"]
    assert vae_stage["corpus_seed"] == 2 and vae_stage["step"] == 2
    command = loaded.training_command["vae"]
    # The recorded command names every non-default setting, so it reproduces the run.
    assert command.startswith("swansphere train vae --data ") and "--steps 2" in command
    assert "--set batch_size=2" in command and "--set adversarial_start=1" in command
    assert "lr=" not in command
    capsys.readouterr()
    assert main(["eval", "vae", "--model", str(bundle), "--data", str(corpus), "--json"]) == 0
    vae = json.loads(capsys.readouterr().out)
    assert set(vae["mrstft_per_channel"]) == {"W", "Y", "Z", "X"}
    assert vae["streaming_max_abs_diff"] < 1e-4 and 0 <= vae["angular_error_deg"] <= 180
    assert main(["eval", "svac", "--model", str(bundle), "--data", str(corpus), "--json"]) == 0
    svac = json.loads(capsys.readouterr().out)
    assert {"r_at_1", "rotation_top1", "shift_top1"} <= set(svac) and svac["clips"] == 3
    assert "oracle" not in svac
    args = ["eval", "svac", "--model", str(bundle), "--data", str(corpus), "--oracles"]
    assert main(args) == 0
    oracle = json.loads(capsys.readouterr().out)["oracle"]
    combos = ("spatial", "activity", "spatial_and_activity", "activity_with_learned_spatial")
    names = {
        f"{kind}_top1_{knows}{name}"
        for kind in ("rotation", "shift")
        for knows in ("", "video_")  # the drawn levels, or only the classes' typical ones
        for name in combos
    }
    assert oracle["clips"] == 3 and names <= set(oracle)
    assert all(0.0 <= oracle[name] <= 1.0 for name in names)


def test_resume_continues_from_the_checkpoint(runs, capsys):
    root, corpus = runs
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "vae",
                "--data",
                str(corpus),
                "--steps",
                "3",
                "--no-track",
                "--resume",
                "--out",
                str(root / "vae"),
                "--set",
                "batch_size=2",
                "--set",
                "eval_clips=1",
                "--set",
                "adversarial_start=1",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["step"] == 3


def test_tampered_bundle_is_refused_naming_the_file(runs, capsys):
    root, corpus = runs
    bundle = root / "bundle2"
    assert main(["bundle", str(bundle), "--vae", str(root / "vae")]) == 0
    weights = bundle / "vae.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["eval", "vae", "--model", str(bundle), "--data", str(corpus)]) == 2
    assert "vae.safetensors" in capsys.readouterr().err


def test_bad_training_arguments(runs, capsys):
    _, corpus = runs
    assert main(["train", "vae", "--data", str(corpus), "--set", "nonsense=1", "--no-track"]) == 2
    assert "unknown vae setting" in capsys.readouterr().err
    assert main(["train", "svac", "--data", str(corpus / "nowhere")]) == 2
    assert "no training split" in capsys.readouterr().err


def test_vae_warm_start_from_a_bundle(runs):
    from pathlib import Path

    from swansphere.errors import InputError
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.vae import VAEStage, VAEStageConfig

    root, corpus = runs
    config = VAEStageConfig(data=str(corpus), init_from="default")
    stage = VAEStage(config, FitOptions(out_dir=Path(root / "warm"), track=False))
    shipped = load_bundle("default").component("vae")[1]
    for name, tensor in stage.build_model()["vae"].state_dict().items():
        assert torch.equal(tensor, shipped[name]), name
    bad = VAEStageConfig(data=str(corpus), init_from=str(root / "missing"))
    with pytest.raises(InputError, match="missing"):
        VAEStage(bad, FitOptions(out_dir=Path(root / "warm2"), track=False)).build_model()


def test_vae_decoder_only_training_leaves_the_encoder_out(runs):
    from pathlib import Path

    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.vae import VAEStage, VAEStageConfig

    root, corpus = runs
    config = VAEStageConfig(data=str(corpus), freeze_encoder=True)
    stage = VAEStage(config, FitOptions(out_dir=Path(root / "frozen"), track=False))
    stage.model = stage.build_model()
    optimized = {id(p) for g in stage.build_optimizers()["vae"].param_groups for p in g["params"]}
    vae = stage.model["vae"]
    assert not any(id(p) in optimized for p in vae.encoder.parameters())
    assert all(id(p) in optimized for p in vae.decoder.parameters())


def test_a_new_vae_over_a_base_leaves_the_bases_generator_out(runs, caplog):
    root, _ = runs
    assert "generator" in load_bundle("default").components
    out = root / "new-vae"
    assert main(["bundle", str(out), "--vae", str(root / "vae"), "--base", "default"]) == 0
    bundle = load_bundle(out)
    # svac and the video direction cue (it reads only frames) from the base, no generator
    assert set(bundle.components) == {"vae", "svac", "direction"}
    assert "generator is left out" in caplog.text


def test_svac_over_frozen_video_tokens_keeps_the_bases_generator(runs, caplog):
    from pathlib import Path

    from swansphere.models.svac import SVAC, SVACConfig
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.svac import SVACStage, SVACStageConfig

    root, corpus = runs
    run = root / "svac-frozen"
    args = ["train", "svac", "--data", str(corpus), "--steps", "1", "--no-track"]
    settings = [
        "batch_size=2",
        "eval_clips=2",
        "init_from=default",
        "freeze_video_tokens=true",
        "init_spatial=true",
        "freeze_saliency=true",  # the shipped generator takes the saliency too
        'model={"activity_weight": 0.2}',
    ]
    assert main([*args, "--out", str(run), *(x for s in settings for x in ("--set", s))]) == 0
    out = root / "new-svac"
    assert main(["bundle", str(out), "--svac", str(run), "--base", "default"]) == 0
    base, bundle = load_bundle("default"), load_bundle(out)
    assert set(bundle.components) == {"vae", "svac", "generator", "direction"}
    assert "left out" not in caplog.text
    old, new = base.component("svac")[1], bundle.component("svac")[1]
    kept = [k for k in old if k.startswith(("video_encoder.", *SVAC.SALIENCY_WEIGHTS))]
    assert kept and all(torch.equal(old[k], new[k]) for k in kept)
    assert not torch.equal(old["spatial.band_bias"], new["spatial.band_bias"])  # audio side
    # A new saliency changes what the shipped generator is conditioned on: it is left out.
    loose = root / "svac-loose"
    unfrozen = [x for s in settings if "freeze_saliency" not in s for x in ("--set", s)]
    assert main([*args, "--out", str(loose), *unfrozen]) == 0
    assert main(["bundle", str(root / "loose"), "--svac", str(loose), "--base", "default"]) == 0
    assert set(load_bundle(root / "loose").components) == {"vae", "svac", "direction"}
    assert "left out" in caplog.text
    # The bundle holds the network the run trained: the preset with the run's model fields.
    assert SVACConfig.from_dict(bundle.component("svac")[0]).activity_weight == 0.2
    assert bundle.component("svac")[1]["activity.band_gain"].shape == (32,)
    options = FitOptions(out_dir=Path(root / "bad"), track=False)
    # init_spatial starts the spatial code from the bundle's too; the activity map is new.
    warm = SVACStageConfig(data=str(corpus), init_from="default", init_spatial=True)
    model = SVACStage(warm, options).build_model()
    spatial = {k: v for k, v in old.items() if k.startswith("spatial.")}
    assert spatial and all(
        torch.equal(model.state_dict()[k], v.float()) for k, v in spatial.items()
    )
    assert model.activity is not None


def test_a_run_whose_preset_changed_since_is_refused_before_bundling() -> None:
    from swansphere.errors import InputError
    from swansphere.models.svac import SVACConfig
    from swansphere_training.pipeline import check_weights_fit

    config, state = load_bundle("default").component("svac")
    check_weights_fit("svac", SVACConfig.from_dict(config), state, "shipped")
    older = replace(SVACConfig.from_dict(config), activity_weight=0.0)
    with pytest.raises(InputError, match=r"run old do not fit .*unexpected activity\."):
        check_weights_fit("svac", older, state, "old")
    narrower = replace(SVACConfig.from_dict(config), activity_dim=16)
    with pytest.raises(InputError, match=r"activity.patch_embed.weight is \(32, 3, 16, 16\)"):
        check_weights_fit("svac", narrower, state, "old")


def record_of(bundle, component: str, field: str) -> dict:
    return bundle.data["tuned"][component][field]


def test_bundle_tune_sets_post_training_settings_and_records_them(tmp_path, monkeypatch):
    import argparse
    import sys

    from swansphere.cli.train import _tuned_field
    from swansphere.errors import InputError
    from swansphere_training.pipeline import tune_components

    out = tmp_path / "tuned"
    args = ["bundle", str(out), "--base", "default"]
    tunes = ["svac.activity_weight=0.45", "generator.guidance_video=4"]
    args += [x for t in tunes for x in ("--tune", t)]
    monkeypatch.setattr(sys, "argv", ["swansphere", *args])  # the recorded command
    assert main(args) == 0
    base, tuned = load_bundle("default"), load_bundle(out)
    assert tuned.config("svac")["activity_weight"] == 0.45
    assert tuned.config("generator")["guidance_video"] == 4
    assert tuned.build("svac").config.activity_weight == 0.45
    for name in ("vae", "svac", "generator"):  # the same weights
        old, new = base.component(name)[1], tuned.component(name)[1]
        assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    trained_with = base.config("svac")["activity_weight"]
    assert record_of(tuned, "svac", "activity_weight") == {
        "trained_with": trained_with,
        "bundled": 0.45,
    }
    assert record_of(tuned, "generator", "guidance_video") == {
        "trained_with": base.config("generator")["guidance_video"],
        "bundled": 4,
    }
    # The base's other records come along; its evaluations of what it retunes are stale.
    for field, was in base.data["tuned"]["generator"].items():
        assert record_of(tuned, "generator", field) == was
    kept = {k for k in base.metrics if not k.startswith(("svac", "generator"))}
    assert kept and set(tuned.metrics) == kept
    assert "--tune svac.activity_weight=0.45" in tuned.training_command["bundle"]
    # Retuning a tuned field keeps the value it was trained with.
    again = tmp_path / "again"
    tune = ["--tune", "svac.cue_share=0.25", "--tune", "svac.activity_weight=0.4"]
    assert main(["bundle", str(again), "--base", str(out), *tune]) == 0
    retuned = load_bundle(again)
    assert retuned.build("svac").config.cue_share == 0.25
    assert record_of(retuned, "svac", "activity_weight") == {
        "trained_with": trained_with,
        "bundled": 0.4,
    }

    components = {n: (*base.component(n), n) for n in ("svac", "generator")}
    # A config written before a field existed: the record gives the field's default.
    config, state = base.component("generator")
    older = {
        k: v for k, v in config.items() if k not in ("lm_history", "direction_lock", "level_lock")
    }
    record = tune_components(
        {"generator": (older, state, "generator")}, {"generator": {"direction_lock": 0.5}}
    )
    assert record["generator"]["direction_lock"] == {"trained_with": 0.0, "bundled": 0.5}
    record = tune_components(
        {"generator": (older, state, "generator")},
        {"generator": {"direction_lock": 1.0, "level_lock": 0.5}},
    )
    assert record["generator"]["level_lock"] == {"trained_with": 0.0, "bundled": 0.5}
    # The shipped level lock follows the cue: aiming the lock elsewhere needs it off too.
    with pytest.raises(InputError, match="level_lock follows the video direction cue"):
        tune_components(dict(components), {"generator": {"direction_source": "lm"}})
    with pytest.raises(InputError, match=r"generator\.lm_dim: not tunable"):
        tune_components(dict(components), {"generator": {"lm_dim": 64}})
    with pytest.raises(InputError, match="would need other weights"):
        tune_components(dict(components), {"svac": {"activity_weight": 0.0}})
    with pytest.raises(InputError, match="goes with cue_share > 0"):  # the cue's weights
        tune_components(dict(components), {"svac": {"cue_share": 0.0}})
    with pytest.raises(InputError, match="leave content a share"):
        tune_components(dict(components), {"svac": {"activity_weight": 0.7}})
    with pytest.raises(InputError, match="only generator, svac"):
        tune_components(dict(components), {"vae": {"kl_weight": 1}})
    with pytest.raises(argparse.ArgumentTypeError, match=r"takes COMPONENT\.FIELD=VALUE"):
        _tuned_field("guidance=4")
    assert _tuned_field("svac.activity_weight=0.45") == ("svac", "activity_weight", 0.45)


def test_bundle_tunes_the_direction_cues_smoothing_and_drops_what_it_invalidates(tmp_path, capsys):
    from swansphere.models.direction import DirectionTracker

    out = tmp_path / "smoothing1"
    assert main(["bundle", str(out), "--base", "default", "--tune", "direction.smoothing=1"]) == 0
    base, tuned = load_bundle("default"), load_bundle(out)
    cue = tuned.build("direction")
    assert cue.config.smoothing == 1
    assert record_of(tuned, "direction", "smoothing") == {
        "trained_with": base.config("direction")["smoothing"],
        "bundled": 1,
    }
    old, new = base.component("direction")[1], tuned.component("direction")[1]
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    # The generator's evaluations aimed its lock at the old sums: they are not carried.
    assert any(k.startswith("generator") for k in base.metrics)
    assert not any(k.startswith(("generator", "direction")) for k in tuned.metrics)
    # The lock now aims at the latest patch's estimate alone.
    tracker = DirectionTracker(cue.eval())
    h, w = cue.config.frame_height, cue.config.frame_width
    frames = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0))
    tracker.push(frames[0])
    latest = tracker.push(frames[1])
    assert torch.equal(tracker.direction, latest)
    # The cue may also wrap its convolutions around the panorama's seam: the same weights.
    wrapped = tmp_path / "circular"
    tune = ["--tune", "direction.azimuth_padding=circular"]
    assert main(["bundle", str(wrapped), "--base", "default", *tune]) == 0
    assert load_bundle(wrapped).build("direction").config.azimuth_padding == "circular"
    assert record_of(load_bundle(wrapped), "direction", "azimuth_padding") == {
        "trained_with": "zeros",  # the shipped cue's config predates the field
        "bundled": "circular",
    }
    problems = (
        ("smoothing=0", "smoothing"),
        ("dim=64", "direction.dim: not tunable"),
        ("azimuth_padding=reflect", "azimuth_padding must be one of zeros, circular"),
    )
    for tune, problem in problems:
        bad = ["bundle", str(tmp_path / "bad"), "--base", "default", "--tune", f"direction.{tune}"]
        assert main(bad) == 2
        assert problem in capsys.readouterr().err


def test_bundle_base_with_metrics_records_an_evaluation(tmp_path, capsys):
    result = tmp_path / "generator_fresh.json"
    result.write_text(json.dumps({"angular_deg": 41.0}))
    out = tmp_path / "evaluated"
    assert main(["bundle", str(out), "--base", "default", "--metrics", str(result)]) == 0
    base, evaluated = load_bundle("default"), load_bundle(out)
    assert evaluated.metrics["generator_fresh"] == {"angular_deg": 41.0}
    assert set(base.metrics) <= set(evaluated.metrics)
    assert evaluated.data["tuned"] == base.data["tuned"]
    for name in base.components:
        old, new = base.component(name)[1], evaluated.component(name)[1]
        assert all(torch.equal(old[k], new[k]) for k in old)
    assert main(["bundle", str(tmp_path / "nothing"), "--base", "default"]) == 2
    assert "give at least one of" in capsys.readouterr().err


def test_bundle_keep_copies_only_the_named_base_components(tmp_path, capsys):
    out = tmp_path / "cue"
    assert main(["bundle", str(out), "--base", "default", "--keep", "direction"]) == 0
    base, cue = load_bundle("default"), load_bundle(out)
    assert set(cue.components) == {"direction"}
    old, new = base.component("direction"), cue.component("direction")
    assert old[0] == new[0] and all(torch.equal(old[1][k], new[1][k]) for k in old[1])
    assert cue.metrics["direction"] == base.metrics["direction"]  # its evaluation comes along
    capsys.readouterr()
    assert main(["bundle", str(tmp_path / "more"), "--base", str(out), "--keep", "vae"]) == 2
    assert "has no vae to keep (it holds direction)" in capsys.readouterr().err
    assert main(["bundle", str(tmp_path / "lone"), "--keep", "direction"]) == 2
    assert "--keep names components of the --base bundle" in capsys.readouterr().err
    assert not (tmp_path / "more").exists() and not (tmp_path / "lone").exists()


def test_every_stage_has_one_mlproject_entry_point_and_the_cli_trains_it():
    import argparse
    from pathlib import Path

    import yaml

    from swansphere.cli import build_parser
    from swansphere_training.pipeline import STAGES

    project = Path(__file__).resolve().parents[2] / "mlflow" / "MLproject"
    entry_points = yaml.safe_load(project.read_text())["entry_points"]
    pipelines = {"encoders": "../training/scripts/train_encoders.sh "}  # run in mlflow/
    assert set(entry_points) == set(STAGES) | set(pipelines)
    for name, entry in entry_points.items():
        start = pipelines.get(name, f"swansphere train {name} ")
        assert entry["command"].startswith(start)
        if name in pipelines:
            assert (project.parent / start.strip()).is_file()
    train = next(
        action.choices["train"]
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    stage = next(a for a in train._actions if a.dest == "stage")
    assert set(stage.choices) == set(STAGES)


def test_bundle_tune_hands_an_svac_trained_without_a_cue_the_bundles_cue() -> None:
    """--tune svac.cue_share on an SVAC without a cue makes it carry the bundle's direction
    cue, as training with cue_from would have: the shipped SVAC stripped of its cue gets
    back its shipped config and its own weights, and the bundle's cue as its cue."""
    from swansphere.errors import InputError
    from swansphere.models.svac import SVAC, SVACConfig
    from swansphere_training.pipeline import tune_components

    bundle = load_bundle("default")
    config, state = bundle.component("svac")
    bare = {k: v for k, v in config.items() if k != "cue"} | {"cue_share": 0.0}
    own = {k: v for k, v in state.items() if not k.startswith("cue.")}
    cue_config, cue_state = bundle.component("direction")
    components = {"svac": (bare, own, "svac"), "direction": (cue_config, cue_state, "direction")}
    record = tune_components(components, {"svac": {"cue_share": config["cue_share"]}})
    carried_config, carried, _ = components["svac"]
    assert carried_config == bare | {"cue": cue_config, "cue_share": config["cue_share"]}
    assert carried.keys() == state.keys()
    assert all(torch.equal(carried[k], v) for k, v in own.items())
    assert all(torch.equal(carried[f"cue.{k}"], v) for k, v in cue_state.items())
    assert record["svac"] == {
        "cue": {"trained_with": None, "bundled": "the bundle's direction cue"},
        "cue_share": {"trained_with": 0.0, "bundled": config["cue_share"]},
    }
    model = SVAC(SVACConfig.from_dict(carried_config))
    model.load_state_dict({k: v.float() for k, v in carried.items()})  # strict
    with pytest.raises(InputError, match="bundle has none to give it"):
        tune_components({"svac": (bare, own, "svac")}, {"svac": {"cue_share": 0.5}})


# A fine-tune of every SVAC weight that keeps what the shipped generator reads (its video
# tokens and saliency).
KEEPS_THE_GENERATOR = {
    "init_from": "default",
    "init_all": True,
    "freeze_video_tokens": True,
    "freeze_saliency": True,
    # The cue the SVAC reads, copied from the bundle's direction component. The shipped
    # SVAC carries the cue it was fine-tuned with, which may be an older one than the
    # bundle's (the bundle keeps it so that the SVAC's metrics stay valid).
    "cue_from": "default",
}
CARRIES_THE_CUE = {"cue_share": 0.5}


def test_svac_fine_tuning_with_the_activity_maps_source_supervision(runs) -> None:
    """init_all starts every weight from the bundle; source_activity_weight trains the
    activity map's video side towards the sounding sources' map of each crop, and with
    freeze_saliency nothing the generator reads moves."""
    from pathlib import Path

    from swansphere.models.svac import SVAC
    from swansphere_training.data.dataset import collate_clips
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.svac import SVACStage, SVACStageConfig

    root, corpus = runs
    options = FitOptions(out_dir=Path(root / "svac-src"), track=False)
    config = SVACStageConfig(
        data=str(corpus), **KEEPS_THE_GENERATOR, model=CARRIES_THE_CUE, source_activity_weight=1.0
    )
    stage = SVACStage(config, options)
    model = stage.model = stage.build_model()
    bundle = load_bundle("default")
    _, shipped = bundle.component("svac")
    _, cue_state = bundle.component("direction")
    state = model.state_dict()
    assert set(state) == set(shipped)
    own = {k: v for k, v in shipped.items() if not k.startswith("cue.")}
    assert all(torch.equal(state[k], v.float()) for k, v in own.items())
    assert all(torch.equal(state[f"cue.{k}"], v.float()) for k, v in cue_state.items())
    data = stage.build_data()
    batch = collate_clips([data[0], data[1]])
    loss, corr = stage._source_activity_loss(batch)
    assert 0.0 < float(loss.detach()) < 2.0 and -1.0 < float(corr) < 1.0
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["activity.pulse.0.weight"].abs().sum() > 0
    assert grads["activity.patch_embed.weight"].abs().sum() > 0
    frozen = [k for k in grads if k.startswith(("video_encoder.", *SVAC.SALIENCY_WEIGHTS))]
    assert frozen and all(grads[k] is None for k in frozen)
    # A network with the token-reading pulse starts from a bundle without it: that layer
    # starts at zero; any other difference is refused.
    reading = SVACStageConfig(
        data=str(corpus),
        init_from="default",
        init_all=True,
        cue_from="default",
        model={**CARRIES_THE_CUE, "activity_tokens": True},
    )
    widened = SVACStage(reading, options).build_model()
    assert not widened.activity.token_pulse.weight.any()
    assert torch.equal(
        widened.state_dict()["activity.pulse.0.weight"], state["activity.pulse.0.weight"]
    )


def test_svac_fine_tuning_the_spatial_codes_saliency_on_the_sources(runs) -> None:
    """source_saliency_weight fits the spatial code's saliency to the sounding sources' map
    of each crop; with freeze_saliency only the code's zero-start refinement
    (saliency_refine) learns, so the saliency the generator reads stays the bundle's."""
    from pathlib import Path

    from swansphere.models.svac import SVAC
    from swansphere_training.data.dataset import collate_clips
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.svac import SVACStage, SVACStageConfig

    root, corpus = runs
    options = FitOptions(out_dir=Path(root / "svac-sal"), track=False)
    refine = {"saliency_refine": True}
    config = SVACStageConfig(
        data=str(corpus),
        **KEEPS_THE_GENERATOR,
        source_saliency_weight=1.0,
        model={**CARRIES_THE_CUE, **refine},
        lr=1e-2,
        warmup_steps=1,
    )
    stage = SVACStage(config, options)
    model = stage.model = stage.build_model()
    data = stage.build_data()
    batch = collate_clips([data[0], data[1]])
    video = batch["video"]
    with torch.no_grad():
        assert torch.equal(model.video_saliency(video, refined=True), model.video_saliency(video))
    loss = stage._source_saliency_loss(batch)
    assert 0.0 < float(loss.detach()) < 10.0
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["spatial.refine.3.weight"].abs().sum() > 0
    frozen = [k for k in grads if k.startswith(("video_encoder.", *SVAC.SALIENCY_WEIGHTS))]
    assert frozen and all(grads[k] is None for k in frozen)
    # One step of the whole objective moves the code's saliency towards the map.
    model.zero_grad(set_to_none=True)
    stage.wrapped, stage.optimizers = model, {"main": stage.build_optimizers()}
    stage.schedulers = stage.build_schedulers()
    metrics = stage.step(batch)
    assert metrics["source_saliency_kl"] == pytest.approx(float(loss.detach()), rel=1e-4)
    assert stage._source_saliency_loss(batch) < loss


def test_svac_content_shift_weight_adds_the_contents_own_shift_loss(runs) -> None:
    """content_shift_weight adds the content part's InfoNCE against the time-shift
    negatives to the objective; its top-1 is logged either way."""
    from pathlib import Path

    import numpy as np

    from swansphere_training.data.dataset import collate_clips
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.svac import SVACStage, SVACStageConfig

    root, corpus = runs
    totals, metrics = [], []
    for weight in (0.0, 2.0):
        options = FitOptions(out_dir=Path(root / f"svac-shift-{weight}"), track=False)
        config = SVACStageConfig(
            data=str(corpus),
            init_from="default",
            init_all=True,
            cue_from="default",
            model=CARRIES_THE_CUE,
            content_shift_weight=weight,
        )
        stage = SVACStage(config, options)
        model = stage.model = stage.build_model()
        batch = collate_clips([stage.build_data()[i] for i in (0, 1)])
        stage.wrapped, stage.optimizers = model, {"main": stage.build_optimizers()}
        stage.schedulers = stage.build_schedulers()
        np.random.seed(0)  # noqa: NPY002 (the stage draws its negatives from it)
        metrics.append(stage.step(batch))
        totals.append(metrics[-1]["total_loss"])
    assert "content_shift_loss" not in metrics[0]
    assert metrics[0]["content_shift_top1"] == metrics[1]["content_shift_top1"]
    assert 0.0 < metrics[1]["content_shift_loss"]
    assert totals[1] - totals[0] == pytest.approx(2.0 * metrics[1]["content_shift_loss"], rel=1e-4)


def test_svac_fine_tuning_with_a_carried_direction_cue(runs) -> None:
    """cue_from copies a bundle's direction cue into the SVAC (model cue_share > 0): the
    stage config records the cue's network, the cue's weights are the bundle's and stay so
    through a training step, and every other weight starts from init_from's."""
    from pathlib import Path

    from swansphere_training.data.dataset import collate_clips
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.svac import SVACStage, SVACStageConfig, network_config

    root, corpus = runs
    options = FitOptions(out_dir=Path(root / "svac-cue"), track=False)
    config = SVACStageConfig(data=str(corpus), **KEEPS_THE_GENERATOR, model=CARRIES_THE_CUE)
    bundle = load_bundle("default")
    cue_config, cue_state = bundle.component("direction")
    assert config.model["cue"] == cue_config
    assert network_config(dataclasses.asdict(config)).cue == cue_config
    stage = SVACStage(config, options)
    model = stage.model = stage.build_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    _, shipped = bundle.component("svac")
    assert set(state) == set(shipped) | {f"cue.{k}" for k in cue_state}
    own = {k: v for k, v in shipped.items() if not k.startswith("cue.")}
    assert all(torch.equal(state[k], v.float()) for k, v in own.items())
    assert all(torch.equal(state[f"cue.{k}"], v.float()) for k, v in cue_state.items())
    batch = collate_clips([stage.build_data()[i] for i in (0, 1)])
    with torch.no_grad():
        before = model.video_saliency(batch["video"])
    stage.wrapped, stage.optimizers = model, {"main": stage.build_optimizers()}
    stage.schedulers = stage.build_schedulers()
    stage.step(batch)
    after = model.state_dict()
    assert all(torch.equal(after[f"cue.{k}"], v.float()) for k, v in cue_state.items())
    assert not torch.equal(after["audio_head.net.0.weight"], state["audio_head.net.0.weight"])
    with torch.no_grad():
        assert torch.equal(model.video_saliency(batch["video"]), before)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"freeze_video_tokens": True}, "freeze_video_tokens needs init_from"),
        ({"init_from": "default", "freeze_saliency": True}, "freeze_saliency needs init_spatial"),
        ({"model": {"activity_wieght": 0.2}}, "activity_wieght"),
        ({"init_all": True}, "init_all need init_from"),
        (
            {
                "init_from": "default",
                "init_all": True,
                "cue_from": "default",
                "model": {**CARRIES_THE_CUE, "activity_dim": 16},
            },
            r"init_all 'default'.*activity.patch_embed.weight",
        ),
        ({"source_activity_weight": -1.0}, "source_activity_weight must be >= 0"),
        (
            {"source_activity_weight": 1.0, "model": {"activity_weight": 0.0}},
            "needs a network with an activity map",
        ),
        ({"source_saliency_weight": -1.0}, "source_saliency_weight must be >= 0"),
        ({"content_shift_weight": -0.5}, "content_shift_weight must be >= 0"),
        ({"negatives": {"n_shift": 1}}, r"unknown SVAC negatives setting\(s\) \['n_shift'\]"),
        (
            {"content_shift_weight": 1.0, "negatives": {"n_time_shift": 0}},
            "content_shift_weight needs time-shift negatives",
        ),
        (
            {"source_saliency_weight": 1.0, "model": {"spatial_weight": 0.0}},
            "needs a network with a spatial code",
        ),
        (
            {**KEEPS_THE_GENERATOR, "model": CARRIES_THE_CUE, "source_saliency_weight": 1.0},
            "nothing to train: add model saliency_refine",
        ),
        ({"model": CARRIES_THE_CUE}, "cue_share needs cue_from"),
        (
            {"init_from": "default", "init_all": True},
            r"init_all 'default': its SVAC carries a direction cue \(cue_share 0.5\)",
        ),
        ({"cue_from": "default"}, "cue_from needs model cue_share"),
        (
            {"cue_from": "default", "model": {"cue_share": 0.5, "cue": {"dim": 16}}},
            r"cue_from 'default': its cue network .* differs",
        ),
    ],
)
def test_the_svac_stage_refuses_settings_that_cannot_work(tmp_path, settings, message) -> None:
    from swansphere.errors import InputError
    from swansphere_training.stages.base import FitOptions
    from swansphere_training.stages.svac import SVACStage, SVACStageConfig

    options = FitOptions(out_dir=tmp_path / "svac", track=False)
    config = SVACStageConfig(data=str(tmp_path), **settings)
    with pytest.raises(InputError, match=message):
        SVACStage(config, options).build_model()
