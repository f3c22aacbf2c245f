"""Experiment tracking and the model registry: the only module that talks to MLflow.

Where runs go. ``MLFLOW_TRACKING_URI`` when set (e.g. ``http://127.0.0.1:5000`` from
``mlflow/serve.sh``), else the SQLite store of the repository,
``sqlite:///<repo>/mlflow/mlruns.db`` (MLflow 3 deprecates the plain file store), with
artifacts under ``<repo>/mlflow/artifacts``. For any SQLite store the artifacts go to an
``artifacts`` folder beside the database file (override: ``SWANSPHERE_MLFLOW_ARTIFACTS``);
with a tracking server the server decides. Runs land in the experiment
``MLFLOW_EXPERIMENT_NAME`` (default ``swansphere``). Everything works offline: MLflow's
telemetry and artifact progress bars are switched off before it is imported.

Run structure. :func:`pipeline_run` opens one parent run per pipeline;
:func:`stage_run` opens one nested run per training stage inside it (a stage started
on its own gets a parent of its own, so every stage run has one). Both yield the run id
and can reopen an existing run by id, which is how ``--resume`` keeps logging into the
run it interrupted (an id the store does not know starts a new run, with a warning).

MLflow is imported lazily (it takes about a second), so importing this module is cheap.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from swansphere.errors import InputError

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "swansphere"
#: MLflow's variable naming the run a process should log into; ``mlflow run`` sets it.
#: Here it names the pipeline run a stage process nests under.
PIPELINE_RUN_ENV = "MLFLOW_RUN_ID"
#: The statuses a pipeline run can end with.
END_STATUSES = ("FINISHED", "FAILED", "KILLED")
#: MLflow's limit on a parameter value's length (characters).
MAX_PARAM_LENGTH = 6000
_MODEL_URI_RE = re.compile(r"^models:/([^/@]+)(?:@([^/@]+)|/(\d+))$")
_explicit_uri: str | None = None
_applied_uri: str | None = None


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def repo_root() -> Path:
    """The repository holding this package: the nearest ancestor with pyproject.toml and an
    ``mlflow/`` folder (an editable install), else the current directory."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "mlflow").is_dir():
            return parent
    return Path.cwd()


def default_tracking_uri() -> str:
    """``sqlite:///<repo>/mlflow/mlruns.db`` (an absolute path: four slashes on POSIX)."""
    return f"sqlite:///{repo_root() / 'mlflow' / 'mlruns.db'}"


def tracking_uri() -> str:
    """The URI in use: :func:`configure`'s, else MLFLOW_TRACKING_URI, else the default."""
    return _explicit_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :]).expanduser().resolve()


def artifact_root(uri: str | None = None) -> Path | None:
    """Where new experiments store artifacts for ``uri``: SWANSPHERE_MLFLOW_ARTIFACTS, else
    ``artifacts/`` beside a SQLite database; None for a server (it decides)."""
    if os.environ.get("SWANSPHERE_MLFLOW_ARTIFACTS"):
        return Path(os.environ["SWANSPHERE_MLFLOW_ARTIFACTS"]).expanduser().resolve()
    db = _sqlite_path(uri or tracking_uri())
    return None if db is None else db.parent / "artifacts"


def _quiet_environment() -> None:
    """Offline and quiet: no telemetry, no progress bars, no git probing noise."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.model_registry"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow's own SQLAlchemy mappers use a deprecated loader; nothing for us to act on.
    warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store's ``<db>.lock`` file (nothing for other
    stores). MLflow creates a new database's tables, and an experiment, without guarding
    against another process doing the same at once: two runs started together on a fresh
    store failed with "table experiments already exists"."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mlflow() -> ModuleType:
    """The ``mlflow`` module, pointed at :func:`tracking_uri`; a SQLite store is created
    (its tables) under :func:`_store_lock` the first time."""
    global _applied_uri
    _quiet_environment()
    import mlflow

    uri = tracking_uri()
    if uri != _applied_uri:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if _sqlite_path(uri) is not None:
            with _store_lock(uri):
                mlflow.MlflowClient(uri).search_experiments(max_results=1)
        _applied_uri = uri
    return mlflow


def configure(uri: str | None = None) -> str:
    """Use tracking URI ``uri`` in this process (None: back to MLFLOW_TRACKING_URI or the
    default); return the URI now in use."""
    global _explicit_uri
    _explicit_uri = uri
    _mlflow()
    return tracking_uri()


def experiment_id(name: str | None = None) -> str:
    """Id of experiment ``name`` (default MLFLOW_EXPERIMENT_NAME or ``swansphere``),
    created with :func:`artifact_root` as its artifact location when missing."""
    mlflow = _mlflow()
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    with _store_lock(tracking_uri()):  # another process may be creating it right now
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        root = artifact_root()
        location = None
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            location = (root / name).as_uri()
        return mlflow.create_experiment(name, artifact_location=location)


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


def active_run_id() -> str | None:
    """Id of the innermost active run, or None (does not import MLflow if unused)."""
    if "mlflow" not in sys.modules:
        return None
    run = _mlflow().active_run()
    return None if run is None else run.info.run_id


def _find_run(run_id: str) -> Any:
    """The run with this id in the current store, or None."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return None


@contextmanager
def _run(
    name: str,
    *,
    run_id: str | None,
    nested: bool,
    params: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
) -> Iterator[str]:
    """Start a run, or reopen ``run_id`` when the store has it; log ``params`` only into a
    new run (a reopened one keeps its own). End it FINISHED, KILLED (interrupted) or
    FAILED."""
    mlflow = _mlflow()
    if run_id is not None and _find_run(run_id) is None:
        log.warning("MLflow run %s is not in %s; starting a new run", run_id, tracking_uri())
        run_id = None
    if run_id is None:
        run = mlflow.start_run(
            run_name=name, experiment_id=experiment_id(), nested=nested, tags=dict(tags or {})
        )
    else:
        run = mlflow.start_run(run_id=run_id, nested=nested)
    try:
        if run_id is None and params:
            log_params(params)
        elif run_id is not None and tags:
            mlflow.set_tags(dict(tags))
        yield run.info.run_id
    except (KeyboardInterrupt, SystemExit):
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def begin_pipeline_run(name: str, params: Mapping[str, Any] | None = None) -> str:
    """Create a parent run that outlives this process, for a pipeline whose stages are
    processes of their own (``training/scripts/train_encoders.sh``); return its id.

    A stage started with ``MLFLOW_RUN_ID=<id>`` in its environment nests under it.
    :func:`end_pipeline_run` ends it.
    """
    client = _mlflow().MlflowClient()
    tags = {"swansphere.kind": "pipeline", "mlflow.runName": name}
    run_id = client.create_run(experiment_id(), run_name=name, tags=tags).info.run_id
    for key, value in flatten_params(params or {}).items():
        client.log_param(run_id, key, value)
    return run_id


def end_pipeline_run(run_id: str, status: str = "FINISHED") -> None:
    """End run ``run_id`` with ``status`` (FINISHED, FAILED or KILLED)."""
    if status not in END_STATUSES:
        raise InputError(f"run status {status!r}: use {', '.join(END_STATUSES)}")
    client = _mlflow().MlflowClient()
    if _find_run(run_id) is None:
        raise InputError(f"MLflow run {run_id} is not in {tracking_uri()}")
    client.set_terminated(run_id, status)


@contextmanager
def pipeline_run(
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> Iterator[str]:
    """One parent run for a whole pipeline (e.g. ``vae`` then ``svac``); yields its id.

    ``run_id`` reopens an existing run instead of starting a new one.
    """
    tags = {"swansphere.kind": "pipeline", **(tags or {})}
    nested = active_run_id() is not None
    with _run(name, run_id=run_id, nested=nested, params=params, tags=tags) as rid:
        yield rid


@contextmanager
def stage_run(
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> Iterator[str]:
    """A nested run for one training stage; yields its id.

    Inside :func:`pipeline_run` it nests under that run. Outside one, it opens a parent
    run for a one-stage pipeline named after the stage -- or, when reopening ``run_id``,
    reopens the parent that run was created under.
    """
    tags = {"swansphere.kind": "stage", "swansphere.stage": name, **(tags or {})}
    if active_run_id() is not None:
        with _run(name, run_id=run_id, nested=True, params=params, tags=tags) as rid:
            yield rid
        return
    # A pipeline run of another process (`mlflow run`, or begin_pipeline_run) named in
    # MLflow's variable. Out of the environment while the stage runs: MLflow's start_run
    # would reopen it for the nested run too (and rename it after the stage).
    inherited = os.environ.pop(PIPELINE_RUN_ENV, None)
    try:
        existing = _find_run(run_id) if run_id is not None else None
        parent_id = (
            existing.data.tags.get("mlflow.parentRunId") if existing is not None else inherited
        )
        with pipeline_run(name, run_id=parent_id):
            with _run(name, run_id=run_id, nested=True, params=params, tags=tags) as rid:
                yield rid
    finally:
        if inherited is not None:
            os.environ[PIPELINE_RUN_ENV] = inherited


# --------------------------------------------------------------------------------------
# Logging into the active run
# --------------------------------------------------------------------------------------


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts become dotted keys; values become strings of at most MAX_PARAM_LENGTH."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        text = str(value)
        if len(text) > MAX_PARAM_LENGTH:
            text = text[: MAX_PARAM_LENGTH - 3] + "..."
        flat[name] = text
    return flat


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    """Log (nested) parameters to the active run. Re-logging an equal value is allowed;
    changing a logged value is an MLflow error."""
    _mlflow().log_params(flatten_params(params, prefix))


def log_metrics(metrics: Mapping[str, float], step: int) -> None:
    """Log scalar metrics at ``step`` to the active run."""
    _mlflow().log_metrics({k: float(v) for k, v in metrics.items()}, step=int(step))


def log_metric_history(rows: Sequence[tuple[int, Mapping[str, float]]]) -> None:
    """Log many ``(step, metrics)`` rows in few database transactions (log_batch)."""
    mlflow = _mlflow()
    from mlflow.entities import Metric

    run_id = active_run_id()
    if run_id is None:
        raise InputError("log_metric_history needs an active MLflow run")
    now = int(time.time() * 1000)
    metrics = [
        Metric(key=k, value=float(v), timestamp=now, step=int(step))
        for step, values in rows
        for k, v in values.items()
    ]
    mlflow.MlflowClient().log_batch(run_id, metrics=metrics)  # it splits large batches


def log_figure(figure: Any, artifact_file: str) -> None:
    """Log a matplotlib figure as an image artifact (e.g. ``plots/spectrogram.png``).
    The figure is not closed."""
    _mlflow().log_figure(figure, artifact_file)


def log_dict(data: Mapping[str, Any], artifact_file: str) -> None:
    """Log a JSON-able dict as ``artifact_file`` (``.json`` or ``.yaml``)."""
    _mlflow().log_dict(dict(data), artifact_file)


def log_artifacts(local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
    """Log every file under ``local_dir`` into ``artifact_path`` of the active run."""
    _mlflow().log_artifacts(str(local_dir), artifact_path=artifact_path)


def log_audio_example(audio: Any, sample_rate: int, artifact_file: str) -> None:
    """Log audio as a WAV artifact (e.g. ``audio/step_1000_recon.wav``).

    ``audio``: (channels, samples) or (samples,) array or tensor; AmbiX FOA is
    (4, samples) in ACN/SN3D. Written as 32-bit float WAVE_FORMAT_EXTENSIBLE.
    """
    from swansphere.foa.io import write_audio

    array = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
    if array.ndim == 1:
        array = array[None, :]
    artifact = Path(artifact_file)
    if artifact.suffix.lower() != ".wav":
        raise InputError(f"audio artifact name must end with .wav, got {artifact_file!r}")
    with tempfile.TemporaryDirectory(prefix="swansphere-audio-") as tmp:
        local = write_audio(Path(tmp) / artifact.name, array, int(sample_rate))
        parent = artifact.parent.as_posix()
        _mlflow().log_artifact(str(local), artifact_path=None if parent == "." else parent)


# --------------------------------------------------------------------------------------
# Model registry
# --------------------------------------------------------------------------------------


@contextmanager
def _registration_run(name: str) -> Iterator[str]:
    """The active run, or a short top-level run created just to hold the bundle."""
    run_id = active_run_id()
    if run_id is not None:
        yield run_id
        return
    with _run(
        f"register-{name}",
        run_id=None,
        nested=False,
        params=None,
        tags={"swansphere.kind": "registration"},
    ) as rid:
        yield rid


def register_model(bundle_dir: str | os.PathLike, name: str, alias: str = "default") -> int:
    """Register a bundle directory as a new version of registered model ``name`` and point
    ``alias`` at it; return the version number.

    The bundle is verified first (a broken bundle is never registered), logged as the
    artifacts ``bundles/<name>`` of the active run (or of a new run ``register-<name>``),
    and the model version's source is that artifact directory (``runs:/<id>/bundles/<name>``).
    ``models:/NAME@ALIAS`` then resolves to it (:func:`resolve_model_uri`).
    """
    from swansphere.models.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    artifact_path = f"bundles/{name}"
    with _registration_run(name) as run_id:
        mlflow.log_artifacts(str(bundle.path), artifact_path=artifact_path)
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="SwanSphere model bundle")
        version = client.create_model_version(
            name,
            source=f"runs:/{run_id}/{artifact_path}",
            run_id=run_id,
            tags={"bundle_digest": bundle.digest},
        )
        client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s as models:/%s@%s", name, version.version, name, alias)
    return int(version.version)


def resolve_model_uri(uri: str, dst_path: str | os.PathLike | None = None) -> Path:
    """The local directory of the bundle registered as ``models:/NAME@ALIAS`` (or
    ``models:/NAME/VERSION``).

    With ``dst_path`` the bundle is downloaded there. Without, it is kept in the cache
    (:func:`swansphere.cache.cache_root`), under ``registry/STORE/NAME/VERSION``: a registry
    version never changes what it points to, so each one is downloaded once (an alias is
    looked up every time, so moving it takes effect). A cached copy whose manifest no
    longer matches the version's ``bundle_digest`` tag is fetched again; a download lands
    in a temporary sibling first and is renamed into place whole."""
    match = _MODEL_URI_RE.match(uri)
    if not match:
        raise InputError(f"model URI {uri!r} must look like models:/NAME@ALIAS or models:/NAME/N")
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException

    where = tracking_uri()
    if dst_path is not None:
        dst = Path(dst_path)
        dst.mkdir(parents=True, exist_ok=True)
        return _download_bundle(mlflow, uri, dst, where)
    name, alias, number = match.groups()
    client = mlflow.MlflowClient(where)
    try:
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, number)
    except MlflowException as exc:
        raise InputError(f"cannot resolve {uri} in the registry at {where}: {exc}") from exc
    from swansphere.cache import cache_root
    from swansphere.models.bundle import MANIFEST_FILE, sha256_file

    store = hashlib.sha256(where.encode()).hexdigest()[:12]
    cached = cache_root() / "registry" / store / name / str(version.version)
    expected = (version.tags or {}).get("bundle_digest")

    def usable(path: Path) -> bool:
        manifest = path / MANIFEST_FILE
        return manifest.is_file() and (expected is None or sha256_file(manifest) == expected)

    if usable(cached):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version.version}-", dir=cached.parent))
    try:
        local = _download_bundle(mlflow, f"models:/{name}/{version.version}", staging, where)
        if usable(cached):  # another process got there first
            return cached
        if cached.exists():  # a stale or damaged copy
            shutil.rmtree(cached)
        os.replace(local, cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cached


def _download_bundle(mlflow: ModuleType, uri: str, dst: Path, where: str) -> Path:
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except MlflowException as exc:
        raise InputError(f"cannot resolve {uri} in the registry at {where}: {exc}") from exc
    return Path(local)


def main(argv: Sequence[str] | None = None) -> None:
    """Pipeline runs for shell pipelines (``training/scripts/train_encoders.sh``):

    ``python -m swansphere_training.tracking begin NAME [--param KEY=VALUE ...]`` prints
    the id of a new pipeline run; ``... end RUN_ID [--status STATUS]`` ends it.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m swansphere_training.tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("begin", help="create a pipeline run; print its id")
    begin.add_argument("name")
    begin.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    end = commands.add_parser("end", help="end a pipeline run")
    end.add_argument("run_id")
    end.add_argument("--status", default="FINISHED", choices=END_STATUSES)
    args = parser.parse_args(argv)
    if args.command == "begin":
        params = {}
        for item in args.param:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"--param {item!r}: expected KEY=VALUE")
            params[key] = value
        print(begin_pipeline_run(args.name, params))
    else:
        end_pipeline_run(args.run_id, args.status)


if __name__ == "__main__":
    main()
