"""Fuzz: >= 1,000 malformed messages, 0 server crashes; the server still serves after."""

import re

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swansphere.serve._generated import swansphere_pb2 as pb
from swansphere.serve.client import chunk_array, encode_jpeg, frame_message
from swansphere.serve.live import MAX_PENDING_NOTICES, LiveSession
from swansphere.serve.types import FrameUpdate, SessionSpec

MODEL = "tiny-random"
N_FRAMES = 1000
N_RAW = 60


def _garbage_frame(rng: np.random.Generator, seq: int, jpeg: bytes) -> pb.ClientMessage:
    """A frame that parses but is wrong in one or more ways (or, rarely, right)."""
    f = pb.Frame(sequence=int(rng.integers(0, 2 * N_FRAMES)), capture_time_s=float(rng.normal()))
    kind = rng.integers(0, 9)
    if kind == 0:  # mutated JPEG
        data = bytearray(jpeg)
        for i in rng.integers(0, len(data), 8):
            data[i] = rng.integers(0, 256)
        f.camera.image.jpeg = bytes(data[: rng.integers(1, len(data))])
        f.camera.equirect.SetInParent()
    elif kind == 1:  # random bytes as PNG
        f.camera.image.png = rng.bytes(int(rng.integers(0, 64)))
    elif kind == 2:  # raw with inconsistent dimensions
        w, h = (int(v) for v in rng.integers(0, 70000, 2))
        f.camera.image.raw.CopyFrom(
            pb.RawImage(width=w, height=h, rgb=rng.bytes(int(rng.integers(0, 300))))
        )
    elif kind == 3:  # non-finite or zero quaternion
        q = rng.choice([np.nan, np.inf, -np.inf, 0.0, 1e30], 4)
        f.head.CopyFrom(pb.Quaternion(w=q[0], x=q[1], y=q[2], z=q[3]))
    elif kind == 4:  # FOV frame with bad orientation / fov
        f.camera.image.jpeg = jpeg
        f.camera.view.hfov_deg = float(rng.choice([np.nan, -5.0, 0.0, 180.0, 1e9]))
    elif kind == 5:  # scene objects with junk
        o = f.scene.objects.add(label=rng.choice(["", " ", "dog", "x" * 500]))
        o.position.x = float(rng.choice([np.nan, 0.0, 1.0]))
        f.scene.horizon_s = float(rng.choice([-1.0, np.inf, 1.0]))
    elif kind == 6:  # empty camera, or an empty oneof
        f.camera.SetInParent()
    elif kind == 7:  # huge caption
        f.caption.text = "a" * int(rng.integers(10_001, 20_000))
    else:  # a second config in the middle of the session
        return pb.ClientMessage(config=pb.SessionConfig(model="nope"))
    return pb.ClientMessage(frame=f)


def test_fuzz_thousand_malformed_messages(server, client, make_panorama):
    rng = np.random.default_rng(0)
    jpeg = encode_jpeg(make_panorama(128))
    stream = client.open(
        pb.SessionConfig(
            model=MODEL, steps=2, duration_s=0.5, pacing=pb.PACING_AS_FAST_AS_POSSIBLE
        ),
        timeout=60,
    )
    for i in range(N_FRAMES):
        stream.send(_garbage_frame(rng, i, jpeg))
    stream.send(pb.ClientMessage())  # empty oneof
    stream.send(frame_message(10**9, 1e6, jpeg))  # valid: generation goes on
    stream.half_close()
    warnings = audio = 0
    for m in stream:
        if m.WhichOneof("message") == "event" and m.event.level == pb.Event.LEVEL_WARNING:
            # A client that floods faster than the server writes gets the oldest notices
            # summarised: count the ones the summary stands for.
            dropped = re.match(r"(\d+) earlier notice", m.event.message)
            warnings += int(dropped.group(1)) if dropped else 1
        elif m.WhichOneof("message") == "audio":
            audio += chunk_array(m.audio).shape[1]
    assert warnings >= 0.9 * N_FRAMES  # nearly every message was refused with an event
    assert audio >= 24000

    # Undecodable bytes as the first message of a call: the call fails, the server lives.
    raw = client.channel.stream_stream("/swansphere.v1.SwanSphere/Session")
    valid = pb.ClientMessage(config=pb.SessionConfig(model=MODEL)).SerializeToString()
    codes = set()
    for _ in range(N_RAW):
        data = bytearray(valid + rng.bytes(int(rng.integers(1, 40))))
        for i in rng.integers(0, len(data), 4):
            data[i] = rng.integers(0, 256)
        try:
            for _ in raw(iter([bytes(data)]), timeout=10):
                pass
        except grpc.RpcError as exc:
            codes.add(exc.code())
    assert codes  # every one ended in a status, none hung
    health = health_pb2_grpc.HealthStub(client.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="")).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert server.servicer.active_sessions == 0 or server.servicer.active_sessions <= 1


def test_flooded_notices_are_counted_in_one_summary(runtime):
    """More refusals than the pending-notice bound, none sent yet: the oldest are evicted
    (memory stays bounded) and the client is told how many, ahead of the newest ones."""
    session = LiveSession(runtime, SessionSpec(realtime=False, duration_s=0.5))
    try:
        extra = 37
        for seq in range(MAX_PENDING_NOTICES + extra):
            assert not session.submit(FrameUpdate(seq, float("nan")))
        notices = list(session._drain())
        assert len(notices) == MAX_PENDING_NOTICES + 1
        summary = notices[0]
        assert (summary.level, summary.code) == ("warning", "RESOURCE_EXHAUSTED")
        assert summary.message.startswith(f"{extra} earlier notice(s) dropped")
        assert [n.sequence for n in notices[1:]] == list(range(extra, MAX_PENDING_NOTICES + extra))
        assert session.counts["frames_rejected"] == MAX_PENDING_NOTICES + extra
        session.notify(notices[1])
        assert list(session._drain()) == [notices[1]]  # the count starts again from zero
    finally:
        session.close()
