"""The gRPC API end to end, over loopback, with the tiny model at random weights."""

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from swansphere.foa.binaural import interaural_level_difference
from swansphere.foa.doa import clip_direction
from swansphere.foa.rotation import ypr_to_quat
from swansphere.serve._generated import swansphere_pb2 as pb
from swansphere.serve.client import Client, chunk_array, encode_jpeg, frame_message, quaternion
from swansphere.serve.live import TTFC_STAGES

MODEL = "tiny-random"
SEED = 2
FAST = pb.PACING_AS_FAST_AS_POSSIBLE


def _config(**kw):
    base = dict(model=MODEL, steps=2, duration_s=1.0, pacing=FAST)
    base.update(kw)
    return pb.SessionConfig(**base)


def _drain(stream, limit_s=60):
    """All server messages of a stream: (audio (channels, n), events, started)."""
    chunks, events, started = [], [], None
    deadline = time.monotonic() + limit_s
    for m in stream:
        kind = m.WhichOneof("message")
        if kind == "audio":
            chunks.append(chunk_array(m.audio))
        elif kind == "event":
            events.append(m.event)
        else:
            started = m.started
        assert time.monotonic() < deadline
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((0, 0))
    return audio, events, started


def _head_session(client, jpeg, yaw_at_chunk, fmt=pb.OUTPUT_FORMAT_BINAURAL, duration=1.5):
    """Stream the clip at 60 fps; the head yaw (degrees) follows the number of chunks
    received, as a game loop would. Returns the audio as (blocks, channels, samples)."""
    config = _config(duration_s=duration, seed=SEED, format=fmt)
    config.head.CopyFrom(quaternion(ypr_to_quat(yaw_at_chunk(0), 0, 0)))
    stream = client.open(config, timeout=120)
    received = [0]
    stop = threading.Event()

    def send():
        seq, t0 = 0, time.monotonic()
        while not stop.is_set():
            head = ypr_to_quat(yaw_at_chunk(received[0]), 0, 0)
            stream.send(frame_message(seq, seq / 60, jpeg, head=head))
            seq += 1
            stop.wait(max(0.0, t0 + seq / 60 - time.monotonic()))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    blocks = []
    for m in stream:
        if m.WhichOneof("message") == "audio":
            blocks.append(chunk_array(m.audio))
            received[0] = len(blocks)
    stop.set()
    sender.join()
    stream.close()
    return np.stack(blocks)


def _ild(blocks):
    return interaural_level_difference(np.concatenate(list(blocks), axis=1))


def test_panoramic_clip_with_head_turn_binaural_follows_the_head(client, make_panorama):
    """With random generator weights the FOA's direction is whatever the model makes, so
    it is measured first (head-compensated FOA output, identity head); the head then turns
    from facing 90 deg right of the sound (heard on the left) to 90 deg left of it."""
    jpeg = encode_jpeg(make_panorama(256))  # the same procedural frame, 60 times a second
    foa = _head_session(client, jpeg, lambda i: 0.0, fmt=pb.OUTPUT_FORMAT_FOA)
    azimuth, elevation = np.rad2deg(clip_direction(np.concatenate(list(foa), axis=1)))
    # Away from the poles, where turning the head changes nothing (random weights put it
    # about 66 deg below the horizon; its horizontal part still gives a 5 dB ILD).
    assert abs(elevation) < 75
    yaw_a, yaw_b = azimuth - 90.0, azimuth + 90.0  # sound at +90 (left), then at -90 (right)
    left = _head_session(client, jpeg, lambda i: yaw_a)
    right = _head_session(client, jpeg, lambda i: yaw_b)
    turn = _head_session(client, jpeg, lambda i: yaw_a + 180.0 * np.clip((i - 25) / 8, 0, 1))
    assert left.shape == right.shape == turn.shape and left.shape[1] == 2
    # Same seed and frames give the same FOA; only the head differs. Blocks rendered before
    # the turn equal the first render; blocks well after it equal the second.
    np.testing.assert_allclose(turn[:25], left[:25], atol=1e-4)
    np.testing.assert_allclose(turn[-15:], right[-15:], atol=1e-4)
    ild = [_ild(left), _ild(right), _ild(turn[:25]), _ild(turn[-15:])]
    print(f"azimuth {azimuth:.1f} deg; ILD dB left {ild[0]:.2f} right {ild[1]:.2f} "
          f"turn {ild[2]:.2f} -> {ild[3]:.2f}")  # fmt: skip
    assert ild[0] > 1.0 and ild[1] < -1.0
    assert ild[2] > 1.0 and ild[3] < -1.0


def test_audio_metadata_and_stats(client, make_panorama):
    config = _config(sample_rate=44100, chunk_samples=512, format=pb.OUTPUT_FORMAT_FOA)
    config.sample_format = pb.SAMPLE_FORMAT_INT16
    stream = client.open(config)
    stream.send(frame_message(0, 0.0, make_panorama(128)))
    stream.end_video()  # a still: the frame holds for the requested second
    offsets, seqs = [], []
    for m in stream:
        if m.WhichOneof("message") == "audio":
            a = m.audio
            assert (a.sample_rate, a.channels, a.frames) == (44100, 4, 512)
            assert list(a.layout) == ["W", "Y", "Z", "X"] and len(a.pcm) == 512 * 4 * 2
            offsets.append(a.sample_offset)
            seqs.append(a.sequence)
        elif m.WhichOneof("message") == "event" and m.event.message == "finished":
            stats = m.event.stats
    assert seqs == list(range(len(seqs))) and offsets == [512 * s for s in seqs]
    assert len(seqs) * 512 >= 44100  # one second of audio
    assert stats.ttfc_ms > 0 and stats.rtf > 0 and stats.frames_received == 1
    # Where the first chunk's time went: the stages sum to ttfc_ms, in order, none
    # negative, and the first patch holds its own parts (LM, LocDiT, VAE decode).
    split = dict(stats.ttfc_split_ms)
    assert sum(split[s] for s in TTFC_STAGES) == pytest.approx(stats.ttfc_ms, abs=1e-6)
    assert all(split[s] >= 0 for s in TTFC_STAGES)
    parts = [split[f"generate_{k}"] for k in ("lm", "dit", "decode")]
    assert all(p > 0 for p in parts) and sum(parts) <= split["generate"]


def _status(stream):
    with pytest.raises(grpc.RpcError) as info:
        _drain(stream)
    return info.value.code(), info.value.details()


@pytest.mark.parametrize(("fps", "n", "finish"), [(12.0, 18, "end"), (600.0, 200, "half-close")])
def test_as_fast_as_possible_streams_what_generate_makes(client, make_panorama, fps, n, finish):
    """As fast as possible, the client's frames are the clock: sent all at once (at 600
    fps, more frames per patch than the server holds, so ingest waits), the stream equals
    the Generate call for the same frames: images, a caption change and head turns at
    their capture times; it ends one frame interval after the last frame."""
    messages = [
        frame_message(
            i, i / fps, encode_jpeg(make_panorama(128, azimuth_deg=300.0 * i / n)),
            head=ypr_to_quat(90.0 * i / n, 0, 0),
            caption="rain on a tin roof" if i == n // 2 else None,
        )
        for i in range(n)
    ]  # fmt: skip
    config = _config(seed=SEED, format=pb.OUTPUT_FORMAT_FOA)
    config.ClearField("duration_s")
    stream = client.open(config, timeout=120)
    for m in messages:
        stream.send(m)
    stream.end_video() if finish == "end" else stream.half_close()
    audio, events, _ = _drain(stream)
    stats = next(e.stats for e in events if e.message == "finished")
    request = pb.GenerateRequest(config=config, frames=[m.frame for m in messages])
    request.duration_s = n / fps
    expected = chunk_array(client.generate(request).audio)
    assert expected.shape[1] == round(n / fps * 48000)
    assert audio.shape[1] == -(-expected.shape[1] // 1024) * 1024  # the last chunk: filled out
    np.testing.assert_allclose(audio[:, : expected.shape[1]], expected, atol=1e-5)
    assert stats.frames_received == n and stats.frames_superseded > 0


def test_frames_before_config_fail_precondition(server, client, make_panorama):
    outbox = iter([frame_message(0, 0.0, make_panorama(64))])
    code, details = _status(client.stub.Session(outbox, timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "SessionConfig" in details


@pytest.mark.parametrize(
    "config,code,text",
    [
        (_config(model="no-such-model"), grpc.StatusCode.NOT_FOUND, "no-such-model"),
        (_config(sample_rate=22050), grpc.StatusCode.INVALID_ARGUMENT, "44100 or 48000"),
        (_config(chunk_samples=8), grpc.StatusCode.INVALID_ARGUMENT, "chunk_samples"),
        (_config(hrtf="/etc/passwd"), grpc.StatusCode.NOT_FOUND, "unknown HRTF"),
        (_config(steps=0), grpc.StatusCode.INVALID_ARGUMENT, "steps"),
        (_config(head=pb.Quaternion(w=float("nan"))), grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
    ],
)
def test_bad_configs_get_precise_status(client, config, code, text):
    got, details = _status(client.open(config, timeout=30))
    assert got == code and text in details


def test_bad_frames_get_events_and_the_session_survives(client, make_panorama):
    stream = client.open(_config(duration_s=0.5), timeout=60)
    img = make_panorama(64)
    bad_raw = frame_message(1, 0.0, img)
    bad_raw.frame.camera.image.raw.width = 63  # wrong dimensions for the bytes
    nan_head = frame_message(2, 0.0, head=(np.nan, 0, 0, 1))
    view = frame_message(5, 0.0, img)
    view.frame.camera.view.hfov_deg = 90  # FOV frame without orientation
    for message in [
        frame_message(0, 0.0, b"\xff\xd8 not a jpeg"),
        bad_raw,
        nan_head,
        frame_message(3, 0.0, img[:, :40]),  # not 2:1
        frame_message(4, 0.0, head=(0, 0, 0, 0)),
        view,
        frame_message(10, 0.1, img),  # good
        frame_message(10, 0.2, img),  # repeated
        frame_message(7, 0.3, img),  # out of order
        frame_message(11, 0.05, img),  # capture time goes back
    ]:
        stream.send(message)
    stream.end_video()
    audio, events, started = _drain(stream)
    assert started.channels == 2 and audio.shape[1] >= 24000
    warned = {e.sequence: e for e in events if e.level == pb.Event.LEVEL_WARNING}
    assert set(warned) == {0, 1, 2, 3, 4, 5, 10, 7, 11}
    assert all(e.code == "INVALID_ARGUMENT" for e in warned.values())
    assert "not a readable image" in warned[0].message
    assert "needs 6048 bytes, got 6144" in warned[1].message
    assert "NaN" in warned[2].message and "twice as wide" in warned[3].message
    assert "repeated" in warned[10].message and "out of order" in warned[7].message
    assert "before the previous" in warned[11].message


def test_oversize_message_is_resource_exhausted(client, make_panorama):
    stream = client.open(_config(), timeout=30)
    stream.send(frame_message(0, 0.0, make_panorama(1024)))  # 1.5 MB raw > the 1 MiB limit
    code, _ = _status(stream)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_session_limit_and_health_and_reflection(server, client):
    streams = [client.open(_config(), timeout=30) for _ in range(4)]
    for s in streams:
        assert next(iter(s)).WhichOneof("message") == "started"
    code, details = _status(client.open(_config(), timeout=30))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 4" in details
    for s in streams:
        s.close()
    health = health_pb2_grpc.HealthStub(client.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="swansphere.v1.SwanSphere"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    answer = next(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {"swansphere.v1.SwanSphere", "grpc.health.v1.Health"} <= names
    deadline = time.monotonic() + 10
    while server.servicer.active_sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.servicer.active_sessions == 0  # freed on disconnect


def test_list_models_and_generate(client, make_panorama):
    models = client.list_models().models
    assert [m.name for m in models] == [MODEL] and models[0].is_default
    frames = [frame_message(i, i / 30, make_panorama(128), head=ypr_to_quat(3 * i, 0, 0)).frame
              for i in range(10)]  # fmt: skip
    frames.append(frame_message(3, 1.0, b"junk").frame)
    reply = client.generate(pb.GenerateRequest(config=_config(), frames=frames, duration_s=0.5))
    assert reply.audio.frames == 24000 and reply.audio.channels == 2
    assert np.all(np.isfinite(chunk_array(reply.audio)))
    assert [e.sequence for e in reply.events] == [3]
    with pytest.raises(grpc.RpcError) as info:
        client.generate(pb.GenerateRequest(config=_config(), frames=frames, duration_s=0))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_that_stops_reading_is_cut_off_and_others_are_untouched(server, make_panorama):
    slow = Client(f"127.0.0.1:{server.port}")  # small flow-control window: stalls quickly
    slow.channel.close()
    slow.channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.http2.bdp_probe", 0)]
    )
    from swansphere.serve._generated import swansphere_pb2_grpc as pb_grpc

    slow.stub = pb_grpc.SwanSphereStub(slow.channel)
    img = make_panorama(128)
    stalled = slow.open(_config(duration_s=30.0, chunk_samples=4096), timeout=60)
    stalled.send(frame_message(0, 0.0, img))
    stalled.end_video()
    it = iter(stalled)
    assert next(it).WhichOneof("message") == "started"
    before = server.metrics.value("swansphere_sessions_stalled_total")
    other = Client(f"127.0.0.1:{server.port}")
    s = other.open(_config(duration_s=0.5), timeout=60)
    s.send(frame_message(0, 0.0, img))
    s.end_video()
    audio, _, _ = _drain(s)
    assert audio.shape[1] >= 24000  # the other session is served meanwhile
    deadline = time.monotonic() + 20
    while server.metrics.value("swansphere_sessions_stalled_total") == before:
        assert time.monotonic() < deadline, "the stalled session was never cut off"
        time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as info:
        for _ in it:
            pass
    assert info.value.code() == grpc.StatusCode.CANCELLED
    slow.close()
    other.close()
