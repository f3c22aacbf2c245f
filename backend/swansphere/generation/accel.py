"""Inference acceleration of the two per-patch networks: the Spatial LM step and the
LocDiT velocity network (``--accel eager|compile|tensorrt``).

- eager: plain PyTorch.
- compile: ``torch.compile`` of both networks (Inductor; on CUDA with
  ``mode="reduce-overhead"``, which captures CUDA graphs for the fixed-shape LocDiT).
- tensorrt: Torch-TensorRT's dynamo frontend compiles the LocDiT sampler step for its
  fixed shapes (3 guidance rows, one patch plus context) to a TensorRT engine, saved as
  an ExportedProgram (``locdit_<hash>.ep`` in the cache folder) and reloaded on the next
  start instead of recompiling. The LM step keeps a growing KV cache, so it runs under
  ``torch.compile`` with dynamic shapes there. Install on an NVIDIA machine with
  ``pip install -e '.[tensorrt]' --extra-index-url https://download.pytorch.org/whl/cu128``
  (a torch-tensorrt build matching the installed torch; see README).

When the requested backend cannot run (no CUDA, torch-tensorrt missing or failing), one
log line says so and the eager path is used; generation never fails because of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from swansphere.cache import cache_root
from swansphere.errors import InputError
from swansphere.models.generator import LocDiTStep

log = logging.getLogger(__name__)

ACCEL_MODES = ("eager", "compile", "tensorrt")


@dataclass
class Accelerated:
    """The callables a sampler uses: ``lm(x, text, mask, cache, text_kv)`` (SpatialLM) and
    ``dit(x, blocks, final, context_k, context_v)`` (one sampler step,
    :meth:`LocDiT.velocity_modulated`); ``mode`` is what runs."""

    lm: Callable[..., torch.Tensor]
    dit: Callable[..., torch.Tensor]
    mode: str


def cache_dir() -> Path:
    """Where compiled engines are kept: ``engines/`` under :func:`swansphere.cache.cache_root`."""
    return cache_root() / "engines"


def _weights_hash(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _dit_example(runtime: Any, expanded: bool = False) -> tuple[torch.Tensor, ...]:
    """LocDiT step inputs of one session's patch: x, block and output modulations (see
    :meth:`LocDiT.modulation_of`), context keys, values.
    ``expanded``: the context as the single-session sampler passes it, one row broadcast
    to the three (a stride-0 view, which torch.compile specialises on)."""
    cfg, dev = runtime.generator.config, runtime.device
    rows, f, d = 3, cfg.patch_frames, cfg.latent_dim  # three guidance rows
    ctx = cfg.context_patches * f
    head_dim = cfg.dit_dim // cfg.dit_heads
    kv_shape = (cfg.dit_layers, 1 if expanded else rows, cfg.dit_heads, ctx, head_dim)
    k, v = torch.zeros(kv_shape, device=dev), torch.zeros(kv_shape, device=dev)
    if expanded:
        k, v = k.expand(-1, rows, -1, -1, -1), v.expand(-1, rows, -1, -1, -1)
    return (
        torch.zeros(rows, f, d, device=dev),
        torch.zeros(cfg.dit_layers, 6, rows, 1, cfg.dit_dim, device=dev),
        torch.zeros(2, rows, 1, cfg.dit_dim, device=dev),
        k,
        v,
    )


def _tensorrt_dit(runtime: Any) -> Callable[..., torch.Tensor]:
    """The LocDiT as a TensorRT engine (compiled once, then loaded from cache)."""
    import torch_tensorrt  # optional extra: NVIDIA machines only

    dit = LocDiTStep(runtime.generator.dit).eval()
    path = cache_dir() / f"locdit_{_weights_hash(dit)}.ep"
    inputs = _dit_example(runtime)
    if path.is_file():
        log.info("loading TensorRT LocDiT engine %s", path)
        return torch.export.load(str(path)).module()
    log.info("compiling the LocDiT with Torch-TensorRT (first start only)")
    engine = torch_tensorrt.compile(
        dit, ir="dynamo", inputs=list(inputs), enabled_precisions={torch.float16, torch.float32}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ep.tmp")
    torch_tensorrt.save(engine, str(tmp), inputs=list(inputs))
    os.replace(tmp, path)
    return engine


def accelerate(runtime: Any, mode: str = "eager") -> Accelerated:
    """The LM and LocDiT callables for ``mode`` (see the module docstring)."""
    if mode not in ACCEL_MODES:
        raise InputError(f"unknown accel mode {mode!r}; choose one of {', '.join(ACCEL_MODES)}")
    lm, dit = runtime.generator.lm, LocDiTStep(runtime.generator.dit).eval()
    if mode == "eager":
        return Accelerated(lm, dit, "eager")
    cuda = runtime.device.type == "cuda"
    if mode == "tensorrt":
        if not cuda:
            log.warning(
                "accel tensorrt needs a CUDA device (running on %s): using eager", runtime.device
            )
            return Accelerated(lm, dit, "eager")
        try:
            trt_dit = _tensorrt_dit(runtime)
        except Exception as exc:  # torch-tensorrt absent or the compile failed: stay usable
            log.warning("accel tensorrt unavailable (%s: %s): using eager", type(exc).__name__, exc)
            return Accelerated(lm, dit, "eager")
        return Accelerated(torch.compile(lm, dynamic=True), trt_dit, "tensorrt")
    try:
        options = {"mode": "reduce-overhead"} if cuda else {}
        compiled_dit = torch.compile(dit, **options)
        # torch.compile compiles on the first call: make that call here, so that a machine
        # that cannot compile (no C++ compiler for Inductor's CPU code, no Triton) falls
        # back now instead of failing inside a session's first patch.
        with torch.inference_mode():
            compiled_dit(*_dit_example(runtime, expanded=True))
    except Exception as exc:
        log.warning("torch.compile unavailable (%s: %s): using eager", type(exc).__name__, exc)
        return Accelerated(lm, dit, "eager")
    return Accelerated(torch.compile(lm, dynamic=True), compiled_dit, "compile")


__all__ = ["ACCEL_MODES", "Accelerated", "accelerate", "cache_dir"]
