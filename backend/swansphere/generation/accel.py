"""Inference acceleration of the two per-patch networks: the Spatial LM step and the
LocDiT sampler step (``--accel eager|compile|tensorrt``).

- eager: plain PyTorch.
- compile: ``torch.compile`` of both networks (Inductor; on CUDA with
  ``mode="reduce-overhead"``, which captures CUDA graphs for the fixed-shape LocDiT).
- tensorrt: Torch-TensorRT's dynamo frontend compiles two fixed-shape networks to
  TensorRT engines, each saved as an ExportedProgram in the cache folder
  (``locdit_<hash>.ep``, ``lmstep_<hash>.ep``) and reloaded on the next start instead of
  recompiling: the LocDiT sampler step (3 guidance rows, one patch plus context) and the
  LM step with a static KV cache (:class:`~swansphere.models.generator.LMStep`: the
  window's past keys and values as fixed-shape inputs, empty slots masked), which
  :class:`FixedWindowLM` feeds from the session's own cache. Install on an NVIDIA
  machine with
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
from swansphere.models.generator import KVCache, LMStep, LocDiTStep

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


class FixedWindowLM:
    """The sampler's LM call ``(x, text, text_mask, cache, text_kv) -> h`` through a
    fixed-shape step (an :class:`LMStep`, or its TensorRT engine): each call lays the
    session's :class:`KVCache` into the static window (its newest ``lm_window - 1``
    patches, oldest first, zeros and a False mask in the empty slots), runs the step and
    appends the patch's keys and values to the cache. The cache evolves as under the
    plain LM (trimmed to the window the same way), so sessions undo and trim it as ever;
    one patch per call."""

    def __init__(self, step: Callable[..., tuple[torch.Tensor, ...]], config: Any) -> None:
        self.step = step
        self.window = config.lm_window
        self.layers = config.lm_layers
        self.heads = config.lm_heads
        self.head_dim = config.lm_dim // config.lm_heads

    def __call__(
        self,
        x: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        cache: KVCache,
        text_kv: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        if x.shape[1] != 1:
            raise ValueError(f"a fixed-window LM step takes one patch, got {x.shape[1]}")
        past = self.window - 1
        cache.trim(past)  # room for this patch, as SpatialLM.forward makes it
        b, n = x.shape[0], (0 if cache.keys[0] is None else cache.keys[0].shape[2])
        shape = (self.layers, b, self.heads, past, self.head_dim)
        past_k, past_v = x.new_zeros(shape), x.new_zeros(shape)
        if n:
            past_k[..., past - n :, :] = torch.stack(cache.keys)
            past_v[..., past - n :, :] = torch.stack(cache.values)
        valid = torch.arange(past, device=x.device) >= past - n
        text_k = torch.stack([k for k, _ in text_kv])
        text_v = torch.stack([v for _, v in text_kv])
        h, new_k, new_v = self.step(x, text, text_mask, past_k, past_v, valid, text_k, text_v)
        for layer in range(self.layers):
            cache.append(layer, new_k[layer], new_v[layer])
        cache.length += 1
        return h


def _lm_example(runtime: Any) -> tuple[torch.Tensor, ...]:
    """LMStep inputs of one session's patch (3 guidance rows; see :class:`LMStep`)."""
    cfg, dev = runtime.generator.config, runtime.device
    rows, head_dim = 3, cfg.lm_dim // cfg.lm_heads
    text_len = runtime.caption_tokens(None)[0].shape[1] + 1  # + the null token
    past = (cfg.lm_layers, rows, cfg.lm_heads, cfg.lm_window - 1, head_dim)
    text_kv = (cfg.lm_layers, rows, cfg.lm_heads, text_len, head_dim)
    return (
        torch.zeros(rows, 1, cfg.lm_dim, device=dev),
        torch.zeros(rows, text_len, cfg.lm_dim, device=dev),
        torch.ones(rows, text_len, dtype=torch.bool, device=dev),
        torch.zeros(past, device=dev),
        torch.zeros(past, device=dev),
        torch.ones(cfg.lm_window - 1, dtype=torch.bool, device=dev),
        torch.zeros(text_kv, device=dev),
        torch.zeros(text_kv, device=dev),
    )


def _tensorrt_engine(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], name: str, backend: Any = None
) -> Callable[..., Any]:
    """``module`` as a TensorRT engine for ``inputs``' shapes: compiled once, saved as
    ``<name>_<weights hash>.ep`` (atomically) and loaded from there on later starts.
    ``backend``: the ``torch_tensorrt`` module (the default; tests pass a stand-in)."""
    if backend is None:
        import torch_tensorrt as backend  # optional extra: NVIDIA machines only

    path = cache_dir() / f"{name}_{_weights_hash(module)}.ep"
    if path.is_file():
        log.info("loading TensorRT engine %s", path)
        return torch.export.load(str(path)).module()
    log.info("compiling %s with Torch-TensorRT (first start only)", name)
    engine = backend.compile(
        module, ir="dynamo", inputs=list(inputs), enabled_precisions={torch.float16, torch.float32}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ep.tmp")
    backend.save(engine, str(tmp), inputs=list(inputs))
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
            trt_dit = _tensorrt_engine(dit, _dit_example(runtime), "locdit")
            lm_step = LMStep(lm).eval()
            trt_lm = _tensorrt_engine(lm_step, _lm_example(runtime), "lmstep")
        except Exception as exc:  # torch-tensorrt absent or the compile failed: stay usable
            log.warning("accel tensorrt unavailable (%s: %s): using eager", type(exc).__name__, exc)
            return Accelerated(lm, dit, "eager")
        return Accelerated(FixedWindowLM(trt_lm, runtime.generator.config), trt_dit, "tensorrt")
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


__all__ = ["ACCEL_MODES", "Accelerated", "FixedWindowLM", "accelerate", "cache_dir"]
