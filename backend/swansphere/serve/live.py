"""One live session, the engine-neutral core under every edge (gRPC, OSC).

Threads and data flow (DESIGN.md section 2)::

    edge reader ──submit()──► newest frame / caption / head (one slot each, lock)
                                   │
    generation thread ─ applies the newest inputs, next_chunk() ─► bounded patch queue
                          │ LocDiT sampling ▲                           │
                          ▼                 │                           │
                  shared SessionBatcher (one worker per model)          │
                                                                        │
    edge writer ◄── output(): resample, render with the *newest* head, encode ◄┘

- Each session's generation thread runs its video tokens, LM step and VAE decode itself;
  the LocDiT sampling of a patch goes to the model's shared
  :class:`~swansphere.generation.SessionBatcher` (when the edge passes one), which runs
  the patches of all sessions ready at about the same time as one batch. A failure in a
  batch is retried per session, so it reaches only the session that caused it.

- Ingest only validates (image header, sequence and time order, quaternion) and keeps the
  newest frame; a frame replaced before the next patch used it is counted as superseded
  and never decoded. 30-120 fps in, one frame per patch used.
- As fast as possible (offline rendering, ``realtime=False``): the client's capture times
  are the clock, so the result depends only on what was sent, never on when. Frames wait
  in order in a :class:`DueFrames`, merged to one per patch (with ``MAX_PENDING_FRAMES``
  images or captions, or ``MAX_PENDING_HEADS`` poses waiting, ingest blocks, which pushes
  back on the client; never while there is nothing to generate from); before each patch,
  those captured by its midpoint are applied, and the patch waits until a frame from its
  end on, or the end of the video, makes it certain. Head poses apply to the blocks from
  their capture time on. The stream equals :func:`generate_file` (the Generate call),
  which conditions its patches through the same :class:`DueFrames`.
- Generation runs ahead of playback by at most ``queue_patches`` patches; a full queue
  blocks it (backpressure): a client that stops reading stops generation, not the server.
- Real-time pacing: block n leaves at ``t0 + n * block / rate`` (``lead_s`` before it
  plays at the client) and is rendered at that moment with the newest head orientation,
  so head tracking lags by one block plus the lead, never by a generated patch. A block
  ready after its play time is an underrun (the clock is re-anchored); after a client
  stall longer than the lead, stale buffered audio is dropped and counted.
- :meth:`close` (any thread, idempotent) stops both loops and frees the generator state.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from swansphere.errors import InputError
from swansphere.foa.rotation import normalize_quaternion
from swansphere.generation.conditioning import video_end_s
from swansphere.serve.images import decode_image, probe_image
from swansphere.serve.memory import trim
from swansphere.serve.metrics import Metrics
from swansphere.serve.render import OutputRenderer
from swansphere.serve.types import (
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    AudioBlock,
    EncodedImage,
    FrameUpdate,
    Notice,
    SessionSpec,
)

log = logging.getLogger(__name__)

_FINISHED = object()
MAX_PENDING_NOTICES = 256
MAX_PENDING_FRAMES = 32  # images/captions an as-fast session holds ahead of generation
#: Head poses an as-fast session holds ahead of its output (one per output block). More
#: block the client while audio can be generated; while there is nothing to generate
#: from, the oldest is dropped instead (with a warning), so poses cannot stall a session.
MAX_PENDING_HEADS = 4096
FRAME_WAIT_NOTICE_S = 1.0  # as fast as possible: say so once generation waits this long
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16)  # sessions per LocDiT batch
#: The first chunk's stages, in order (Stats.ttfc_split_ms, which they sum to ttfc_ms).
TTFC_STAGES = ("wait", "conditioning", "generate", "handoff", "render")
#: The parts of its "generate" stage (the rest of it is the session's own bookkeeping).
TTFC_GENERATE_PARTS = ("generate_video", "generate_lm", "generate_dit", "generate_decode")


def ttfc_stage_metric(stage: str) -> str:
    """The histogram (seconds) of one :data:`TTFC_STAGES` stage or
    :data:`TTFC_GENERATE_PARTS` part."""
    return f"swansphere_ttfc_{stage}_seconds"


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else 0.0


def _says(caption: str | None) -> bool:
    """Whether a caption gives the generator something (not None, empty or blank)."""
    return bool(caption and caption.strip())


def _first_at_or_after(time_s: float, at: Callable[[int], float], guess: float) -> int:
    """The smallest i >= 0 with ``time_s <= at(i)`` (``at`` increasing), from a ``guess``
    near it: stepping settles it in ``at``'s own float sums, which are those the session
    computes its patch and block times with, so a frame on a boundary lands as there."""
    i = max(0, math.ceil(guess))
    while time_s > at(i):
        i += 1
    while i > 0 and time_s <= at(i - 1):
        i -= 1
    return i


def due_patch(capture_time_s: float, patch_s: float) -> int:
    """The first patch whose midpoint is at or after a frame's capture time: the patch it
    is applied before (patch p spans [p, p + 1) * patch_s; times in seconds)."""
    return _first_at_or_after(
        capture_time_s, lambda p: p * patch_s + 0.5 * patch_s, capture_time_s / patch_s - 0.5
    )


def first_block(capture_time_s: float, block: int, rate: int) -> int:
    """The first output block (``block`` samples at ``rate`` Hz) starting at or after a
    head pose's capture time: the block it is applied from."""
    return _first_at_or_after(
        capture_time_s, lambda k: k * block / rate, capture_time_s * rate / block
    )


class DueFrames:
    """Frames waiting for the patch they condition, in capture order (times in seconds
    from the first frame): what an as-fast-as-possible session and whole-file generation
    share, so that both condition every patch alike.

    A patch uses the newest image and the newest caption captured by its midpoint.
    Patches before the first input (no image or caption yet, or every one so far
    refused) use the first patch's that has one, as
    :func:`~swansphere.generation.conditioning.patch_frame_index` gives patches before
    the first frame the first frame.
    """

    def __init__(self, patch_s: float) -> None:
        self.patch_s = patch_s
        self.frames: deque[FrameUpdate] = deque()
        self.through_s = -math.inf  # the latest midpoint popped through (early takes too)

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: FrameUpdate) -> int:
        """Queue a frame's image and caption (a frame with neither carries nothing here),
        merged into the last frame when both are due before the same patch (that patch
        uses only the newest image and caption), so one frame per patch waits whatever
        the frame rate. Returns the images this superseded (0 or 1)."""
        if frame.image is None and frame.caption is None:
            return 0
        last = self.frames[-1] if self.frames else None
        if last is None or due_patch(last.capture_time_s, self.patch_s) != due_patch(
            frame.capture_time_s, self.patch_s
        ):
            self.frames.append(frame)
            return 0
        caption = frame.caption if frame.caption is not None else last.caption
        self.frames[-1] = replace(frame if frame.image is not None else last, caption=caption)
        return int(frame.image is not None and last.image is not None)

    @property
    def has_input(self) -> bool:
        """Whether a waiting frame carries an image or a caption (a pose alone is not)."""
        return any(f.image is not None or _says(f.caption) for f in self.frames)

    def take(
        self, mid_s: float, starting: bool = False
    ) -> tuple[FrameUpdate | None, str | None, int]:
        """The inputs of the patch whose midpoint is ``mid_s``: pop the frames captured by
        then and return the newest image frame (or None), the newest caption (None: none
        sent; "" clears it) and how many images were superseded. ``starting``: the
        generator has nothing to generate from yet; if nothing due gives it something,
        the inputs of the first patch that has any are taken early. Frames still due by
        an earlier take's midpoint (arriving late) join the next take. Blank captions
        waiting while starting with no input behind them are dropped (no-ops)."""
        image, caption, superseded = self._pop(max(mid_s, self.through_s))
        self.through_s = max(self.through_s, mid_s)
        if starting and image is None and not _says(caption):
            first = next((f for f in self.frames if f.image is not None or _says(f.caption)), None)
            if first is None:
                # Only blank captions wait: clearing a caption while there is nothing to
                # generate from changes nothing, so they go (and cannot fill the queue).
                self.frames.clear()
            else:
                patch = due_patch(first.capture_time_s, self.patch_s)
                self.through_s = patch * self.patch_s + 0.5 * self.patch_s
                image, later, more = self._pop(self.through_s)
                caption = later if later is not None else caption
                superseded += more
        return image, caption, superseded

    @property
    def certain_from_s(self) -> float:
        """The capture time from which a frame makes the inputs taken so far final: the
        end of the latest patch popped through (an early take's included)."""
        return self.through_s + 0.5 * self.patch_s

    def _pop(self, mid_s: float) -> tuple[FrameUpdate | None, str | None, int]:
        image, caption, superseded = None, None, 0
        while self.frames and self.frames[0].capture_time_s <= mid_s:
            frame = self.frames.popleft()
            if frame.image is not None:
                superseded += image is not None
                image = frame
            if frame.caption is not None:
                caption = frame.caption
        return image, caption, superseded


def check_frame(
    update: FrameUpdate, last_sequence: int | None, last_capture_s: float | None
) -> tuple[EncodedImage | None, np.ndarray | None, str | None]:
    """Check a client frame against the last accepted one: its image header (probed, not
    decoded), head and view quaternions, field of view, scene objects. Returns (image,
    normalised head, caption: the frame's, or its scene objects captioned). Raises
    :class:`InputError` naming the first problem; the whole frame is then refused."""
    seq = update.sequence
    if last_sequence is not None and seq <= last_sequence:
        kind = "repeated" if seq == last_sequence else "out of order"
        raise InputError(
            f"frame sequence {seq} is {kind} (last accepted: {last_sequence}); "
            "sequence numbers must increase"
        )
    t = update.capture_time_s
    if not math.isfinite(t):
        raise InputError(f"capture time must be finite, got {t}")
    if last_capture_s is not None and t < last_capture_s:
        raise InputError(
            f"capture time {t:.6f} s is before the previous frame's {last_capture_s:.6f} s"
        )
    image = None
    if update.image is not None:
        image = probe_image(update.image, equirect=update.view is None)
    head = None if update.head is None else normalize_quaternion(update.head)
    if update.view is not None:
        normalize_quaternion(update.view.orientation)
        hfov = update.view.hfov_deg
        if not (math.isfinite(hfov) and 0 < hfov < 180):
            raise InputError(f"hfov_deg must be in (0, 180) degrees, got {hfov}")
    caption = update.caption
    if update.objects is not None:
        from swansphere.captions import caption_scene_objects

        caption = caption_scene_objects(list(update.objects), duration_s=update.horizon_s)
    return image, head, caption


def feed_image(gen, frame: FrameUpdate, canvas_width: int) -> None:
    """Decode a frame's image and hand it to a generator session at its capture time
    (equirectangular, or a field of view with its camera orientation). Raises
    :class:`InputError` for an image that does not decode."""
    rgb = decode_image(frame.image, max_width=canvas_width)
    if frame.view is None:
        gen.set_panorama(rgb, frame.capture_time_s)
    else:
        gen.set_view(rgb, frame.view.orientation, frame.view.hfov_deg, frame.capture_time_s)


class LiveSession:
    """Frames, captions and head poses in (any thread); rendered audio blocks out.

    runtime: a :class:`swansphere.generation.GeneratorRuntime`; batcher: that runtime's
    shared :class:`swansphere.generation.SessionBatcher`, or None to sample alone. Raises
    :class:`InputError` for a bad spec (format, rate, HRTF, caption, generation settings).
    """

    def __init__(
        self,
        runtime,
        spec: SessionSpec,
        session_id: str = "",
        metrics: Metrics | None = None,
        queue_patches: int = 2,
        clock=time.monotonic,
        batcher=None,
    ) -> None:
        from swansphere.generation import SessionConfig

        self.spec = spec
        self.session_id = session_id
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.gen = runtime.session(
            SessionConfig(
                seed=spec.seed,
                steps=spec.steps,
                guidance_text=spec.guidance_text,
                guidance_video=spec.guidance_video,
                duration_s=spec.duration_s,
            ),
            batcher,
        )
        try:
            self.renderer = OutputRenderer(spec.output, self.gen.sample_rate, spec.head)
            if spec.caption:
                self.gen.set_caption(spec.caption)
        except BaseException:
            self.gen.close()
            raise
        self.canvas_width = runtime.canvas_size[1]
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_patches))
        # Bounded so a flooding client cannot grow server memory; what falls off the
        # front is counted and reported in one summary notice (nothing vanishes silently).
        self._notices: deque[Notice] = deque(maxlen=MAX_PENDING_NOTICES)
        self._notices_lock = threading.Lock()
        self._notices_evicted = 0
        # Newest inputs, consumed by the generation thread.
        self._frame: FrameUpdate | None = None
        # As fast as possible: frames not yet due (capture order, times from the first
        # frame) and head poses not yet rendered ((time, quaternion)).
        self._pending = DueFrames(self.gen.patch_seconds)
        self._heads: deque[tuple[float, np.ndarray]] = deque()  # one per output block
        self._image_times: deque[float] = deque(maxlen=16)  # where the video ends
        self._newest_time: float | None = None  # of the newest frame, from the first
        self._told_waiting = False
        self._told_heads_dropped = False
        self._caption: str | None = None
        self._caption_set = False
        self._end = False
        self._has_input = bool(spec.caption)
        self._fed = _says(spec.caption)  # the generator has input
        self._head = None if spec.head is None else normalize_quaternion(spec.head)
        self._last_sequence: int | None = None
        self._last_capture: float | None = None
        self._first_capture: float | None = None
        # Statistics.
        self._created = clock()
        self._first_input: float | None = clock() if spec.caption else None
        self.ttfc_s: float | None = None
        # Where the first chunk's time went (Stats.ttfc_split_ms): the clock() marks the
        # generation thread leaves for the writer, then the split the writer computes.
        self._first_patch: dict[str, float] | None = None
        self._first_taken: float | None = None
        self.ttfc_split_ms: dict[str, float] = {}
        self.generated_s = 0.0
        self.generation_time_s = 0.0
        self.counts = dict.fromkeys(
            (
                "frames_received",
                "frames_superseded",
                "frames_rejected",
                "underruns",
                "chunks_sent",
                "chunks_dropped",
            ),
            0,
        )
        self._ingest_ms: deque[float] = deque(maxlen=4096)
        self.blocked_since: float | None = None  # clock() while the edge holds a block
        self.metrics.add("swansphere_sessions_active", 1, "sessions open now")
        self.metrics.inc("swansphere_sessions_total", 1, "sessions opened")
        self._worker = threading.Thread(
            target=self._generate, name=f"gen-{session_id}", daemon=True
        )
        self._worker.start()

    # --- properties ------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.spec.output.sample_rate

    @property
    def channels(self) -> int:
        return self.renderer.channels

    @property
    def layout(self) -> tuple[str, ...]:
        return self.renderer.layout

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    # --- input (edge reader thread) ----------------------------------------------------

    def notify(self, notice: Notice) -> None:
        """Queue a notice for the client (it goes out with the audio stream).

        With ``MAX_PENDING_NOTICES`` already waiting, the oldest is evicted and counted;
        the client then gets a ``RESOURCE_EXHAUSTED`` notice saying how many it missed.
        """
        with self._notices_lock:
            if len(self._notices) == self._notices.maxlen:
                self._notices_evicted += 1
            self._notices.append(notice)
        if notice.level != "info":
            log.info("session %s: %s %s", self.session_id, notice.code, notice.message)

    def reject(self, message: str, sequence: int | None = None, code: str = INVALID_ARGUMENT):
        """Count a rejected frame and tell the client why."""
        self.counts["frames_rejected"] += 1
        self.metrics.inc("swansphere_frames_rejected_total", 1, "frames refused (bad input)")
        self.notify(Notice("warning", code, message, sequence))

    def submit(self, update: FrameUpdate, received_at: float | None = None) -> bool:
        """Take one client frame; returns False (and queues a notice) if it was refused.

        The whole frame is refused when any part is bad: a sequence number not above the
        previous one, a capture time before the previous one, an unreadable or misshapen
        image, a NaN or zero quaternion, a bad scene object. ``received_at``
        (``time.perf_counter()`` when the edge got the message) makes the ingest timing
        include the edge's decoding.
        """
        started = time.perf_counter() if received_at is None else received_at
        seq = update.sequence
        if self._stop.is_set():
            return False
        self.counts["frames_received"] += 1
        self.metrics.inc("swansphere_frames_received_total", 1, "frames received")
        try:
            image, head, caption = check_frame(update, self._last_sequence, self._last_capture)
        except InputError as exc:
            self.reject(str(exc), seq)
            return False
        t = update.capture_time_s
        with self._wake:
            if not self.spec.realtime:
                carries = image is not None or caption is not None
                while not self._stop.is_set() and self._ingest_waits(carries, head is not None):
                    self._wake.wait(0.1)
            if self._stop.is_set():
                return False
            self._last_sequence = seq
            self._last_capture = t
            if self._first_capture is None:
                self._first_capture = t
            rel = t - self._first_capture
            self._newest_time = rel
            frame = FrameUpdate(seq, rel, image, update.view, caption=caption)
            if image is not None:
                self._image_times.append(rel)
            if self.spec.realtime:
                if head is not None:
                    self._head = head
                self._take(frame if image is not None else None, caption)
            else:
                if head is not None:
                    self._queue_head(rel, head)
                self._take(None, None, self._pending.add(frame))
            if image is not None or caption is not None:
                if self._first_input is None:
                    self._first_input = self.clock()
                self._has_input = True
            self._wake.notify_all()
        elapsed = time.perf_counter() - started
        self._ingest_ms.append(1e3 * elapsed)
        self.metrics.observe("swansphere_ingest_seconds", elapsed, "per-frame ingest time")
        return True

    def _ingest_waits(self, carries_input: bool, carries_head: bool) -> bool:
        """As fast as possible (lock held), backpressure: images and captions wait for
        generation to catch up, poses for the output, but only while there is something
        to generate from, so that poses sent before the first input cannot stall it."""
        if carries_input and len(self._pending) >= MAX_PENDING_FRAMES:
            return True
        return carries_head and len(self._heads) >= MAX_PENDING_HEADS and not self._starving()

    def _queue_head(self, time_s: float, head: np.ndarray) -> None:
        """As fast as possible (lock held): a head pose for the blocks from its capture
        time on; only the newest before each block counts, so one waits per block."""
        block, rate = self.renderer.block, self.sample_rate
        if self._heads and first_block(self._heads[-1][0], block, rate) == first_block(
            time_s, block, rate
        ):
            self._heads.pop()
        elif len(self._heads) >= MAX_PENDING_HEADS:  # only while nothing can be generated
            self._heads.popleft()
            if not self._told_heads_dropped:
                self._told_heads_dropped = True
                self.notify(
                    Notice(
                        "warning",
                        "RESOURCE_EXHAUSTED",
                        f"more than {MAX_PENDING_HEADS} head poses ahead of the audio while "
                        "there is no image or caption to generate from: the oldest dropped",
                    )
                )
        self._heads.append((time_s, head))

    def _take(self, frame: FrameUpdate | None, caption: str | None, superseded: int = 0) -> None:
        """Into the input slots (lock held): the newest image frame (one still waiting is
        superseded: it is never decoded) and the newest caption (None: unchanged)."""
        if frame is not None:
            superseded += self._frame is not None
            self._frame = frame
        if superseded:
            self.counts["frames_superseded"] += superseded
            self.metrics.inc(
                "swansphere_frames_superseded_total", superseded, "frames replaced before use"
            )
        if caption is not None:
            self._caption, self._caption_set = caption, True

    def set_head(self, quat: np.ndarray) -> None:
        """The listener's newest head orientation (w, x, y, z); used from the next block."""
        q = normalize_quaternion(quat)
        with self._lock:
            self._head = q

    def set_caption(self, text: str | None) -> None:
        """Caption from the next patch on (None or "" removes it)."""
        with self._wake:
            self._caption, self._caption_set = text or "", True
            if text:
                if self._first_input is None:
                    self._first_input = self.clock()
                self._has_input = True
            self._wake.notify_all()

    def end_video(self) -> None:
        """No more frames: generation finishes (the model's stop condition)."""
        with self._wake:
            self._end = True
            self._wake.notify_all()

    # --- generation thread --------------------------------------------------------------

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                if item is not _FINISHED and not isinstance(item, _Failure):
                    self.metrics.add("swansphere_queue_depth", 1, "patches waiting for playback")
                return True
            except queue.Full:
                continue
        return False

    def _starving(self) -> bool:
        """Nothing to generate from (lock held): no input fed or waiting in the slots."""
        return (
            not self._fed
            and self._frame is None
            and not (self._caption_set and _says(self._caption))
        )

    def _await_due_frames(self) -> None:
        """As fast as possible, before each patch: move the frames captured by its midpoint
        into the input slots (:class:`DueFrames`), and wait until the patch is certain: a
        frame from its end on has arrived, so no later image, caption or end of video can
        fall inside it (and, with nothing to generate from yet, a frame with an input to
        take early); or the video has ended."""
        mid = self.gen.time_s + 0.5 * self.gen.patch_seconds
        end = self.gen.time_s + self.gen.patch_seconds
        since = self.clock()
        with self._wake:
            while not self._stop.is_set():
                image, caption, superseded = self._pending.take(mid, self._starving())
                if image is not None or caption is not None:
                    self._take(image, caption, superseded)
                    self._wake.notify_all()  # room for a blocked ingest
                newest = self._newest_time
                certain = max(end, self._pending.certain_from_s)
                if self._end or (newest is not None and newest >= certain and not self._starving()):
                    return
                if not self._told_waiting and self.clock() - since > FRAME_WAIT_NOTICE_S:
                    self._told_waiting = True  # once: a client that forgot EndOfVideo
                    self.notify(
                        Notice(
                            "info",
                            "OK",
                            f"waiting for a frame captured at {end:.3f} s or later, or "
                            "EndOfVideo: with as-fast-as-possible pacing the frames are the "
                            "clock",
                        )
                    )
                self._wake.wait(0.1)

    def _idle_unless_pending(self) -> None:
        """Nothing could be generated: wait for new input, unless some is already queued."""
        with self._wake:
            if self._frame is None and not self._caption_set and not self._pending.has_input:
                self._has_input = False

    def _apply_inputs(self) -> None:
        with self._wake:
            frame, self._frame = self._frame, None
            caption, caption_set, self._caption_set = self._caption, self._caption_set, False
            end = self._end
            # One frame interval after the last image, or the last frame of any kind if
            # later: generation never runs past the newest frame before the end is known.
            ends = [video_end_s(self._image_times, self.gen.patch_seconds), self._newest_time]
            end_at = max((e for e in ends if e is not None), default=None)
        if frame is not None:
            try:
                feed_image(self.gen, frame, self.canvas_width)
                self._fed = True
            except InputError as exc:
                self.reject(str(exc), frame.sequence)
        if caption_set:
            try:
                self.gen.set_caption(caption or None)
                self._fed = self._fed or _says(caption)
            except InputError as exc:
                self.notify(Notice("warning", INVALID_ARGUMENT, f"caption refused: {exc}"))
        if end and not self.gen.finished:
            try:
                self.gen.end_video(end_at)
            except InputError as exc:
                self.notify(Notice("warning", FAILED_PRECONDITION, str(exc)))

    def _generate(self) -> None:
        try:
            while not self._stop.is_set():
                with self._wake:
                    while not (self._has_input or self._end or self._stop.is_set()):
                        self._wake.wait(0.1)
                if self._stop.is_set():
                    break
                if not self.spec.realtime:
                    self._await_due_frames()
                    if self._stop.is_set():
                        break
                woke = self.clock()
                self._apply_inputs()
                applied = self.clock()
                if self.gen.finished or (self._end and not self._has_input):
                    self._put(_FINISHED)
                    break
                if not self._fed:  # every input so far was refused at decode time
                    self._idle_unless_pending()
                    continue
                started = time.perf_counter()
                try:
                    chunk = self.gen.next_chunk()
                except InputError as exc:  # e.g. the caption was removed and there is no frame
                    self.notify(Notice("warning", FAILED_PRECONDITION, str(exc)))
                    self._fed = False
                    self._idle_unless_pending()
                    continue
                elapsed = time.perf_counter() - started
                if chunk is None:
                    self._put(_FINISHED)
                    break
                if self._first_patch is None:
                    parts = self.gen.stats
                    self._first_patch = {
                        "woke": woke,
                        "applied": applied,
                        "generated": self.clock(),
                        **{
                            part: 1e-3 * parts.get(part.removeprefix("generate_") + "_ms", 0.0)
                            for part in TTFC_GENERATE_PARTS
                        },
                    }
                if self.spec.duration_s is not None:
                    left = round((self.spec.duration_s - self.generated_s) * self.gen.sample_rate)
                    chunk = chunk[:, : max(0, left)]
                self.generation_time_s += elapsed
                self.generated_s += chunk.shape[1] / self.gen.sample_rate
                self.metrics.observe("swansphere_patch_seconds", elapsed, "generation per patch")
                self.metrics.observe(
                    "swansphere_patch_batch_sessions",
                    self.gen.stats.get("batch", 1.0),
                    "sessions sampled together per patch",
                    BATCH_BUCKETS,
                )
                self.metrics.set("swansphere_rtf", self.rtf, "last session's generation RTF")
                if not np.all(np.isfinite(chunk)):
                    self.notify(Notice("error", INTERNAL, "the model produced NaN/Inf: silenced"))
                    chunk = np.zeros_like(chunk)
                for text in self.gen.warnings:
                    self.notify(Notice("warning", INVALID_ARGUMENT, text))
                self.gen.warnings.clear()
                if not self._put(chunk):
                    break
                limit = self.spec.duration_s
                if limit is not None and self.generated_s >= limit - 0.5 / self.gen.sample_rate:
                    self._put(_FINISHED)
                    break
        except Exception as exc:
            log.exception("session %s: generation failed", self.session_id)
            self._put(_Failure(exc))
        finally:
            self.gen.close()

    @property
    def rtf(self) -> float:
        """Generation time per second of audio (below 1 keeps up with real time)."""
        return self.generation_time_s / self.generated_s if self.generated_s else 0.0

    # --- output (edge writer thread) ----------------------------------------------------

    def _get(self, timeout: float):
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is not _FINISHED and not isinstance(item, _Failure):
            self.metrics.add("swansphere_queue_depth", -1)
        return item

    def _drain(self) -> Iterator[Notice]:
        with self._notices_lock:
            pending, evicted = list(self._notices), self._notices_evicted
            self._notices.clear()
            self._notices_evicted = 0
        if evicted:
            yield Notice(
                "warning",
                "RESOURCE_EXHAUSTED",
                f"{evicted} earlier notice(s) dropped: more than {MAX_PENDING_NOTICES} "
                "were waiting to be sent",
            )
        yield from pending

    def _sleep_until(self, deadline: float) -> Iterator[Notice]:
        while not self._stop.is_set():
            yield from self._drain()
            left = deadline - self.clock()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.02))

    def _await_heads(self, block_s: float) -> Iterator[Notice]:
        """As fast as possible: wait until every head pose captured by ``block_s`` (the
        block's start, seconds of audio) is known, and make the newest of them current."""
        while not self._stop.is_set():
            yield from self._drain()
            with self._wake:
                newest = self._newest_time
                if self._end or (newest is not None and newest > block_s):
                    while self._heads and self._heads[0][0] <= block_s:
                        self._head = self._heads.popleft()[1]
                    self._wake.notify_all()  # room for a blocked ingest
                    return
                self._wake.wait(0.02)

    def output(self) -> Iterator[AudioBlock | Notice]:
        """Rendered blocks and notices until the session finishes or is closed.

        Raises the generation thread's exception if it failed (the edge reports INTERNAL).
        """
        realtime, lead = self.spec.realtime, self.spec.lead_s
        block_s = self.renderer.block / self.sample_rate
        sequence = offset = 0
        t0: float | None = None
        finished = False
        while not self._stop.is_set():
            yield from self._drain()
            if self.renderer.ready() == 0:
                if finished:
                    break
                item = self._get(0.02)
                if item is None:
                    continue
                if item is _FINISHED:
                    self.renderer.flush()
                    finished = True
                elif isinstance(item, _Failure):
                    raise item.exc
                else:
                    if self._first_taken is None:
                        self._first_taken = self.clock()
                    self.renderer.push(item)
                continue
            if realtime:
                now = self.clock()
                due = offset / self.sample_rate
                if t0 is None:
                    t0 = now - due
                elif now > t0 + due + lead:  # would reach the client after its play time
                    late = now - (t0 + due + lead)
                    t0 = now - due
                    self.counts["underruns"] += 1
                    self.metrics.inc("swansphere_underruns_total", 1, "blocks later than play time")
                    self.notify(
                        Notice(
                            "warning", "UNDERRUN", f"audio {1e3 * late:.0f} ms late at {due:.2f} s"
                        )
                    )
                yield from self._sleep_until(t0 + due)
            else:
                yield from self._await_heads(offset / self.sample_rate)
            with self._lock:
                head = self._head
            if head is not None:
                self.renderer.set_head(head)
            pcm = self.renderer.render()
            if self.ttfc_s is None:
                rendered = self.clock()
                start = self._first_input or self._created
                self.ttfc_s = rendered - start
                self.metrics.observe("swansphere_ttfc_seconds", self.ttfc_s, "first frame to audio")
                self._split_first_chunk(start, rendered)
            handed = self.clock()
            self.blocked_since = handed
            yield AudioBlock(sequence, offset, pcm)
            self.blocked_since = None
            stalled = self.clock() - handed
            sequence += 1
            offset += self.renderer.block
            self.counts["chunks_sent"] += 1
            self.metrics.inc("swansphere_chunks_sent_total", 1, "audio chunks sent")
            if realtime and stalled > max(lead, 2 * block_s):
                dropped = self.renderer.discard()
                while (item := self._get(0)) is not None:
                    if item is _FINISHED or isinstance(item, _Failure):
                        self._queue.put(item)
                        break
                    out_samples = item.shape[1] * self.sample_rate / self.gen.sample_rate
                    dropped += max(1, round(out_samples / self.renderer.block))
                self.counts["chunks_dropped"] += dropped
                self.metrics.inc("swansphere_chunks_dropped_total", dropped, "stale chunks dropped")
                t0 = None
                self.notify(
                    Notice(
                        "warning",
                        "RESOURCE_EXHAUSTED",
                        f"client stopped reading for {stalled:.2f} s; "
                        f"{dropped} stale chunk(s) dropped",
                    )
                )
        yield from self._drain()

    def _split_first_chunk(self, start: float, rendered: float) -> None:
        """Fill :attr:`ttfc_split_ms` (Stats.ttfc_split_ms: stages that sum to ttfc_ms, and
        the parts of "generate") and observe each stage in a ``swansphere_ttfc_*_seconds``
        histogram. ``start``: the first input's clock(); ``rendered``: the first block's."""
        marks, taken = self._first_patch, self._first_taken
        if marks is None or taken is None:  # e.g. a chunk cut to nothing: nothing to split
            return
        edges = (start, marks["woke"], marks["applied"], marks["generated"], taken, rendered)
        split = {name: edges[i + 1] - edges[i] for i, name in enumerate(TTFC_STAGES)}
        split.update({part: marks[part] for part in TTFC_GENERATE_PARTS})
        for name, seconds in split.items():
            self.metrics.observe(ttfc_stage_metric(name), seconds, f"first chunk: {name}")
        self.ttfc_split_ms = {name: 1e3 * seconds for name, seconds in split.items()}

    # --- stats and teardown ---------------------------------------------------------------

    def stats(self) -> dict:
        return {
            "ttfc_ms": 1e3 * self.ttfc_s if self.ttfc_s is not None else 0.0,
            "ttfc_split_ms": dict(self.ttfc_split_ms),
            "rtf": self.rtf,
            "queue_depth": self._queue.qsize(),
            **self.counts,
            "audio_s": self.generated_s,
            "ingest_p50_ms": _percentile(self._ingest_ms, 50),
            "ingest_p99_ms": _percentile(self._ingest_ms, 99),
        }

    def close(self, timeout: float = 10.0) -> None:
        """Stop generation and output, free the generator state. Idempotent, any thread;
        waits up to ``timeout`` s for the generation thread (0: do not wait)."""
        with self._lock:
            first = not self._stop.is_set()
            self._stop.set()
            self._wake.notify_all()
        if timeout and threading.current_thread() is not self._worker:
            self._worker.join(timeout)
        if first:
            while self._get(0) is not None:
                pass
            self.metrics.add("swansphere_sessions_active", -1)
        if not self._worker.is_alive():
            trim()


def generate_file(
    runtime, spec: SessionSpec, frames: list[FrameUpdate], duration_s: float
) -> tuple[np.ndarray, list[Notice], dict]:
    """Whole-file generation: audio for ``duration_s`` seconds, each patch conditioned on
    the newest image and caption captured by its midpoint (times from the first frame;
    the last frame holds to the end), rendered with each frame's head orientation from
    its capture time on: what an as-fast-as-possible :class:`LiveSession` streams.

    Returns (pcm (channels, n) float32 at the output rate, notices about refused frames,
    stats). Pacing is ignored.
    """
    from swansphere.generation import SessionConfig

    if not (math.isfinite(duration_s) and 0 < duration_s <= 60):
        raise InputError(f"duration_s must be in (0, 60] seconds, got {duration_s}")
    gen = runtime.session(
        SessionConfig(spec.seed, spec.steps, spec.guidance_text, spec.guidance_video, duration_s)
    )
    notices: list[Notice] = []
    heads: list[tuple[float, np.ndarray]] = []
    started = time.perf_counter()
    try:
        renderer = OutputRenderer(spec.output, gen.sample_rate, spec.head)
        if spec.caption:
            gen.set_caption(spec.caption)
        first = last_seq = last_t = None
        width = runtime.canvas_size[1]
        pending = DueFrames(gen.patch_seconds)
        for f in frames:  # checked as a session checks them, times from the first accepted
            try:
                image, head, caption = check_frame(f, last_seq, last_t)
            except InputError as exc:
                notices.append(Notice("warning", INVALID_ARGUMENT, str(exc), f.sequence))
                continue
            first = f.capture_time_s if first is None else first
            t = f.capture_time_s - first
            if head is not None:
                heads.append((t, head))
            pending.add(FrameUpdate(f.sequence, t, image, f.view, caption=caption))
            last_seq, last_t = f.sequence, f.capture_time_s
        blocks: list[np.ndarray] = []
        rate, block = spec.output.sample_rate, renderer.block
        n_out = round(duration_s * rate)
        head_index, fed, generated = 0, _says(spec.caption), False

        def render_ready() -> None:
            nonlocal head_index
            while renderer.ready():
                t = len(blocks) * block / rate
                while head_index < len(heads) and heads[head_index][0] <= t:
                    renderer.set_head(heads[head_index][1])
                    head_index += 1
                blocks.append(renderer.render())

        while True:
            mid = gen.time_s + 0.5 * gen.patch_seconds
            image, caption, _ = pending.take(mid, starting=not fed)
            if image is not None:
                try:
                    feed_image(gen, image, width)
                    fed = True
                except InputError as exc:
                    notices.append(Notice("warning", INVALID_ARGUMENT, str(exc), image.sequence))
            if caption is not None:
                try:
                    gen.set_caption(caption or None)
                    fed = fed or _says(caption)
                except InputError as exc:
                    notices.append(Notice("warning", INVALID_ARGUMENT, f"caption refused: {exc}"))
            if not fed and pending.has_input:
                continue  # everything so far was refused: the next input starts the audio
            try:
                chunk = gen.next_chunk()
            except InputError as exc:  # e.g. the caption was cleared and there is no image
                if not generated and not pending.has_input:
                    raise  # nothing at all to generate from: the call fails, naming it
                notices.append(Notice("warning", FAILED_PRECONDITION, str(exc)))
                fed = False
                if pending.has_input:
                    continue
                break  # as a session does: its audio ends here
            if chunk is None:
                break
            generated = True
            renderer.push(chunk)
            render_ready()
        renderer.flush()  # the resampler's tail, zero-padded to a whole block
        render_ready()
        pcm = (
            np.concatenate(blocks, axis=1)[:, :n_out]
            if blocks
            else np.zeros((renderer.channels, 0))
        )
    finally:
        gen.close()
    elapsed = time.perf_counter() - started
    return pcm, notices, {"rtf": elapsed / duration_s, "audio_s": duration_s}
