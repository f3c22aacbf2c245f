"""The models a server offers: names -> runtime specs, loaded on first use and cached.

A spec is what :class:`swansphere.generation.GeneratorRuntime` loads: ``default`` (the
bundle shipped in the package), a bundle folder, ``models:/NAME@ALIAS``, or
``random:PRESET[:SEED]`` (the default bundle's VAE and SVAC with a generator of PRESET
at random weights: the real code path before a generator is trained). Clients choose by
name only, so a remote client can never make the server open an arbitrary path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from swansphere.errors import InputError
from swansphere.serve.types import ModelNotFoundError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    spec: str
    is_default: bool
    loaded: bool


def parse_model_option(text: str) -> tuple[str, str]:
    """``NAME=SPEC`` or a bare SPEC (named after itself) -> (name, spec)."""
    name, sep, spec = text.partition("=")
    if not sep:
        return text, text
    if not name or not spec:
        raise InputError(f"--model must be NAME=SPEC or SPEC, got {text!r}")
    return name, spec


def load_runtime(spec: str, device: str = "cpu", accel: str = "eager"):
    """Load the runtime of ``spec`` (see the module docstring) on ``device`` with
    ``accel`` (:mod:`swansphere.generation.accel`)."""
    from swansphere.generation import GeneratorRuntime

    if spec.startswith("random:"):
        parts = spec.split(":")
        if len(parts) > 3 or (len(parts) == 3 and not parts[2].isdigit()):
            raise InputError(f"a random model is random:PRESET[:SEED], got {spec!r}")
        seed = int(parts[2]) if len(parts) == 3 else 0
        return GeneratorRuntime.random(parts[1], seed=seed, device=device, accel=accel)
    return GeneratorRuntime.load(spec, device=device, accel=accel)


class ModelRegistry:
    """Named model specs; :meth:`runtime` loads once (thread-safe) and caches, and
    :meth:`batcher` gives the sessions of a model one shared LocDiT batcher.

    batch_sessions: False makes every session sample alone; batch_window_s: how long a
    ready patch waits for other sessions' patches (None: the default of
    :class:`swansphere.generation.SessionBatcher`).
    """

    def __init__(
        self,
        models: dict[str, str],
        default: str | None = None,
        device: str = "cpu",
        accel: str = "eager",
        batch_sessions: bool = True,
        batch_window_s: float | None = None,
    ):
        if not models:
            raise InputError("the server needs at least one model")
        self.models = dict(models)
        self.default = default or next(iter(self.models))
        if self.default not in self.models:
            raise InputError(f"default model {self.default!r} is not among {sorted(self.models)}")
        self.device, self.accel = device, accel
        self.batch_sessions = batch_sessions
        self.batch_window_s = batch_window_s
        self._runtimes: dict[str, object] = {}
        self._batchers: dict[str, object] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str) -> str:
        name = name or self.default
        if name not in self.models:
            raise ModelNotFoundError(
                f"unknown model {name!r}; this server offers: {', '.join(sorted(self.models))}"
            )
        return name

    def runtime(self, name: str = ""):
        """The loaded runtime of model ``name`` ("" = default). Raises
        :class:`ModelNotFoundError` for unknown names or bundles that cannot be loaded."""
        name = self.resolve(name)
        with self._lock:
            if name not in self._runtimes:
                try:
                    self._runtimes[name] = load_runtime(self.models[name], self.device, self.accel)
                except InputError as exc:
                    raise ModelNotFoundError(f"model {name!r} cannot be loaded: {exc}") from exc
            return self._runtimes[name]

    def batcher(self, name: str = ""):
        """The shared :class:`swansphere.generation.SessionBatcher` of model ``name``
        (created on first use), or None when batching is off. Raises like :meth:`runtime`."""
        from swansphere.generation import SessionBatcher

        if not self.batch_sessions:
            return None
        runtime = self.runtime(name)
        name = self.resolve(name)
        with self._lock:
            if name not in self._batchers:
                window = {} if self.batch_window_s is None else {"window_s": self.batch_window_s}
                self._batchers[name] = SessionBatcher(runtime, **window)
            return self._batchers[name]

    def close(self) -> None:
        """Stop the batchers' worker threads (sessions still open sample alone)."""
        with self._lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for b in batchers:
            b.close()

    def warm_up(self, name: str = "") -> float:
        """Load model ``name`` and warm it up (:meth:`GeneratorRuntime.warm_up`), so the
        first session does not pay for lazy initialisation or compilation. Returns seconds."""
        import time

        started = time.perf_counter()
        self.runtime(name).warm_up()
        return time.perf_counter() - started

    def list(self) -> list[ModelInfo]:
        return [
            ModelInfo(n, s, n == self.default, n in self._runtimes) for n, s in self.models.items()
        ]
