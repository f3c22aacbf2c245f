"""The torch device a command runs on, checked before any model moves there."""

from __future__ import annotations

import torch

from swansphere.errors import InputError


def torch_device(spec: str | torch.device) -> torch.device:
    """``spec`` ("cpu", "cuda", "cuda:1", "mps", ...) as a :class:`torch.device` this
    machine has; InputError naming the device otherwise (an unknown name, a torch built
    without CUDA, no GPU visible, or an index past the GPUs there are)."""
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device {spec!r} is not a torch device (cpu, cuda, cuda:N, mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch here is built without CUDA" if torch.version.cuda is None else "no GPU"
            raise InputError(f"device {spec!r} is not available: {why} (use --device cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {spec!r} is not available: this machine has {count} GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {spec!r} is not available on this machine (use --device cpu)")
    return device


__all__ = ["torch_device"]
