"""Running stages from the command line: config from a preset plus overrides, one MLflow
parent run per pipeline, and the model bundle the runtime loads."""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

from swansphere.errors import InputError
from swansphere.models.bundle import write_bundle
from swansphere.models.generator import SAMPLER_FIELDS

from . import tracking
from .checkpoint import latest_checkpoint, load_checkpoint
from .stages.base import FitOptions, FitResult
from .stages.direction import DirectionStage, DirectionStageConfig
from .stages.direction import network_config as direction_network_config
from .stages.generator import GeneratorStage, GeneratorStageConfig
from .stages.svac import SVACStage, SVACStageConfig
from .stages.svac import network_config as svac_network_config
from .stages.vae import VAEStage, VAEStageConfig

log = logging.getLogger(__name__)

STAGES: dict[str, tuple[type, type]] = {
    "vae": (VAEStage, VAEStageConfig),
    "svac": (SVACStage, SVACStageConfig),
    "generator": (GeneratorStage, GeneratorStageConfig),
    "direction": (DirectionStage, DirectionStageConfig),
}


def stage_config(stage: str, data: str, preset: str, seed: int, overrides: dict[str, Any]):
    """The stage's config dataclass; unknown override names raise InputError naming them."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    config_cls = STAGES[stage][1]
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise InputError(
            f"unknown {stage} setting(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    return config_cls(data=str(data), preset=preset, seed=seed, **overrides)


def train_stage(
    stage: str, config: Any, out: Path, steps: int, resume: bool, options: dict[str, Any]
) -> FitResult:
    """Train one stage into ``out`` (checkpoints under out/checkpoints)."""
    stage_cls = STAGES[stage][0]
    fit_options = FitOptions(out_dir=Path(out), **options)
    return stage_cls(config, fit_options).fit(steps, resume=resume)


def reproduce_command(stage: str, config: dict[str, Any], steps: int) -> str:
    """The ``swansphere train`` command line that reproduces a checkpoint: its stage config
    (as stored in the checkpoint) spelled as flags, with ``--set`` for every setting that
    differs from the stage's default."""
    defaults = stage_config(stage, config["data"], config["preset"], config["seed"], {})
    args = [
        "swansphere", "train", stage, "--data", str(config["data"]), "--preset",
        str(config["preset"]), "--seed", str(config["seed"]), "--steps", str(steps),
    ]  # fmt: skip
    for name, value in sorted(config.items()):
        if name in ("data", "preset", "seed"):
            continue
        if getattr(defaults, name, None) != value:
            args += ["--set", f"{name}={json.dumps(value, separators=(',', ':'))}"]
    return " ".join(shlex.quote(a) for a in args)


def corpus_seed(root: str | Path) -> int | None:
    """The synthesis seed recorded in the first training clip of a procedural corpus."""
    for meta in sorted(Path(root, "train").glob("*/clip.json"))[:1]:
        seed = read_json(meta).get("seed")
        if isinstance(seed, dict) and isinstance(seed.get("base"), int):
            return seed["base"]
    return None


# Components whose encoders make the generator's training features.
FEATURE_COMPONENTS = {"vae", "svac"}
# The other components a component's evaluations also measure: the generator's figures
# depend on the video direction cue its lock may aim at. (A VAE or SVAC that changes its
# features leaves the base's generator out altogether; one that does not, e.g. an SVAC
# retrained over frozen video tokens and saliency, leaves its figures as they were.)
EVALUATED_WITH: dict[str, frozenset[str]] = {"generator": frozenset({"direction"})}


def export_bundle(
    out: Path,
    runs: dict[str, Path],
    data_meta: dict[str, Any],
    metrics: dict,
    base: str | None = None,
    generator_dtype: str = "float16",
    tune: dict[str, dict[str, Any]] | None = None,
    keep: Collection[str] | None = None,
) -> Path:
    """Write a bundle from the latest checkpoint of each stage run folder.

    ``runs`` maps a component name ("vae", "svac", "generator", "direction") to the folder given to
    ``train --out``. Only model weights go in (no optimizer state); configs are the networks'
    own. The manifest records per stage the checkpoint, its config, corpus and corpus seed,
    and the training command that reproduces it (:func:`reproduce_command`).

    ``base``: a bundle spec (default | PATH | models:/NAME@ALIAS) whose components, stage
    records, commands and metrics are copied for every component without a run here (e.g.
    a new generator beside the shipped VAE and SVAC); not the metrics of a component this
    bundle retunes, or that were measured with a component it replaces
    (:data:`EVALUATED_WITH`). A generator is refused next to a VAE
    or SVAC other than the ones its training features were computed with, and the base's
    generator is left out when a VAE or SVAC run replaces the base's.
    ``keep``: with ``base``, copy only these of its components (e.g. {"direction"}: the
    shipped cue beside new encoders); InputError naming any the base lacks.
    ``generator_dtype``: "float16" (default; halves the generator's weight file, keeps the
    bundle small) or "float32". The latent statistics stay float32; loading converts the
    weights to the module's dtype.
    ``tune``: settings chosen after training, {component: {field: value}} among
    :data:`TUNABLE_FIELDS` (see :func:`tune_components`).
    """
    from swansphere.models.generator import GENERATOR_PRESETS
    from swansphere.models.vae import VAE_PRESETS

    if generator_dtype not in ("float16", "float32"):
        raise InputError(f"generator_dtype must be float16 or float32, got {generator_dtype!r}")
    presets = {"vae": VAE_PRESETS, "generator": GENERATOR_PRESETS}
    components, commands, metrics = {}, {}, dict(metrics)
    for name, run in runs.items():
        path = latest_checkpoint(Path(run) / "checkpoints")
        if path is None:
            raise InputError(f"no checkpoint under {run}/checkpoints")
        checkpoint = load_checkpoint(path)
        stage_cfg = checkpoint.config
        state = {
            k.removeprefix("vae."): v
            for k, v in checkpoint.model_state.items()
            if name != "vae" or k.startswith("vae.")
        }
        if name == "generator" and generator_dtype == "float16":
            state = {
                k: v.half() if v.is_floating_point() and not k.startswith("latent_") else v
                for k, v in state.items()
            }
        if name == "svac":
            network = svac_network_config(stage_cfg)
        elif name == "direction":
            network = direction_network_config(stage_cfg)
        else:
            network = presets[name][stage_cfg["preset"]]
        check_weights_fit(name, network, state, run)
        components[name] = (network, state, name)
        data_meta.setdefault("stages", {})[name] = {
            "checkpoint": str(path),
            "step": checkpoint.step,
            "config": stage_cfg,
            "corpus": stage_cfg["data"],
            "corpus_seed": corpus_seed(stage_cfg["data"]),
        }
        if checkpoint.extra.get("init_from"):
            data_meta["stages"][name]["init_from"] = checkpoint.extra["init_from"]
        if name == "generator":
            data_meta["stages"][name]["weights_dtype"] = generator_dtype
        commands[name] = reproduce_command(name, stage_cfg, checkpoint.step)
    if keep is not None and base is None:
        raise InputError("keep names components of a base bundle: give base too")
    if base is not None:
        from swansphere.models.bundle import load_bundle
        from swansphere_training.data.features import feature_digest

        source = load_bundle(base)
        if keep is not None and (absent := sorted(set(keep) - set(source.components))):
            raise InputError(
                f"base {base!r} has no {', '.join(absent)} to keep (it holds "
                f"{', '.join(sorted(source.components))})"
            )
        base_commands = source.training_command
        # Replaced encoders whose feature weights (for the base's generator) differ.
        saliency = "generator" in source.components and bool(
            source.config("generator").get("video_saliency", False)
        )
        changed = sorted(
            c
            for c in components.keys() & FEATURE_COMPONENTS
            if c in source.components
            and feature_digest(c, dict(components[c][1]), saliency)
            != feature_digest(c, dict(source.component(c)[1]), saliency)
        )
        for name in source.components:
            if name in components or (keep is not None and name not in keep):
                continue
            if name == "generator" and changed:
                # Its training features came from the base's VAE/SVAC encoders, not these
                # (an SVAC retrained with frozen video tokens leaves them as they were).
                log.warning(
                    "the base bundle's generator is left out: it was trained on features of "
                    "the base's encoders, and this bundle changes the %s encoder",
                    " and ".join(changed),
                )
                continue
            config, state = source.component(name)
            components[name] = (config, state, source.kind(name))
            stage = dict((source.data.get("stages") or {}).get(name) or {})
            stage["from_bundle"] = {"spec": str(base), "digest": source.digest}
            data_meta.setdefault("stages", {})[name] = stage
            if isinstance(base_commands, dict) and name in base_commands:
                commands[name] = base_commands[name]
            # The base's evaluations of it (NAME or NAME_*.json) come with it, unless this
            # bundle retunes it or replaces or retunes a component they were measured with.
            redone = runs.keys() | (tune or {}).keys()
            replaced = sorted(EVALUATED_WITH.get(name, frozenset()) & redone)
            stale = [k for k in source.metrics if k == name or k.startswith(f"{name}_")]
            if replaced or name in (tune or {}):
                if stale:
                    log.warning(
                        "the base bundle's %s metrics (%s) are not carried over: %s; "
                        "evaluate the new bundle and pass --metrics",
                        name,
                        ", ".join(stale),
                        f"this bundle replaces or retunes its {' and '.join(replaced)}"
                        if replaced
                        else "this bundle retunes it",
                    )
            else:
                for key in stale:
                    metrics.setdefault(key, source.metrics[key])
            base_tuned = (source.data.get("tuned") or {}).get(name)
            if base_tuned:
                data_meta.setdefault("tuned", {})[name] = dict(base_tuned)
    if "generator" in runs:
        _check_generator_features(Path(runs["generator"]), components)
    if tune:
        # A field the base had tuned already keeps the value it was trained with.
        tuned = data_meta.setdefault("tuned", {})
        for name, fields in tune_components(components, tune).items():
            earlier = tuned.setdefault(name, {})
            for field, record in fields.items():
                if field in earlier:
                    record["trained_with"] = earlier[field]["trained_with"]
                earlier[field] = record
    _check_direction_source(components)
    commands["bundle"] = " ".join(shlex.quote(a) for a in sys.argv)
    return write_bundle(
        out,
        components,
        manifest_extra={"data": data_meta, "training_command": commands, "metrics": metrics},
    )


def config_dict(config: Any) -> dict[str, Any]:
    """A component's config as a plain dict: a config dataclass (from a run) or the dict
    a bundle holds (copied)."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)


def _check_direction_source(components: dict[str, tuple[Any, dict, str]]) -> None:
    """InputError for a generator whose lock aims at the video direction cue in a bundle
    without one (the runtime could not load it)."""
    if "generator" not in components or "direction" in components:
        return
    config = config_dict(components["generator"][0])
    if config.get("direction_source", "lm") == "video":
        raise InputError(
            "the generator's direction_source is video, but the bundle has no direction cue: "
            "add one with --direction RUN (swansphere train direction)"
        )


# Config fields a bundle may set after training (``swansphere bundle --tune``): they change
# how the trained weights are used, not which weights there are or what they were trained
# on: the generator's sampler, how SVAC's similarity weighs its parts, and how much of its
# spatial code's saliency an SVAC takes from a direction cue (one trained without the cue
# takes the bundle's: :func:`carry_direction_cue`), over how many patches the direction
# cue's estimates are summed where the generator's lock aims, and whether its convolutions
# wrap around the panorama's seam (``azimuth_padding``).
TUNABLE_FIELDS = {
    "generator": SAMPLER_FIELDS,
    "svac": ("spatial_weight", "activity_weight", "cue_share"),
    "direction": ("smoothing", "azimuth_padding"),
}


def tune_components(
    components: dict[str, tuple[Any, dict, str]], tune: dict[str, dict[str, Any]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Set config fields of ``components`` ({name: (config, state, kind)}, configs as
    dataclasses or dicts) in place; returns {name: {field: {"trained_with": old,
    "bundled": new}}} for the manifest. InputError for a component that is not there, a
    field outside :data:`TUNABLE_FIELDS`, an invalid value, or one that would need other
    weights (e.g. an SVAC activity weight of 0 drops the activity map)."""
    import torch

    from swansphere.models.bundle import component_builder, weight_mismatches

    record: dict[str, dict[str, dict[str, Any]]] = {}
    for name, fields in tune.items():
        if name not in TUNABLE_FIELDS:
            raise InputError(
                f"--tune {name}: only {', '.join(TUNABLE_FIELDS)} settings can be tuned"
            )
        if name not in components:
            raise InputError(f"--tune {name}: this bundle has no {name}")
        bad = sorted(set(fields) - set(TUNABLE_FIELDS[name]))
        if bad:
            raise InputError(
                f"--tune {name}.{bad[0]}: not tunable after training (tunable: "
                f"{', '.join(TUNABLE_FIELDS[name])})"
            )
        config, state, kind = components[name]
        old = config_dict(config)
        new = old | fields
        carries = name == "svac" and fields.get("cue_share", 0) > 0 and not old.get("cue")
        if carries:
            new, state = carry_direction_cue(new, state, components)
        with torch.device("meta"):
            problems = weight_mismatches(component_builder(kind)(new), state)
            # Fields a config written before they existed lacks have their defaults.
            built = getattr(component_builder(kind)(old), "config", None)
        if dataclasses.is_dataclass(built):
            old = dataclasses.asdict(built) | old
        if problems:
            raise InputError(f"--tune {name}: {fields} would need other weights ({problems})")
        components[name] = (new, state, kind)
        record[name] = {k: {"trained_with": old.get(k), "bundled": v} for k, v in fields.items()}
        if carries:
            record[name]["cue"] = {"trained_with": None, "bundled": "the bundle's direction cue"}
    return record


def carry_direction_cue(
    svac: dict[str, Any], state: dict, components: dict[str, tuple[Any, dict, str]]
) -> tuple[dict[str, Any], dict]:
    """An SVAC config (a dict) and weights trained without a direction cue, made to carry
    the bundle's direction cue (``components["direction"]``) as one trained with
    ``cue_from`` does: its config under ``cue``, its weights under ``cue.``. The SVAC's
    own weights are unchanged; its spatial code's saliency takes ``cue_share`` of the
    cue's cell map. InputError when the bundle has no direction cue."""
    if "direction" not in components:
        raise InputError(
            "--tune svac.cue_share: this SVAC was trained without a direction cue and the "
            "bundle has none to give it; add one with --direction RUN (or --base BUNDLE)"
        )
    config, cue_state, _ = components["direction"]
    carried = dict(state) | {f"cue.{k}": v for k, v in cue_state.items()}
    return svac | {"cue": config_dict(config)}, carried


def check_weights_fit(kind: str, network: Any, state: dict, run: str | Path) -> None:
    """InputError unless ``state`` loads into a ``kind`` network built from ``network`` (a
    config dataclass) on the meta device (:func:`swansphere.models.bundle.weight_mismatches`).
    It catches a run whose preset has changed since it trained, before a bundle that cannot
    load is written."""
    import torch

    from swansphere.models.bundle import component_builder, weight_mismatches

    with torch.device("meta"):
        module = component_builder(kind)(dataclasses.asdict(network))
    problems = weight_mismatches(module, state)
    if problems:
        raise InputError(
            f"the {kind} weights of run {run} do not fit the network its preset builds now "
            f"({problems}); was the run trained before the preset changed?"
        )


def _check_generator_features(run: Path, components: dict[str, tuple]) -> None:
    """Refuse a generator beside a VAE encoder / SVAC video encoder (and saliency, for a
    generator with the saliency input) other than the ones that made its training features
    (recorded in RUN/features/train.safetensors); a new VAE decoder or new SVAC heads are
    fine."""
    from swansphere_training.data.features import feature_digest, read_feature_meta

    for name in ("vae", "svac"):
        if name not in components:
            raise InputError(f"a bundle with a generator needs a {name} (give --{name} or --base)")
    cache = run / "features" / "train.safetensors"
    meta = read_feature_meta(cache)
    if meta is None:
        log.warning("no feature cache at %s: cannot check the VAE/SVAC it was trained on", cache)
        return
    saliency = bool(meta.get("saliency_window"))
    for name in ("vae", "svac"):
        digest = feature_digest(name, dict(components[name][1]), saliency)
        recorded = meta.get(f"{name}_digest")
        if digest != recorded:
            raise InputError(
                f"the generator in {run} was trained on features of another {name}: its "
                f"encoder digest {digest[:12]} differs from {str(recorded)[:12]} recorded in "
                f"{cache}; give --base (or --{name}) with the bundle the generator trained with"
            )


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


__all__ = ["STAGES", "export_bundle", "stage_config", "tracking", "train_stage"]
