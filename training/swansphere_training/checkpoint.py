"""Training checkpoints: atomic, pickle-free, and complete enough to resume a run exactly.

Layout of a checkpoint root (one per training run, e.g. ``runs/vae/checkpoints``)::

    ROOT/
      latest                       text: the name of the newest complete checkpoint
      step_00000500/
        model.safetensors          the model's state dict (weights and buffers)
        trainer_state.safetensors  every tensor of the optimizer, scheduler and RNG states
        state.json                 format_version, step, epoch, config, extra, the
                                   optimizer/scheduler/RNG tree with tensor placeholders,
                                   and the sha256 of both safetensors files
      step_00001000/
        ...

No pickle anywhere. ``torch.save`` would have been tolerable for our own optimizer and
RNG state, but it is not needed: those states are trees of dicts, lists, tuples,
numbers, strings and tensors, so :func:`encode_tree` stores the tree as JSON with each
tensor replaced by a placeholder and the tensors in safetensors. Both are lossless:
tensors are stored bitwise and JSON floats round-trip exactly (``repr``), which exact
resumption needs.

Atomicity. A checkpoint is built in a hidden temporary directory beside its final name
and renamed into place (:func:`swansphere.models.bundle.atomic_directory`); then the
``latest`` pointer is replaced atomically; only then are old checkpoints pruned to the
last ``keep_last``. A crash at any point leaves the previous checkpoint intact and
nothing partial under a ``step_*`` name. :func:`load_checkpoint` on a root follows
``latest`` and falls back to the newest complete ``step_*`` directory.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from swansphere.errors import InputError
from swansphere.models.bundle import atomic_directory, fsync_dir, sha256_file

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer_state.safetensors"
STATE_FILE = "state.json"
LATEST_FILE = "latest"
CONFIG_FILE = "config.json"
_STEP_RE = re.compile(r"^step_(\d{8,})$")


class CheckpointError(InputError):
    """A checkpoint that cannot be written or read; the message names the path."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. Tensors are on ``map_location`` (CPU by default)."""

    path: Path
    step: int  # optimizer steps completed
    epoch: int  # complete passes over the training set
    config: dict[str, Any]  # the stage config, as JSON
    model_state: dict[str, torch.Tensor]
    optimizer_state: Any = None
    scheduler_state: Any = None
    rng_states: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Trees of Python values and tensors <-> JSON + a flat dict of tensors
# --------------------------------------------------------------------------------------


def encode_tree(value: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """JSON-able form of ``value``; tensors are moved into ``tensors`` under keys ``t0, t1, ..``.

    Supports dict (any hashable keys of the supported scalar kinds), list, tuple, str,
    int, float (NaN and Inf included), bool, None, bytes, numpy arrays and scalars, and
    torch tensors. Anything else raises :class:`CheckpointError` naming where it is.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": key}
    if isinstance(value, np.generic):
        return encode_tree(value.item(), tensors, where)
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    if isinstance(value, tuple):
        items = [encode_tree(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
        return {"__tuple__": items}
    if isinstance(value, list):
        return [encode_tree(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode_tree(v, tensors, f"{where}.{k}") for k, v in value.items()}
        # Non-string keys (the optimizer keys its state by parameter index): keep their types.
        pairs = [
            [encode_tree(k, tensors, f"{where} key"), encode_tree(v, tensors, f"{where}[{k!r}]")]
            for k, v in value.items()
        ]
        return {"__dict__": pairs}
    raise CheckpointError(f"cannot store {type(value).__name__} at {where} in a checkpoint")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list | tuple) else value


def decode_tree(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`encode_tree`."""
    if isinstance(value, list):
        return [decode_tree(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "__tensor__":
            return tensors[inner]
        if tag == "__ndarray__":
            return tensors[inner].numpy()
        if tag == "__float__":
            return float(inner)
        if tag == "__bytes__":
            return bytes.fromhex(inner)
        if tag == "__tuple__":
            return tuple(decode_tree(v, tensors) for v in inner)
        if tag == "__dict__":
            return {_hashable(decode_tree(k, tensors)): decode_tree(v, tensors) for k, v in inner}
    return {k: decode_tree(v, tensors) for k, v in value.items()}


# --------------------------------------------------------------------------------------
# RNG states
# --------------------------------------------------------------------------------------


def capture_rng_states(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random stream a training step may draw from: Python's ``random``, NumPy's
    global RNG, torch's CPU RNG, the CUDA RNGs (when CUDA is in use), and the named
    ``generators`` (e.g. a DataLoader's)."""
    # The legacy global NumPy RNG is what library and dataset code may draw from: save it.
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": [int(k) for k in np_state["state"]["key"]],
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def restore_rng_states(
    states: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Put back what :func:`capture_rng_states` captured (generators matched by name)."""
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np_state = states["numpy"]
    np.random.set_state(  # noqa: NPY002 - restoring the legacy global RNG on purpose
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np.asarray(np_state["key"], dtype=np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(states["torch"].to("cpu", torch.uint8))
    if states.get("cuda") and torch.cuda.is_available():
        cuda = [s.to("cpu", torch.uint8) for s in states["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    saved = states.get("generators") or {}
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise CheckpointError(f"checkpoint has no state for random generator {name!r}")
        gen.set_state(saved[name].to("cpu", torch.uint8))


# --------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------


def _state_for_safetensors(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of a model state dict (copies also untie shared storage)."""
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"model state holds a non-tensor at {key!r} ({type(value).__name__})"
            )
        out[str(key)] = value.detach().to("cpu").contiguous().clone()
    return out


def _json_normal(data: Any, what: str) -> Any:
    """``data`` as it reads back from JSON (tuples become lists), or CheckpointError."""
    try:
        return json.loads(json.dumps(data, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} must be JSON-serialisable: {exc}") from exc


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint after ``step`` steps (sorts by step)."""
    return f"step_{int(step):08d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories under ``root`` (those holding state.json), by step."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_RE.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The checkpoint ``root/latest`` names, else the newest complete one, else None."""
    root = Path(root)
    pointer = root / LATEST_FILE
    if pointer.is_file():
        target = root / pointer.read_text().strip()
        if _STEP_RE.match(target.name) and (target / STATE_FILE).is_file():
            return target
    found = list_checkpoints(root)
    return found[-1] if found else None


def _write_pointer(root: Path, name: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{LATEST_FILE}.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / LATEST_FILE)
        fsync_dir(root)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _remove_stale_temporaries(root: Path) -> None:
    """Hidden leftovers of writes that crashed (``.step_*.tmp`` dirs, ``.latest.*`` files).

    Only one process writes a given root (rank 0 of one run), so anything left is stale.
    """
    for p in root.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def prune_checkpoints(root: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (never the one ``latest`` names);
    return the deleted paths."""
    if keep_last < 1:
        raise InputError(f"keep_last must be >= 1, got {keep_last}")
    keep = latest_checkpoint(root)
    found = list_checkpoints(root)
    removed = [p for p in found[: max(0, len(found) - keep_last)] if p != keep]
    for p in removed:
        shutil.rmtree(p)
    return removed


def save_checkpoint(
    root: str | os.PathLike,
    *,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Any = None,
    scheduler_state: Any = None,
    step: int,
    epoch: int = 0,
    rng_states: Any = None,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    keep_last: int | None = 3,
) -> Path:
    """Write the checkpoint after ``step`` steps under ``root`` atomically; return its dir.

    ``model_state``: the model's state dict (to model.safetensors). ``optimizer_state``,
    ``scheduler_state``, ``rng_states``: any trees :func:`encode_tree` supports (usually
    ``{name: opt.state_dict()}`` and :func:`capture_rng_states`). ``config`` and ``extra``
    must be JSON-serialisable. After the write, ``latest`` names the new checkpoint and
    all but the newest ``keep_last`` are deleted (``None`` keeps all). A checkpoint of the
    same step is replaced.
    """
    if int(step) != step or step < 0:
        raise InputError(f"step must be a non-negative integer, got {step}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    tensors: dict[str, torch.Tensor] = {}
    tree = encode_tree(
        {"optimizer": optimizer_state, "scheduler": scheduler_state, "rng": rng_states}, tensors
    )
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "step": int(step),
        "epoch": int(epoch),
        "config": _json_normal(dict(config), "config"),
        "extra": _json_normal(dict(extra or {}), "extra"),
        "trainer_state": tree,
    }
    name = checkpoint_name(step)
    with atomic_directory(root / name) as tmp:
        save_file(_state_for_safetensors(model_state), str(tmp / MODEL_FILE))
        save_file(tensors, str(tmp / TRAINER_FILE))
        state["files"] = {f: sha256_file(tmp / f) for f in (MODEL_FILE, TRAINER_FILE)}
        # Floats in the tree may be NaN/Inf only inside {"__float__": ...}; plain JSON here.
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, allow_nan=False) + "\n")
    _write_pointer(root, name)
    if keep_last is not None:
        prune_checkpoints(root, keep_last)
    return root / name


# --------------------------------------------------------------------------------------
# Loading and exporting
# --------------------------------------------------------------------------------------


def _checkpoint_dir(path: Path) -> Path:
    if (path / STATE_FILE).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"no checkpoint found at {path}")
    return found


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", verify: bool = True
) -> Checkpoint:
    """Load a checkpoint directory, or the latest checkpoint under a root.

    With ``verify`` the sha256 of both safetensors files is checked against state.json;
    a mismatch raises :class:`CheckpointError` naming the file. Nothing is unpickled.
    """
    ckpt_dir = _checkpoint_dir(Path(path))
    try:
        state = json.loads((ckpt_dir / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{ckpt_dir / STATE_FILE} is unreadable: {exc}") from exc
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{ckpt_dir / STATE_FILE}: format_version {state.get('format_version')!r} is not "
            f"supported (expected {FORMAT_VERSION})"
        )
    loaded: dict[str, dict[str, torch.Tensor]] = {}
    for file in (MODEL_FILE, TRAINER_FILE):
        p = ckpt_dir / file
        if not p.is_file():
            raise CheckpointError(f"{p} is missing")
        if verify and sha256_file(p) != state["files"][file]:
            raise CheckpointError(f"checksum mismatch for {p}: the file is corrupted")
        try:
            loaded[file] = load_file(str(p), device=str(map_location))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{p} is not a readable safetensors file: {exc}") from exc
    trainer = decode_tree(state["trainer_state"], loaded[TRAINER_FILE])
    return Checkpoint(
        path=ckpt_dir,
        step=int(state["step"]),
        epoch=int(state["epoch"]),
        config=state["config"],
        model_state=loaded[MODEL_FILE],
        optimizer_state=trainer["optimizer"],
        scheduler_state=trainer["scheduler"],
        rng_states=trainer["rng"],
        extra=state.get("extra") or {},
    )


def export_weights(checkpoint: str | os.PathLike | Checkpoint, out: str | os.PathLike) -> Path:
    """Write the weights of a checkpoint without optimizer, scheduler or RNG state.

    ``out`` becomes a directory (written atomically) holding ``model.safetensors`` and
    ``config.json`` = ``{"config", "step", "epoch", "source"}``. Returns ``out``.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    out = Path(out)
    meta = {"config": ckpt.config, "step": ckpt.step, "epoch": ckpt.epoch, "source": str(ckpt.path)}
    with atomic_directory(out) as tmp:
        save_file(_state_for_safetensors(ckpt.model_state), str(tmp / MODEL_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n")
    return out
