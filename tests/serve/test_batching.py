"""Sessions of one model share a LocDiT batcher (serve/models.py ModelRegistry.batcher,
serve/live.py): concurrent sessions are sampled together, a batched session's audio equals
the same session served alone, and a session with bad input or a client that leaves does
not disturb the others."""

import threading

import numpy as np

from swansphere.serve._generated import swansphere_pb2 as pb
from swansphere.serve.client import chunk_array, encode_jpeg, frame_message

MODEL = "tiny-random"


def _config(seed: int, duration_s: float = 1.0) -> pb.SessionConfig:
    return pb.SessionConfig(
        model=MODEL,
        steps=2,
        seed=seed,
        duration_s=duration_s,
        format=pb.OUTPUT_FORMAT_FOA,
        pacing=pb.PACING_AS_FAST_AS_POSSIBLE,
    )


def _run(client, config, messages, out: dict, key: str, stop_after: int | None = None) -> None:
    stream = client.open(config, timeout=120)
    for m in messages:
        stream.send(m)
    stream.half_close()  # as fast as possible: the frames are the clock, and they end here
    chunks, warnings = [], []
    for m in stream:
        kind = m.WhichOneof("message")
        if kind == "audio":
            chunks.append(chunk_array(m.audio))
            if stop_after is not None and len(chunks) >= stop_after:
                break  # the client leaves mid-stream
        elif kind == "event" and m.event.level == pb.Event.LEVEL_WARNING:
            warnings.append(m.event)
    stream.close()
    out[key] = (np.concatenate(chunks, axis=1), warnings)


def test_concurrent_sessions_are_batched_and_equal_each_alone(server, registry, client):
    jpeg = encode_jpeg(np.random.default_rng(3).integers(0, 256, (64, 128, 3), np.uint8))
    good = [frame_message(0, 0.0, jpeg)]
    alone: dict = {}
    _run(client, _config(seed=5), good, alone, "a")

    batcher = registry.batcher(MODEL)
    before = batcher.stats()
    out: dict = {}
    captioned = frame_message(0, 0.0, jpeg, caption="a dog barks on the left")
    garbage_first = [frame_message(0, 0.0, b"garbage"), frame_message(1, 0.1, jpeg)]
    jobs = [
        ("a", _config(seed=5), good, None),
        ("b", _config(seed=6), [captioned], None),
        ("bad", _config(seed=7), garbage_first, None),
        ("leaves", _config(seed=8, duration_s=5.0), good, 3),  # the client leaves early
    ]
    threads = [
        threading.Thread(target=_run, args=(client, config, msgs, out, key, stop))
        for key, config, msgs, stop in jobs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = batcher.stats()

    assert set(out) == {"a", "b", "bad", "leaves"}
    audio_a, warnings_a = out["a"]
    np.testing.assert_allclose(audio_a, alone["a"][0], atol=1e-4)
    assert not warnings_a and not out["b"][1]
    assert [w.sequence for w in out["bad"][1]] == [0]  # only the bad session hears of it
    assert out["b"][0].shape == audio_a.shape and not np.allclose(out["b"][0], audio_a)
    assert after["patches"] > before["patches"]
    assert after["max_batch"] >= 2  # sessions ready at the same time were sampled together
