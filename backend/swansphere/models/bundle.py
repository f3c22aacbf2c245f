"""The model bundle: one directory of configs and safetensors weights that every runtime
command loads (``--model default|PATH|models:/NAME@ALIAS``).

Layout of a bundle directory::

    manifest.json          what is in the bundle (below); the only file not checksummed
    vae.config.json        constructor config of component "vae" (JSON object)
    vae.safetensors        its state dict (safetensors, never pickle)
    svac.config.json
    svac.safetensors
    ...                    optional extra files (plots, notes), listed and checksummed too

``manifest.json``::

    {
      "format_version": 1,
      "created": "2026-01-01T00:00:00Z",                  # UTC, ISO 8601
      "components": {"vae": {"class": "vae", "config": "vae.config.json",
                             "weights": "vae.safetensors"}, ...},
      "data": {"stages": {"vae": {"corpus": "...", "corpus_seed": 0, "step": 4000, ...}}},
      "training_command": {"vae": "swansphere train vae --preset tiny --data ...", ...},
      "metrics": {"vae": {"angular_error_deg": 2.1}},
      "files": {"vae.config.json": "<sha256 hex>", "vae.safetensors": "<sha256 hex>", ...}
    }

Trust model. Loading verifies the sha256 of every file listed in ``files`` and refuses a
bundle with a missing file, a checksum mismatch (tampered or corrupted), a file that the
manifest does not list, a component whose config or weights are not listed, a path that
leaves the directory, or any pickle-based weight file (``.pt``, ``.pth``, ``.ckpt``,
``.pkl``, ``.bin``, ...) even when listed -- every error names the file. Weights are read
only with ``safetensors`` (a JSON header plus raw tensor bytes): nothing is ever unpickled,
so a hostile bundle cannot run code. The manifest itself is not signed: whoever can rewrite
both a file and the manifest can change the weights (not run code); pin
:attr:`Bundle.digest` (sha256 of manifest.json) where that matters.

``models:/NAME@ALIAS`` specs are resolved through the MLflow model registry by
:func:`swansphere_training.tracking.resolve_model_uri`, imported lazily inside
:func:`resolve_bundle_spec`: the training package is installed with this one, but the
runtime only touches it (and MLflow) when a registry URI is actually given. Nothing at
module level here imports MLflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file as save_safetensors_file
from torch import nn

from swansphere.errors import InputError
from swansphere.permissions import publish

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
#: The bundle shipped in the repository, loaded by ``--model default``.
DEFAULT_BUNDLE_DIR = Path(__file__).resolve().parent / "default_bundle"
#: Extensions of formats that may hold pickled Python objects; refused even when listed.
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib"})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_RESERVED_MANIFEST_KEYS = frozenset({"format_version", "created", "components", "files"})

ComponentBuilder = Callable[[dict[str, Any]], nn.Module]


class BundleError(InputError):
    """A bundle that cannot be loaded or written; the message names the offending file."""


# --------------------------------------------------------------------------------------
# Files: checksums and atomic directories (also used by the training checkpoints)
# --------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry to disk so that a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(root)


@contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Build a directory that appears under ``final`` complete or not at all.

    Yields a temporary directory beside ``final`` (same filesystem, hidden name
    ``.NAME.*.tmp``); when the block exits normally its files are fsynced and it is
    renamed onto ``final`` (an existing ``final`` is replaced: moved aside, then removed).
    If the block raises, the temporary directory is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        publish(tmp)  # mkdtemp's folder is private
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = final.parent / f".{final.name}.{uuid.uuid4().hex}.old"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_bytes(data: Any, what: str) -> bytes:
    try:
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{what} is not JSON-serialisable (finite numbers only): {exc}") from exc
    return (text + "\n").encode()


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _config_dict(config: Any, name: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, Mapping):
        return dict(config)
    raise BundleError(f"config of component {name!r} must be a dict or a dataclass instance")


def _state_for_safetensors(state: Mapping[str, Any], name: str) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of a state dict; tensors sharing storage are cloned apart."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise BundleError(
                f"state dict of component {name!r} holds a non-tensor at {key!r} "
                f"({type(value).__name__}); only tensors can go into safetensors"
            )
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else 0
        if ptr and ptr in seen:  # tied weights: safetensors refuses shared storage
            tensor = tensor.clone()
        seen.add(ptr)
        out[str(key)] = tensor
    return out


def write_bundle(
    path: str | os.PathLike,
    components: Mapping[str, tuple[Any, Mapping[str, torch.Tensor], str]],
    manifest_extra: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, bytes | str | os.PathLike] | None = None,
) -> Path:
    """Write a bundle directory atomically and return its path.

    ``components`` maps a component name (letters, digits, ``_``, ``-``) to
    ``(config, state_dict, kind)``: config is a dict or a config dataclass (stored as
    ``NAME.config.json``), state_dict maps names to tensors (stored as
    ``NAME.safetensors``), kind names the builder (see :func:`register_component_kind`).
    ``manifest_extra`` adds manifest keys such as ``data``, ``training_command`` and
    ``metrics`` (JSON values; it may not override format_version, created, components or
    files). ``extra_files`` maps relative file names to bytes, text, or a file to copy;
    they are checksummed like the rest. An existing bundle at ``path`` is replaced whole.
    """
    if not components:
        raise BundleError("a bundle needs at least one component")
    extra = dict(manifest_extra or {})
    clash = sorted(_RESERVED_MANIFEST_KEYS & extra.keys())
    if clash:
        raise BundleError(f"manifest_extra may not set {', '.join(clash)}")
    final = Path(path)
    with atomic_directory(final) as tmp:
        entries: dict[str, dict[str, str]] = {}
        for name, item in components.items():
            if not _NAME_RE.match(name):
                raise BundleError(f"component name {name!r} must match {_NAME_RE.pattern}")
            config, state, kind = item
            if not isinstance(kind, str) or not kind:
                raise BundleError(f"component {name!r}: kind must be a non-empty string")
            config_file, weights_file = f"{name}.config.json", f"{name}.safetensors"
            cfg = _config_dict(config, name)
            (tmp / config_file).write_bytes(_json_bytes(cfg, f"config of component {name!r}"))
            tensors = _state_for_safetensors(state, name)
            save_safetensors_file(tensors, str(tmp / weights_file), metadata={"component": name})
            entries[name] = {"class": kind, "config": config_file, "weights": weights_file}
        for rel, content in (extra_files or {}).items():
            target = tmp / _safe_relative(rel, where="extra_files")
            if target.exists():
                raise BundleError(f"extra file {rel} collides with a component file")
            if Path(rel).suffix.lower() in PICKLE_SUFFIXES:
                raise BundleError(f"extra file {rel}: pickle-based formats are not allowed")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            elif isinstance(content, str):
                target.write_text(content)
            else:
                shutil.copyfile(content, target)
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = {
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "components": entries,
            **extra,
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_bytes(_json_bytes(manifest, "manifest"))
    return final


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _safe_relative(rel: str, where: str) -> Path:
    """``rel`` as a relative path that stays inside the bundle, else :class:`BundleError`."""
    p = Path(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel:
        raise BundleError(f"{where}: path {rel!r} is not a plain relative path inside the bundle")
    return p


@dataclass(frozen=True)
class Bundle:
    """A verified bundle directory. Build its networks with :meth:`build`."""

    path: Path
    manifest: dict[str, Any]
    digest: str  # sha256 of manifest.json: pins the whole bundle, since it lists every hash

    @property
    def components(self) -> dict[str, dict[str, str]]:
        """``{name: {"class", "config", "weights"}}`` as in the manifest."""
        return dict(self.manifest["components"])

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.manifest.get("metrics") or {})

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.manifest.get("data") or {})

    @property
    def training_command(self) -> str | dict[str, str] | None:
        """The command(s) that trained the weights: one string, or one per component."""
        return self.manifest.get("training_command")

    def kind(self, name: str) -> str:
        """The builder kind of component ``name`` (``"vae"``, ``"svac"``, ...)."""
        return self._entry(name)["class"]

    def _entry(self, name: str) -> dict[str, str]:
        entries = self.manifest["components"]
        if name not in entries:
            raise BundleError(
                f"bundle {self.path} has no component {name!r}; it has: "
                + ", ".join(sorted(entries))
            )
        return entries[name]

    def _read_verified(self, rel: str) -> bytes:
        """The bytes of a listed file, re-checked against the manifest as they are used."""
        data = (self.path / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.manifest["files"][rel]:
            raise BundleError(
                f"checksum mismatch for {rel} in bundle {self.path} "
                "(file changed after the bundle was verified)"
            )
        return data

    def config(self, name: str) -> dict[str, Any]:
        """The config dict of component ``name``, without reading its weights."""
        entry = self._entry(name)
        try:
            config = json.loads(self._read_verified(entry["config"]))
        except json.JSONDecodeError as exc:
            raise BundleError(
                f"{entry['config']} in bundle {self.path} is not JSON: {exc}"
            ) from exc
        if not isinstance(config, dict):
            raise BundleError(f"{entry['config']} in bundle {self.path} is not a JSON object")
        return config

    def component(self, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(config dict, state dict)`` of component ``name``; tensors on the CPU."""
        entry = self._entry(name)
        config = self.config(name)
        try:
            state = load_safetensors_bytes(self._read_verified(entry["weights"]))
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise BundleError(
                f"{entry['weights']} in bundle {self.path} is not a readable safetensors file: "
                f"{exc}"
            ) from exc
        return config, state

    def build(self, name: str, device: str | torch.device = "cpu") -> nn.Module:
        """Rebuild component ``name`` with its kind's builder, load its weights (strict, but
        for the module's ``OPTIONAL_WEIGHTS`` prefixes: training-only heads newer than an
        older bundle, left at their initial values), and return it in eval mode on
        ``device``."""
        entry = self._entry(name)
        config, state = self.component(name)
        module = component_builder(entry["class"])(config)
        problems = weight_mismatches(module, state)
        if problems:
            raise BundleError(
                f"{entry['weights']} in bundle {self.path} does not fit a {entry['class']!r} "
                f"built from {entry['config']}: {problems}"
            )
        module.load_state_dict(state, strict=False)
        return module.to(device).eval()


def weight_mismatches(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``state`` from loading into ``module`` ("" when it fits): missing names
    (bar the module's ``OPTIONAL_WEIGHTS`` prefixes), unexpected names and shape
    differences, the first four of them in name order. Works on a module built on the meta
    device."""
    optional = tuple(getattr(module, "OPTIONAL_WEIGHTS", ()))
    expected = {k: tuple(v.shape) for k, v in sorted(module.state_dict().items())}
    got = {k: tuple(v.shape) for k, v in sorted(state.items())}
    problems = [f"missing {k}" for k in expected if k not in got and not k.startswith(optional)]
    problems += [f"unexpected {k}" for k in got if k not in expected]
    problems += [
        f"{k} is {got[k]}, the network wants {shape}"
        for k, shape in expected.items()
        if k in got and got[k] != shape
    ]
    more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
    return "; ".join(problems[:4]) + more


def _read_manifest(root: Path) -> dict[str, Any]:
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{MANIFEST_FILE} missing: {root} is not a model bundle")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{MANIFEST_FILE} of bundle {root} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST_FILE} of bundle {root} is not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{MANIFEST_FILE} of bundle {root}: format_version {version!r} is not supported "
            f"(this SwanSphere reads {FORMAT_VERSION})"
        )
    for key in ("components", "files"):
        if not isinstance(manifest.get(key), dict) or not manifest[key]:
            raise BundleError(f"{MANIFEST_FILE} of bundle {root}: {key!r} missing or empty")
    return manifest


def _check_manifest_entries(root: Path, manifest: dict[str, Any]) -> None:
    """Every listed path is safe and not a pickle format; every component file is listed."""
    files: dict[str, Any] = manifest["files"]
    for rel, digest in files.items():
        _safe_relative(rel, where=f"{MANIFEST_FILE} of bundle {root}")
        if Path(rel).suffix.lower() in PICKLE_SUFFIXES:
            raise BundleError(
                f"{rel} in bundle {root}: pickle-based files are refused (weights must be "
                "safetensors)"
            )
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
            raise BundleError(f"{MANIFEST_FILE} of bundle {root}: bad sha256 for {rel}")
    for name, entry in manifest["components"].items():
        if not isinstance(entry, dict) or not {"class", "config", "weights"} <= entry.keys():
            raise BundleError(
                f"{MANIFEST_FILE} of bundle {root}: component {name!r} needs class, config "
                "and weights"
            )
        if not str(entry["weights"]).endswith(".safetensors"):
            raise BundleError(
                f"{entry['weights']} in bundle {root}: component weights must be .safetensors"
            )
        for key in ("config", "weights"):
            if entry[key] not in files:
                raise BundleError(
                    f"{entry[key]} in bundle {root}: {key} of component {name!r} is not listed "
                    "in the manifest's files"
                )


def verify_bundle(root: str | os.PathLike) -> dict[str, Any]:
    """Check a bundle directory against its manifest and return the manifest.

    Raises :class:`BundleError` naming the file for: a listed file that is missing, a
    sha256 mismatch (tampered or corrupted), an unlisted file (a stray ``.pt`` included),
    a pickle-format file, a path outside the bundle, or a malformed manifest.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"model bundle not found: {root} is not a directory")
    manifest = _read_manifest(root)
    _check_manifest_entries(root, manifest)
    files: dict[str, str] = manifest["files"]
    present = {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()
    }
    present.discard(MANIFEST_FILE)
    for rel in sorted(present - files.keys()):
        what = "pickle-based file" if Path(rel).suffix.lower() in PICKLE_SUFFIXES else "file"
        raise BundleError(f"unlisted {what} {rel} in bundle {root}: not in the manifest, refused")
    for rel, expected in sorted(files.items()):
        path = root / rel
        if path.is_symlink() or not path.is_file():
            reason = "is a symlink" if path.is_symlink() else "is missing"
            raise BundleError(f"{rel} {reason} in bundle {root}")
        if sha256_file(path) != expected:
            raise BundleError(
                f"checksum mismatch for {rel} in bundle {root}: the file is corrupted or was "
                "modified after the bundle was written"
            )
    return manifest


def resolve_bundle_spec(spec: str | os.PathLike) -> Path:
    """The local directory of a ``--model`` spec: ``default``, a PATH, or
    ``models:/NAME@ALIAS`` (also ``models:/NAME/VERSION``), downloaded from the MLflow
    registry named by MLFLOW_TRACKING_URI (default: the repository's mlflow/mlruns.db)."""
    text = os.fspath(spec)
    if text == "default":
        if not (DEFAULT_BUNDLE_DIR / MANIFEST_FILE).is_file():
            raise BundleError(
                f"the default model bundle is not installed: {DEFAULT_BUNDLE_DIR} has no "
                f"{MANIFEST_FILE}. Train and export one (swansphere train ...), or pass "
                "--model PATH or --model models:/NAME@ALIAS"
            )
        return DEFAULT_BUNDLE_DIR
    if text.startswith("models:/"):
        try:
            # Lazy on purpose: the runtime imports the registry client only for registry URIs.
            from swansphere_training.tracking import resolve_model_uri
        except ImportError as exc:  # pragma: no cover - both packages ship together
            raise BundleError(
                f"{text}: resolving registry URIs needs swansphere_training and mlflow ({exc})"
            ) from exc
        return resolve_model_uri(text)
    return Path(text).expanduser()


def load_bundle(spec: str | os.PathLike) -> Bundle:
    """Load and verify a bundle: ``"default"`` (the shipped one), a directory path, or
    ``"models:/NAME@ALIAS"``. See the module docstring for what is refused."""
    root = resolve_bundle_spec(spec).resolve()
    manifest = verify_bundle(root)
    digest = sha256_file(root / MANIFEST_FILE)
    return Bundle(path=root, manifest=manifest, digest=digest)


# --------------------------------------------------------------------------------------
# Builders: component kind -> nn.Module
# --------------------------------------------------------------------------------------

# Kinds whose modules are imported only when first built: (module, network class, config
# class); the network is built as NETWORK(CONFIG.from_dict(config_dict)).
_LAZY_KINDS: dict[str, tuple[str, str, str]] = {
    "vae": ("swansphere.models.vae", "FOAVAE", "VAEConfig"),
    "svac": ("swansphere.models.svac", "SVAC", "SVACConfig"),
    "generator": ("swansphere.models.generator", "SpatialGenerator", "GeneratorConfig"),
    "direction": ("swansphere.models.direction", "VideoDirectionCue", "VideoDirectionConfig"),
}
_BUILDERS: dict[str, ComponentBuilder] = {}


def register_component_kind(kind: str, builder: ComponentBuilder) -> None:
    """Make ``Bundle.build`` turn components of ``kind`` into modules with
    ``builder(config_dict)`` (an untrained module; the bundle then loads its weights).
    Registering a kind again replaces its builder."""
    if not isinstance(kind, str) or not _NAME_RE.match(kind):
        raise InputError(f"component kind {kind!r} must match {_NAME_RE.pattern}")
    _BUILDERS[kind] = builder


def component_builder(kind: str) -> ComponentBuilder:
    """The builder registered for ``kind``; ``vae``, ``svac``, ``generator`` and
    ``direction`` are known by default."""
    if kind in _BUILDERS:
        return _BUILDERS[kind]
    if kind in _LAZY_KINDS:
        module_name, net_name, config_name = _LAZY_KINDS[kind]
        module = importlib.import_module(module_name)
        net_cls, config_cls = getattr(module, net_name), getattr(module, config_name)

        def build(config: dict[str, Any]) -> nn.Module:
            # The config class's own from_dict when it has one (it knows its fields best).
            if hasattr(config_cls, "from_dict"):
                return net_cls(config_cls.from_dict(config))
            return net_cls(dataclass_from_dict(config_cls, config))

        _BUILDERS[kind] = build
        return build
    known = sorted(set(_BUILDERS) | set(_LAZY_KINDS))
    raise BundleError(f"unknown component kind {kind!r}; known kinds: {', '.join(known)}")


def _convert(hint: Any, value: Any) -> Any:
    """``value`` (from JSON) shaped to the annotation ``hint``: nested dataclasses from dicts,
    tuples from lists. Anything else is passed through unchanged."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return dataclass_from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _convert(arg, value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return dataclass_from_dict(hint, value)
    if (hint is tuple or origin is tuple) and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
        return tuple(value)
    return value


def dataclass_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Instantiate config dataclass ``cls`` from a JSON dict (inverse of ``asdict``).

    Nested dataclass fields are rebuilt from dicts and tuple fields from lists; missing
    keys take the dataclass defaults; unknown keys raise :class:`BundleError` naming them.
    """
    if not dataclasses.is_dataclass(cls):
        raise InputError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise BundleError(f"config for {cls.__name__} has unknown key(s): {', '.join(unknown)}")
    kwargs = {key: _convert(hints.get(key, Any), value) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"config for {cls.__name__} is invalid: {exc}") from exc
