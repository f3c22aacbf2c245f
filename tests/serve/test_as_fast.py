"""As-fast-as-possible pacing: the client's frames are the clock (serve/live.py)."""

import threading
import time

import numpy as np
import pytest

from swansphere.serve.live import (
    MAX_PENDING_FRAMES,
    MAX_PENDING_HEADS,
    DueFrames,
    LiveSession,
    due_patch,
    first_block,
    generate_file,
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


@pytest.mark.parametrize(("t", "block"), [(0.0, 0), (1024 / 48000, 1), (1025 / 48000, 2)])
def test_a_head_applies_from_the_first_block_starting_at_or_after_it(t, block):
    assert first_block(t, 1024, 48000) == block


def test_the_queue_holds_one_frame_per_patch_whatever_the_frame_rate():
    merged, whole = DueFrames(PATCH_S), DueFrames(PATCH_S)
    fps, n = 1000.0, 600  # 0.6 s: patches 0..3
    superseded = 0
    for i in range(n):
        caption = "rain" if i == 150 else None
        image = None if i % 7 == 3 else _image(i % 256)  # some frames carry only a head
        superseded += merged.add(FrameUpdate(i, i / fps, image, caption=caption))
        whole.frames.append(FrameUpdate(i, i / fps, image, caption=caption))  # unmerged
    assert [due_patch(f.capture_time_s, PATCH_S) for f in merged.frames] == [0, 1, 2, 3]
    assert superseded == sum(i % 7 != 3 for i in range(n)) - len(merged)
    for p in range(4):  # each patch gets what it would get from the frames one by one
        mid = (p + 0.5) * PATCH_S
        image, caption, _ = merged.take(mid)
        alone, alone_caption, _ = whole.take(mid)
        assert image.sequence == alone.sequence and caption == alone_caption
        assert caption == ("rain" if p == 1 else None)  # 0.150 s: before patch 1's midpoint
    assert not merged.frames and not whole.frames


def test_inputs_are_taken_early_only_while_there_is_nothing_to_generate_from():
    """A caption at 0 feeds patch 0: the image at 2 patches waits for its own patch, and
    the later caption merged with it does not come early. With nothing fed at all (the
    first input is that image), its patch's inputs are taken early, captions included."""
    frames = [
        FrameUpdate(0, 0.0, caption="rain"),
        FrameUpdate(1, 2.0 * PATCH_S, _image(1)),
        FrameUpdate(2, 2.2 * PATCH_S, caption="bells"),
    ]
    queue = DueFrames(PATCH_S)
    for f in frames:
        queue.add(f)
    assert queue.take(0.5 * PATCH_S, starting=True)[:2] == (None, "rain")
    assert queue.take(1.5 * PATCH_S, starting=False)[:2] == (None, None)
    image, caption, _ = queue.take(2.5 * PATCH_S)
    assert image.sequence == 1 and caption == "bells"
    late = DueFrames(PATCH_S)
    for f in frames[1:]:
        late.add(f)
    image, caption, _ = late.take(0.5 * PATCH_S, starting=True)
    assert image.sequence == 1 and caption == "bells" and not late.frames


def _collect(session: LiveSession, limit_s: float = 60.0) -> tuple[np.ndarray, list]:
    """The session's audio and notices; a session still running after ``limit_s`` (a
    deadlock) is closed and fails the test instead of hanging the suite."""
    watchdog = threading.Timer(limit_s, session.close)
    watchdog.start()
    blocks, notices = [], []
    try:
        for item in session.output():
            (blocks if isinstance(item, AudioBlock) else notices).append(item)
    finally:
        watchdog.cancel()
    assert not session.closed, f"the session was still running after {limit_s} s"
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


def _stream(
    runtime, spec: SessionSpec, frames: list[FrameUpdate], pause_s: float = 0.0
) -> tuple[LiveSession, np.ndarray, list]:
    """A session fed the frames from another thread (``pause_s`` apart), then the end of
    video: (the closed session, its audio, its notices)."""
    session = LiveSession(runtime, spec)

    def send() -> None:
        for frame in frames:
            session.submit(frame)
            time.sleep(pause_s)
        session.end_video()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        audio, notices = _collect(session)
    finally:
        session.close()
    sender.join(10)
    return session, audio, notices


def _raw(rgb: np.ndarray) -> EncodedImage:
    return EncodedImage("raw", rgb.tobytes(), rgb.shape[1], rgb.shape[0])


def _turn(yaw_deg: float) -> np.ndarray:
    half = np.deg2rad(yaw_deg) / 2
    return np.array([np.cos(half), 0.0, 0.0, np.sin(half)])


def _scenarios(make_panorama) -> dict[str, tuple[list[FrameUpdate], float, bool]]:
    """Frame sequences whose audio once depended on when they arrived (or deadlocked):
    frames, the audio's length, and whether the session is told it (else the frames end
    it)."""
    p = PATCH_S
    img = [_raw(make_panorama(64, azimuth_deg=a)) for a in (90.0, -60.0, 0.0)]
    heads_first = [FrameUpdate(i, 0.5 * p * i, head=_turn(3.0 * i)) for i in range(70)]
    texts = ("rain on a tin roof", "a dog barks on the left", "church bells behind")

    def captions_at(*patches: float) -> list[FrameUpdate]:
        pairs = zip(patches, texts, strict=True)
        return [FrameUpdate(i, t * p, caption=c) for i, (t, c) in enumerate(pairs)]

    return {
        "captions only": (captions_at(0, 1.2, 2.2), 3 * p, True),
        "captions only, no duration: the last frame ends it": (captions_at(0, 3, 6), 6 * p, False),
        "caption, then an image with a later caption": (
            [
                FrameUpdate(0, 0.0, caption="rain on a tin roof"),
                FrameUpdate(1, 2.0 * p, img[0]),
                FrameUpdate(2, 2.2 * p, caption="church bells behind"),
            ],
            4 * p,
            True,
        ),
        "an early image superseded by one arriving late": (
            [
                FrameUpdate(0, 0.0, head=_turn(10.0)),
                FrameUpdate(1, 1.0 * p, img[0]),
                FrameUpdate(2, 1.4 * p, img[1]),
                FrameUpdate(3, 3.0 * p, img[2]),
            ],
            4 * p,
            True,
        ),
        "the caption cleared before the first image": (
            [
                FrameUpdate(0, 0.0, caption="rain on a tin roof"),
                FrameUpdate(1, 2.0 * p, caption=""),
                FrameUpdate(2, 3.0 * p, img[0]),
            ],
            5 * p,
            True,
        ),
        # more head-only patches than MAX_PENDING_FRAMES before the first image
        "35 patches of head poses, then images": (
            [*heads_first, FrameUpdate(70, 35 * p, img[0]), FrameUpdate(71, 36 * p, img[1])],
            1.0,
            True,
        ),
        "40 blank captions before the first image": (
            [
                *(FrameUpdate(i, i * p, caption="" if i % 2 else " ") for i in range(40)),
                FrameUpdate(40, 40 * p, img[0]),
                FrameUpdate(41, 41 * p, img[1]),
            ],
            1.0,
            True,
        ),
        "a refused first frame": (
            [
                FrameUpdate(0, 0.0, EncodedImage("jpeg", b"not a jpeg")),
                FrameUpdate(1, 1.0, img[0], head=_turn(40.0)),
                FrameUpdate(2, 1.5, img[1], head=_turn(-40.0)),
            ],
            1.0,
            True,
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "captions only",
        "captions only, no duration: the last frame ends it",
        "caption, then an image with a later caption",
        "an early image superseded by one arriving late",
        "the caption cleared before the first image",
        "35 patches of head poses, then images",
        "40 blank captions before the first image",
        "a refused first frame",
    ],
)
def test_the_stream_depends_on_what_was_sent_not_when(runtime, make_panorama, name):
    """Sent at once or a frame every 30 ms, a session streams what generate_file (the
    Generate call) makes of the same frames."""
    frames, duration_s, told = _scenarios(make_panorama)[name]
    spec = SessionSpec(
        realtime=False,
        duration_s=duration_s if told else None,
        steps=2,
        seed=4,
        output=OutputSpec(format="foa", sample_rate=48000),
    )
    expected, _, _ = generate_file(runtime, spec, frames, duration_s)
    for pause_s in (0.0, 0.03):
        session, audio, _ = _stream(runtime, spec, frames, pause_s)
        assert audio.shape[1] >= expected.shape[1] > 0
        np.testing.assert_allclose(audio[:, : expected.shape[1]], expected, atol=1e-5)
        assert session.generated_s == pytest.approx(duration_s)


def test_poses_alone_never_queue_or_block_and_stay_bounded(runtime):
    """A client that sends only head poses (no image or caption yet): nothing waits for
    generation, ingest never blocks, and at most MAX_PENDING_HEADS poses are kept."""
    session = LiveSession(runtime, SessionSpec(realtime=False, steps=2))
    try:
        n = MAX_PENDING_HEADS + 500
        for i in range(n):  # one per 1024-sample block at 48 kHz: none merge
            assert session.submit(FrameUpdate(i, i * 1024 / 48000, head=_turn(i % 360)))
        assert len(session._pending) == 0 and len(session._heads) == MAX_PENDING_HEADS
        assert session._heads[-1][0] == pytest.approx((n - 1) * 1024 / 48000)
    finally:
        session.close()


def test_more_poses_than_it_keeps_wait_for_the_output_and_change_nothing(runtime):
    """With something to generate from, poses beyond MAX_PENDING_HEADS wait for the
    output (64-sample chunks: 4500 poses, one per block, are 6 s) and the stream still
    equals generate_file."""
    block, rate = 64, 48000
    frames = [
        FrameUpdate(i, i * block / rate, head=_turn(0.05 * i))
        for i in range(MAX_PENDING_HEADS + 404)
    ]
    duration_s = len(frames) * block / rate
    spec = SessionSpec(
        realtime=False,
        duration_s=duration_s,
        steps=2,
        caption="rain on a tin roof",
        output=OutputSpec(format="foa", sample_rate=rate, chunk_samples=block),
    )
    expected, _, _ = generate_file(runtime, spec, frames, duration_s)
    _, audio, notices = _stream(runtime, spec, frames)
    assert not [n for n in notices if n.level != "info"]
    np.testing.assert_allclose(audio[:, : expected.shape[1]], expected, atol=1e-5)
