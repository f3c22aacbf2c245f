"""Cross-session batching of the LocDiT sampler: the Euler loops of the sessions that need
a patch at about the same time run as one batch (3 guidance rows per session,
:func:`~swansphere.generation.session.sample_patches`).

Why: on a CPU the tiny LocDiT's 20 steps per patch are bound by per-operator overhead and
by reading its weights, not by the 3 x 4 tokens of one session, so N sessions in one
forward cost little more than one (``swansphere bench stream --sessions-concurrent N``).

Threading contract: each session is driven by its own thread (the server's generation
threads). :meth:`GeneratorSession.next_chunk` announces its patch
(:meth:`SessionBatcher.patch`), runs the video tokens and the LM step in the calling
thread, hands the request to :meth:`SessionBatcher.sample` (blocking) and decodes the
result in the calling thread again. There is no worker thread: a waiting caller gathers
the next batch and samples it in its own thread for everyone in it, so batches that do not
coincide still run in parallel, as separate sessions did before. Gathering ends when every
session that announced a patch (and is not being sampled already) has handed in its
request, or ``window_s`` after it began, whichever comes first (at once when it holds a
session's first patch, so time to first chunk never waits for others); a session alone never
waits. Sessions join by calling ``next_chunk`` and leave by not calling it: the batcher
keeps no per-session state.

Failures stay per session: when a batch fails, its requests run again one by one, and only
the request that fails alone gets the exception (its session aborts the patch and can go on).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from swansphere.errors import InputError

from .session import GeneratorRuntime, PatchRequest, sample_patches

log = logging.getLogger(__name__)

# Longest a ready patch waits for the sessions still producing theirs. Sessions decoding
# their last patch come back tens of ms apart on a loaded 2-core machine: 20 ms gave mean
# batches of 1.3-1.6 for 2-3 overloaded sessions, 50 ms 1.8-2.4 (bench serve sessions).
DEFAULT_WINDOW_S = 0.05
DEFAULT_MAX_SESSIONS = 16  # sessions per batch (more wait for the next one)


class _Job:
    __slots__ = ("done", "error", "request", "result")

    def __init__(self, request: PatchRequest) -> None:
        self.request = request
        self.done = False
        self.result: torch.Tensor | None = None
        self.error: BaseException | None = None


class SessionBatcher:
    """Batches the LocDiT sampling of the sessions of one runtime (see the module docstring).

    window_s: the longest a ready request waits for other sessions' requests (s);
    max_sessions: the most sessions in one batch.
    """

    def __init__(
        self,
        runtime: GeneratorRuntime,
        window_s: float = DEFAULT_WINDOW_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s >= 0):
            raise InputError(f"batch window must be a number of seconds >= 0, got {window_s!r}")
        if not (isinstance(max_sessions, int) and max_sessions >= 1):
            raise InputError(f"max_sessions must be a positive integer, got {max_sessions!r}")
        self.runtime = runtime
        self.window_s = float(window_s)
        self.max_sessions = max_sessions
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._busy = 0  # sessions inside patch()
        self._running = 0  # requests in batches being sampled now
        self._collecting = False  # a thread is gathering the next batch
        self._closed = False
        self._batches = self._patches = self._largest = 0

    # --- session side ---------------------------------------------------------------------

    @contextmanager
    def patch(self) -> Iterator[None]:
        """The calling session is producing a patch: batches wait (up to ``window_s``) for
        its request. :meth:`GeneratorSession.next_chunk` wraps each patch in this."""
        with self._cond:
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def sample(self, request: PatchRequest) -> torch.Tensor:
        """Sample one prepared patch in the next batch: latents (1, patch_frames,
        latent_dim). Blocks until its batch has run; raises what sampling it alone raises.
        After :meth:`close` the patch is sampled alone."""
        if request.runtime is not self.runtime:
            raise ValueError("the request comes from a session of another runtime")
        job = _Job(request)
        with self._cond:
            if self._closed:
                self._running += 1
                jobs = [job]
            else:
                self._pending.append(job)
                self._cond.notify_all()  # a gathering thread counts it
                jobs = []
            while not job.done:
                if not jobs and not self._collecting and self._pending:
                    jobs = self._collect()  # this thread runs the next batch
                if jobs:
                    self._cond.release()
                    try:
                        self._execute(jobs)
                    finally:
                        self._cond.acquire()
                        self._finish(jobs)
                    jobs = []
                else:
                    self._cond.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    # --- batching (callers hold self._cond) -----------------------------------------------------

    def _collect(self) -> list[_Job]:
        """Gather the next batch: wait until every announced session not already being
        sampled has handed in its request, at most ``window_s``; not at all once a session's
        first patch is among them (its time to first chunk does not wait for others)."""
        self._collecting = True
        deadline = time.perf_counter() + self.window_s
        try:
            while not self._closed:
                expected = min(self._busy - self._running, self.max_sessions)
                left = deadline - time.perf_counter()
                urgent = any(job.request.urgent for job in self._pending)
                if len(self._pending) >= expected or left <= 0 or urgent:
                    break
                self._cond.wait(left)
            jobs = self._pending[: self.max_sessions]
            del self._pending[: self.max_sessions]
            self._running += len(jobs)
            return jobs
        finally:
            self._collecting = False
            self._cond.notify_all()  # a waiting thread may gather the batch after this one

    def _finish(self, jobs: list[_Job]) -> None:
        self._running -= len(jobs)
        for job in jobs:
            job.done = True
        self._batches += 1
        self._patches += len(jobs)
        self._largest = max(self._largest, len(jobs))
        self._cond.notify_all()

    def _execute(self, jobs: list[_Job]) -> None:
        """Sample the batch (without the lock); on failure each request alone, so that only
        the request that fails alone gets the exception."""
        try:
            results = sample_patches(self.runtime, [j.request for j in jobs])
            for job, x in zip(jobs, results, strict=True):
                job.result = x
        except BaseException as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
                return
            log.warning("a batch of %d patches failed (%s); sampling each alone", len(jobs), exc)
            for job in jobs:
                try:
                    job.result = sample_patches(self.runtime, [job.request])[0]
                except BaseException as single:
                    job.error = single

    # --- state ------------------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Batches run, patches sampled, mean and largest batch (sessions)."""
        with self._cond:
            b, p = self._batches, self._patches
            return {
                "batches": float(b),
                "patches": float(p),
                "mean_batch": p / b if b else 0.0,
                "max_batch": float(self._largest),
                "waiting": float(len(self._pending)),
                "running": float(self._running),
            }

    def close(self) -> None:
        """From now on every request is sampled alone (idempotent); requests already
        waiting run without waiting for more."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


__all__ = ["DEFAULT_MAX_SESSIONS", "DEFAULT_WINDOW_S", "SessionBatcher"]
