"""As-fast-as-possible pacing: the client's frames are the clock (serve/live.py)."""

import threading
import time
from collections import deque

import numpy as np
import pytest

from swansphere.serve.live import (
    MAX_PENDING_FRAMES,
    LiveSession,
    due_patch,
    pop_due_frames,
    queue_frame,
)
from swansphere.serve.types import AudioBlock, EncodedImage, FrameUpdate, OutputSpec, SessionSpec

PATCH_S = 4 * 1024 / 22050  # the tiny preset's patch


def _image(tag: int) -> EncodedImage:
    return EncodedImage("raw", bytes([tag]) * 3, 1, 1)


@pytest.mark.parametrize(
    ("t", "patch"), [(0.0, 0), (0.5 * PATCH_S, 0), (0.5 * PATCH_S + 1e-9, 1), (1.5 * PATCH_S, 1)]
)
def test_a_frame_is_due_before_the_first_patch_whose_midpoint_it_reaches(t, patch):
    assert due_patch(t, PATCH_S) == patch


def test_the_queue_holds_one_frame_per_patch_whatever_the_frame_rate():
    pending: deque[FrameUpdate] = deque()
    fps, n = 1000.0, 600  # 0.6 s: patches 0..3
    superseded = 0
    for i in range(n):
        caption = "rain" if i == 150 else None
        image = None if i % 7 == 3 else _image(i % 256)  # some frames carry only a head
        superseded += queue_frame(pending, FrameUpdate(i, i / fps, image, caption=caption), PATCH_S)
    assert [due_patch(f.capture_time_s, PATCH_S) for f in pending] == [0, 1, 2, 3]
    with_images = sum(i % 7 != 3 for i in range(n))
    assert superseded == with_images - len(pending)
    # What each patch gets is what it would get from the frames one by one.
    whole = deque(FrameUpdate(i, i / fps, _image(i % 256)) for i in range(n))
    for p in range(4):
        mid = (p + 0.5) * PATCH_S
        merged, caption, _ = pop_due_frames(pending, mid)
        alone, _, _ = pop_due_frames(whole, mid)
        assert merged.sequence == alone.sequence - (alone.sequence % 7 == 3)
        assert caption == ("rain" if p == 1 else None)  # 0.150 s: before patch 1's midpoint
    assert not pending


def test_first_image_is_taken_early_when_the_generator_has_none():
    pending = deque([FrameUpdate(0, 0.0, caption="wind"), FrameUpdate(1, 0.5, _image(1))])
    image, caption, _ = pop_due_frames(pending, 0.09, need_image=True)
    assert image.sequence == 1 and caption == "wind" and not pending


def _collect(session: LiveSession) -> tuple[np.ndarray, list]:
    blocks, notices = [], []
    for item in session.output():
        (blocks if isinstance(item, AudioBlock) else notices).append(item)
    return np.concatenate([b.pcm for b in blocks], axis=1), notices


def test_a_session_waits_for_the_video_and_a_still_holds_for_the_duration(runtime, make_panorama):
    """One frame and no end: nothing is generated (the next frame may still be on its
    way) and the client is told once what the session waits for; EndOfVideo then lets the
    still hold for the requested duration."""
    spec = SessionSpec(
        realtime=False, duration_s=0.5, steps=2, output=OutputSpec(format="foa", sample_rate=48000)
    )
    session = LiveSession(runtime, spec)
    try:
        rgb = make_panorama(64)
        image = EncodedImage("raw", rgb.tobytes(), rgb.shape[1], rgb.shape[0])
        assert session.submit(FrameUpdate(0, 10.0, image))
        time.sleep(1.4)
        assert session.generated_s == 0
        waiting = [n for n in session._drain() if n.level == "info"]
        assert len(waiting) == 1 and "EndOfVideo" in waiting[0].message
        session.end_video()
        audio, notices = _collect(session)
        assert audio.shape[1] == -(-24000 // 1024) * 1024  # 0.5 s in whole chunks
        assert session.generated_s == pytest.approx(0.5)
        assert not [n for n in notices if n.level != "info"]
    finally:
        session.close()


def test_ingest_waits_when_generation_is_far_behind_and_close_releases_it(runtime, make_panorama):
    """A client that sends a long video at once and does not read: generation stops at
    its bounded queue, frames stop at MAX_PENDING_FRAMES patches' worth (memory stays
    bounded, gRPC flow control takes over), and closing the session frees the sender."""
    session = LiveSession(runtime, SessionSpec(realtime=False, steps=2))
    rgb = make_panorama(64)
    image = EncodedImage("raw", rgb.tobytes(), rgb.shape[1], rgb.shape[0])
    sent = []

    def send() -> None:
        for i in range(600):  # 60 s of video at 10 fps: about 320 patches
            if not session.submit(FrameUpdate(i, i / 10, image)):
                return
            sent.append(i)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(session._pending) < MAX_PENDING_FRAMES and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert len(session._pending) == MAX_PENDING_FRAMES
        assert sender.is_alive() and len(sent) < 600
    finally:
        session.close()
    sender.join(5)
    assert not sender.is_alive()
