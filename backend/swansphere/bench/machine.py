"""What a benchmark ran on, so that figures from different machines can be told apart."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name: the first ``model name`` line of ``/proc/cpuinfo`` (or of
    ``cpuinfo``, that file's text) on Linux; elsewhere, or when it has none, what
    :mod:`platform` knows (``platform.processor()``, else the architecture, e.g. "x86_64")."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def cpu_description(vector_isa: str | None = None) -> str:
    """The CPU as a benchmark reports it: its model name (:func:`cpu_model`), then the
    architecture and, when given, the widest vector instructions the timed kernels use
    (torch's ``torch.backends.cpu.get_cpu_capability()``), e.g.
    "Intel(R) Xeon(R) Processor (x86_64, AVX512)"."""
    detail = ", ".join(p for p in (platform.machine(), vector_isa) if p)
    return f"{cpu_model()} ({detail})" if detail else cpu_model()


__all__ = ["cpu_description", "cpu_model"]
