"""training/scripts/train_encoders.sh end to end on a tiny corpus (two steps a stage:
plumbing, not quality): the data-parallel cue, then three runs in their lanes, under one
MLflow pipeline run, the bundle, the evaluations and the report; a given cue (CUE_FROM)
instead of the first; a failing lane stops the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from swansphere.cli import main
from swansphere.models.bundle import load_bundle
from swansphere_training import tracking
from swansphere_training.corpus.scene import PRESETS
from swansphere_training.corpus.synth import synthesize_corpus

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "training" / "scripts" / "train_encoders.sh"
TINY = replace(PRESETS["small"], seconds=2.0, max_distractors=1)
FAST = {"VAE_STEPS": "2", "CUE_STEPS": "2", "SVAC_STEPS": "2", "SVAC_BATCH": "2",
        "EVAL_CLIPS": "3"}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("encoders") / "corpus"
    for split, clips in (("train", 4), ("test", 3)):
        synthesize_corpus(root, clips=clips, seed=4, split=split, config=TINY, workers=1,
                          progress=False)  # fmt: skip
    assert main(["data", "caption", str(root)]) == 0  # the cue reads captions
    return root


def run_script(corpus: Path, out: Path, store: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        **FAST,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
        "SWANSPHERE": str(Path(sys.executable).with_name("swansphere")),
        "PYTHON": sys.executable,
        **env,
    }
    environment.pop("MLFLOW_RUN_ID", None)
    return subprocess.run(
        ["bash", str(SCRIPT), str(corpus), str(out)],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def pipeline_runs(store: Path) -> dict[str, list]:
    """The store's runs by name."""
    tracking.configure(f"sqlite:///{store}")
    try:
        client = tracking._mlflow().MlflowClient()
        found: dict[str, list] = {}
        for run in client.search_runs([tracking.experiment_id()]):
            found.setdefault(run.info.run_name, []).append(run)
        return found
    finally:
        tracking.configure(None)


def test_the_encoders_pipeline_trains_bundles_evaluates_and_reports(
    corpus: Path, tmp_path: Path
) -> None:
    out, store = tmp_path / "out", tmp_path / "mlruns.db"
    done = run_script(corpus, out, store)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == json.loads((out / "report.json").read_text())
    stages = {"vae", "cue", "cue_bundle", "svac", "svac_ablation", "training", "trained_bundle"}
    stages |= {"weigh_svac", "svac_bundle", "weigh_ablation", "ablation_bundle"}
    assert stages <= set(report["seconds"])
    assert report["seconds"]["training"] >= report["seconds"]["vae"] > 0
    measured = report["eval"][str(corpus)]
    assert {"angular_error_deg", "mrstft_per_channel", "streaming_max_abs_diff"} <= set(
        measured["vae"]
    )
    for svac in ("svac", "svac_ablation"):
        assert {"r_at_1", "rotation_top1", "shift_top1"} <= set(measured[svac])
        assert measured[svac]["clips"] == 3
    assert measured["svac_ablation"]["model"] == str(out / "ablation")

    # Each SVAC's part weights were chosen on DATA's test split and bundled: the bundle is
    # the one as trained, weighed so, and the report scores it as trained beside.
    for name, bundled in (("svac", "bundle"), ("ablation", "ablation")):
        weighing = report[f"weighing_{name}"]
        assert weighing["trained"] == {
            "content_weight": 0.3, "spatial_weight": 0.4, "activity_weight": 0.3
        }  # fmt: skip
        chosen = weighing["chosen"]
        config = load_bundle(out / bundled).config("svac")
        assert (config["spatial_weight"], config["activity_weight"]) == (
            chosen["spatial_weight"], chosen["activity_weight"]
        )  # fmt: skip
        manifest = json.loads((out / bundled / "manifest.json").read_text())
        assert manifest["metrics"]["weighing"]["chosen"] == chosen
        own = measured["svac" if name == "svac" else "svac_ablation"]
        assert own["weights"] == {k: chosen[k] for k in weighing["trained"]}
        # On DATA's test split, the set it was chosen on, the bundle scores what it chose.
        assert {k: own[k] for k in ("r_at_1", "rotation_top1", "shift_top1")} == {
            k: chosen[k] for k in ("r_at_1", "rotation_top1", "shift_top1")
        }
        assert set(own["as_trained"]) >= {"r_at_1", "rotation_top1", "shift_top1"}
    trained = json.loads((out / "trained" / "manifest.json").read_text())
    assert "weighing" not in trained["metrics"]

    # The bundle: the VAE, the SVAC carrying the cue, and the cue itself.
    bundle = load_bundle(out / "bundle")
    assert set(bundle.components) == {"vae", "svac", "direction"}
    assert bundle.config("svac")["cue_share"] == 0.5
    commands = json.loads((out / "ablation" / "manifest.json").read_text())["training_command"]
    assert 'negatives={"time_shift":false,"rotation":false,"roll":false}' in commands["svac"]

    # One pipeline run over the four stage runs.
    runs = pipeline_runs(store)
    (parent,) = runs["encoders"]
    assert parent.info.status == "FINISHED" and parent.data.params["vae_steps"] == "2"
    children = [r for name in ("vae", "direction", "svac") for r in runs[name]]
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    # The cue trained data-parallel on two processes, the batch of 8 split between them.
    (cue,) = runs["direction"]
    assert cue.data.params["fit.world_size"] == "2" and cue.data.params["batch_size"] == "4"
    assert {r.data.params["fit.world_size"] for r in children if r is not cue} == {"1"}


def test_cue_from_carries_a_given_cue_instead_of_training_one(corpus: Path, tmp_path: Path) -> None:
    out, store = tmp_path / "out", tmp_path / "mlruns.db"
    done = run_script(corpus, out, store, CUE_FROM="default", CHOOSE_WEIGHING="0")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "cue" not in report["seconds"] and "cue_bundle" in report["seconds"]
    assert not (out / "runs" / "cue").exists()
    shipped = load_bundle("default").component("direction")[1]
    for name in ("bundle", "ablation"):
        bundle = load_bundle(out / name)
        assert set(bundle.components) >= {"svac", "direction"}
        cue, svac = bundle.component("direction")[1], bundle.component("svac")[1]
        for key, weight in shipped.items():  # the bundle's cue, and the SVAC's copy of it
            assert torch.equal(cue[key], weight) and torch.equal(svac[f"cue.{key}"], weight)
    assert set(load_bundle(out / "bundle").components) == {"vae", "svac", "direction"}
    runs = pipeline_runs(store)
    (parent,) = runs["encoders"]
    assert parent.data.params["cue_from"] == "default" and "cue_steps" not in parent.data.params
    assert "direction" not in runs and len(runs["svac"]) == 2


def test_a_failing_lane_stops_the_other_and_fails_the_pipeline_run(
    corpus: Path, tmp_path: Path
) -> None:
    out, store = tmp_path / "out", tmp_path / "mlruns.db"
    done = run_script(corpus, out, store, VAE_STEPS="many")
    assert done.returncode != 0
    assert "vae: exit status" in done.stderr and "many" in done.stderr
    assert not (out / "times" / "svac").exists() and not (out / "bundle").exists()
    (parent,) = pipeline_runs(store)["encoders"]
    assert parent.info.status == "FAILED"


def test_a_corpus_without_its_splits_and_a_used_out_folder_are_refused(
    corpus: Path, tmp_path: Path
) -> None:
    done = run_script(tmp_path, tmp_path / "out", tmp_path / "mlruns.db")
    assert done.returncode == 2 and "no train/ and test/ splits" in done.stderr
    (tmp_path / "out" / "runs").mkdir(parents=True)
    done = run_script(corpus, tmp_path / "out", tmp_path / "mlruns.db")
    assert done.returncode == 2 and "already holds runs" in done.stderr
    done = run_script(corpus, tmp_path / "fresh", tmp_path / "mlruns.db", CUE_BATCH="5")
    assert done.returncode == 2 and "CUE_BATCH (5) must split evenly" in done.stderr
    assert not (tmp_path / "mlruns.db").exists()  # refused before any run was begun
