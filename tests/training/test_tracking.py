"""Tests of swansphere_training/tracking.py against a temporary SQLite store (one per
module: creating an MLflow database takes seconds): URI resolution, parent and nested
runs with params, metrics and artifacts, run status, a stage's logging and resumption,
and the model registry round trip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from swansphere.errors import InputError
from swansphere.models.bundle import (
    BundleError,
    load_bundle,
    register_component_kind,
    write_bundle,
)
from swansphere_training import tracking

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mlflow")
    tracking.configure(f"sqlite:///{root / 'mlruns.db'}")
    yield root
    tracking.configure(None)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Registry downloads go to a cache of the test's own."""
    monkeypatch.setenv("SWANSPHERE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def client(store: Path):
    return tracking._mlflow().MlflowClient()


def test_uri_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracking, "_explicit_uri", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SWANSPHERE_MLFLOW_ARTIFACTS", raising=False)
    assert tracking.repo_root() == REPO
    assert tracking.tracking_uri() == f"sqlite:///{REPO}/mlflow/mlruns.db"
    assert tracking.artifact_root() == REPO / "mlflow" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    assert tracking.artifact_root() is None  # the server decides
    monkeypatch.setenv("SWANSPHERE_MLFLOW_ARTIFACTS", "/data/art")
    assert tracking.artifact_root() == Path("/data/art")


def test_flatten_params() -> None:
    flat = tracking.flatten_params({"a": 1, "b": {"c": (1, 2), "d": {"e": None}}, "f": "x" * 7000})
    assert flat["a"] == "1" and flat["b.c"] == "(1, 2)" and flat["b.d.e"] == "None"
    assert len(flat["f"]) == tracking.MAX_PARAM_LENGTH and flat["f"].endswith("...")


def test_pipeline_with_nested_stage_runs_params_metrics_and_artifacts(store: Path, client) -> None:
    foa = (0.1 * np.random.default_rng(0).standard_normal((4, 2205))).astype(np.float32)
    with tracking.pipeline_run("tiny-pipeline", params={"corpus": "small"}) as parent:
        with tracking.stage_run("vae", params={"lr": 1e-3, "model": {"latent": 32}}) as vae:
            tracking.log_metrics({"loss": 1.0}, step=1)
            tracking.log_metric_history([(2, {"loss": 0.5, "kl": 0.1}), (3, {"loss": 0.25})])
            fig, ax = plt.subplots()
            ax.plot([0, 1], [1, 0])
            tracking.log_figure(fig, "plots/curve.png")
            plt.close(fig)
            tracking.log_audio_example(foa, 22050, "audio/example.wav")
            tracking.log_dict({"angular_error_deg": 2.5}, "eval/summary.json")
        with tracking.stage_run("svac") as svac:
            tracking.log_metrics({"r_at_1": 0.75}, step=10)

    for run_id in (vae, svac):
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.info.status == "FINISHED"
    assert client.get_run(parent).data.params == {"corpus": "small"}
    vae_run = client.get_run(vae)
    assert vae_run.data.params == {"lr": "0.001", "model.latent": "32"}
    assert vae_run.data.tags["swansphere.stage"] == "vae"
    history = sorted((m.step, m.value) for m in client.get_metric_history(vae, "loss"))
    assert history == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert client.get_run(svac).data.metrics == {"r_at_1": 0.75}

    # Artifacts land under the store's artifacts/ folder and read back intact.
    artifacts = {a.path for d in ("plots", "audio", "eval") for a in client.list_artifacts(vae, d)}
    assert artifacts == {"plots/curve.png", "audio/example.wav", "eval/summary.json"}
    assert vae_run.info.artifact_uri.startswith((store / "artifacts").as_uri())
    local = tracking._mlflow().artifacts.download_artifacts(
        run_id=vae, artifact_path="audio/example.wav", dst_path=str(store / "dl")
    )
    audio, rate = sf.read(local, dtype="float32", always_2d=True)
    assert rate == 22050 and np.array_equal(audio.T, foa)


def test_stage_run_alone_gets_a_parent_and_failures_are_recorded(client) -> None:
    with tracking.stage_run("lonely") as run_id:
        pass
    parent = client.get_run(client.get_run(run_id).data.tags["mlflow.parentRunId"])
    assert parent.info.run_name == "lonely" and parent.data.tags["swansphere.kind"] == "pipeline"

    with pytest.raises(ValueError), tracking.stage_run("broken") as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), tracking.stage_run("stopped") as killed:
        raise KeyboardInterrupt
    with tracking.stage_run("elsewhere", run_id="0" * 32) as fresh:  # id from another store
        pass
    assert fresh != "0" * 32 and client.get_run(fresh).info.run_name == "elsewhere"
    assert client.get_run(failed).info.status == "FAILED"
    assert client.get_run(killed).info.status == "KILLED"
    assert tracking.active_run_id() is None


def test_stages_of_other_processes_nest_under_a_begun_pipeline_run(
    client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What train_encoders.sh does: begin a pipeline run, start each stage with its id in
    MLFLOW_RUN_ID, end it. The stages nest under it and leave its name alone."""
    tracking.main(["begin", "encoders", "--param", "data=corpus"])
    parent = capsys.readouterr().out.strip()
    monkeypatch.setenv("MLFLOW_RUN_ID", parent)
    for stage in ("vae", "svac"):
        with tracking.stage_run(stage) as run_id:
            assert "MLFLOW_RUN_ID" not in os.environ  # else MLflow reopens it as the stage
        assert os.environ["MLFLOW_RUN_ID"] == parent  # back for the next stage
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
        assert client.get_run(run_id).info.run_name == stage
    tracking.main(["end", parent, "--status", "FAILED"])
    run = client.get_run(parent)
    assert run.info.run_name == "encoders" and run.data.params == {"data": "corpus"}
    assert run.data.tags["swansphere.kind"] == "pipeline" and run.info.status == "FAILED"
    with pytest.raises(InputError, match="not in"):
        tracking.end_pipeline_run("0" * 32)
    with pytest.raises(SystemExit):
        tracking.main(["begin", "x", "--param", "novalue"])


def test_a_stage_logs_per_step_and_resumes_into_its_run(tmp_path: Path, client) -> None:
    from test_stage_base import make_stage  # the toy stage, beside this file

    first = make_stage(tmp_path, track=True, log_every=4).fit(6)
    again = make_stage(tmp_path, track=True, log_every=4).fit(9, resume=True)
    assert again.run_id == first.run_id
    run = client.get_run(first.run_id)
    assert run.data.params["seed"] == "3" and run.data.params["fit.max_steps"] == "6"
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(first.run_id, "loss"))
    assert steps == list(range(1, 10))  # every step, across the interruption
    evals = sorted(m.step for m in client.get_metric_history(first.run_id, "eval/mse"))
    assert evals == [6, 9]


class Tiny(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)


register_component_kind("tiny-test", lambda cfg: Tiny(cfg["width"]))


def test_registry_round_trip(tmp_path: Path, client) -> None:
    net = Tiny(3)
    bundle = write_bundle(
        tmp_path / "bundle", {"net": ({"width": 3}, net.state_dict(), "tiny-test")}
    )
    assert tracking.register_model(bundle, "swansphere-test", "default") == 1
    with torch.no_grad():
        net.lin.weight.zero_()
    bundle2 = write_bundle(
        tmp_path / "bundle2", {"net": ({"width": 3}, net.state_dict(), "tiny-test")}
    )
    assert tracking.register_model(bundle2, "swansphere-test", "default") == 2

    local = tracking.resolve_model_uri("models:/swansphere-test@default", tmp_path / "dl")
    assert load_bundle(local).digest == load_bundle(bundle2).digest
    old = tracking.resolve_model_uri("models:/swansphere-test/1", tmp_path / "dl1")
    assert load_bundle(old).digest == load_bundle(bundle).digest
    # The runtime loader resolves the same spec through the registry.
    rebuilt = load_bundle("models:/swansphere-test@default").build("net")
    assert torch.equal(rebuilt.lin.weight, torch.zeros(3, 3))
    version = client.get_model_version_by_alias("swansphere-test", "default")
    assert version.tags["bundle_digest"] == load_bundle(bundle2).digest

    with pytest.raises(InputError, match="cannot resolve models:/swansphere-test@nope"):
        tracking.resolve_model_uri("models:/swansphere-test@nope")
    with pytest.raises(InputError, match="must look like"):
        tracking.resolve_model_uri("runs:/abc/bundle")


def test_registry_downloads_are_cached_per_version(tmp_path: Path, client, cache: Path) -> None:
    def bundle_of(width: int, where: str) -> Path:
        return write_bundle(tmp_path / where, {"net": ({"width": width}, Tiny(width).state_dict(),
                                                        "tiny-test")})  # fmt: skip

    first = bundle_of(2, "a")
    number = tracking.register_model(first, "swansphere-cache", "live")
    local = tracking.resolve_model_uri("models:/swansphere-cache@live")
    assert local.is_relative_to(cache / "registry") and local.name == str(number)
    assert load_bundle(local).digest == load_bundle(first).digest
    # Loaded again: the same directory, nothing left over from the download.
    assert tracking.resolve_model_uri(f"models:/swansphere-cache/{number}") == local
    assert sorted(p.name for p in local.parent.iterdir()) == [str(number)]

    # A damaged cached copy is fetched again; moving the alias takes effect at once.
    (local / "manifest.json").write_text("{}")
    assert load_bundle("models:/swansphere-cache@live").digest == load_bundle(first).digest
    second = bundle_of(3, "b")
    tracking.register_model(second, "swansphere-cache", "live")
    assert load_bundle("models:/swansphere-cache@live").digest == load_bundle(second).digest
    with pytest.raises(InputError, match="cannot resolve models:/swansphere-cache/9"):
        tracking.resolve_model_uri("models:/swansphere-cache/9")


def test_a_broken_bundle_is_never_registered(tmp_path: Path, client) -> None:
    bundle = write_bundle(
        tmp_path / "b", {"net": ({"width": 2}, Tiny(2).state_dict(), "tiny-test")}
    )
    (bundle / "net.config.json").write_text('{"width": 3}\n')
    with pytest.raises(BundleError, match=r"net\.config\.json"):
        tracking.register_model(bundle, "swansphere-broken", "default")
    assert not client.search_registered_models("name='swansphere-broken'")


def _experiment_in_a_fresh_process(uri: str) -> str:
    from swansphere_training import tracking as fresh

    fresh.configure(uri)
    return fresh.experiment_id("together")


def test_two_processes_creating_one_store_at_once_both_get_the_experiment(
    tmp_path: Path,
) -> None:
    """Two runs started together on a fresh SQLite store: MLflow alone let one fail with
    "table experiments already exists"; the store lock serialises the creation."""
    import multiprocessing

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        ids = pool.map(_experiment_in_a_fresh_process, [uri, uri])
    assert len(set(ids)) == 1
