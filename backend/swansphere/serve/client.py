"""A small Python client for the SwanSphere gRPC API (tests, the benchmark, scripts).

    client = Client("127.0.0.1:50051")
    stream = client.open(binaural_config(steps=4))
    stream.send(frame_message(0, 0.0, panorama=rgb, head=quat))
    for message in stream: ...            # ServerMessage: started, audio, event
    stream.close()

Keepalive settings match the server's (DESIGN.md: set them on both sides together).
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Iterator

import grpc
import numpy as np

from swansphere.serve._generated import swansphere_pb2 as pb
from swansphere.serve._generated import swansphere_pb2_grpc as pb_grpc
from swansphere.serve.render import decode_pcm

CLIENT_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]
_CLOSE = object()


def quaternion(q) -> pb.Quaternion:
    w, x, y, z = (float(v) for v in q)
    return pb.Quaternion(w=w, x=x, y=y, z=z)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def frame_message(
    sequence: int,
    capture_time_s: float,
    panorama: np.ndarray | bytes | None = None,
    head=None,
    caption: str | None = None,
) -> pb.ClientMessage:
    """A Frame: ``panorama`` as an equirectangular RGB array (sent raw) or JPEG bytes."""
    frame = pb.Frame(sequence=sequence, capture_time_s=capture_time_s)
    if panorama is not None:
        if isinstance(panorama, bytes):
            frame.camera.image.jpeg = panorama
        else:
            h, w = panorama.shape[:2]
            frame.camera.image.raw.CopyFrom(
                pb.RawImage(width=w, height=h, rgb=np.ascontiguousarray(panorama).tobytes())
            )
        frame.camera.equirect.SetInParent()
    if head is not None:
        frame.head.CopyFrom(quaternion(head))
    if caption is not None:
        frame.caption.text = caption
    return pb.ClientMessage(frame=frame)


def chunk_array(chunk: pb.AudioChunk) -> np.ndarray:
    """AudioChunk -> (channels, frames) float32."""
    fmt = "int16" if chunk.sample_format == pb.SAMPLE_FORMAT_INT16 else "float32"
    return decode_pcm(chunk.pcm, chunk.channels, fmt)


class SessionStream:
    """One open Session call: :meth:`send` messages, iterate server messages."""

    def __init__(self, stub: pb_grpc.SwanSphereStub, config: pb.SessionConfig, metadata, timeout):
        self._outbox: queue.Queue = queue.Queue()
        self._outbox.put(pb.ClientMessage(config=config))
        self.call = stub.Session(self._requests(), metadata=metadata, timeout=timeout)
        self._lock = threading.Lock()

    def _requests(self) -> Iterator[pb.ClientMessage]:
        while (message := self._outbox.get()) is not _CLOSE:
            yield message

    def send(self, message: pb.ClientMessage) -> None:
        self._outbox.put(message)

    def end_video(self) -> None:
        self._outbox.put(pb.ClientMessage(end=pb.EndOfVideo()))

    def half_close(self) -> None:
        self._outbox.put(_CLOSE)

    def __iter__(self) -> Iterator[pb.ServerMessage]:
        return iter(self.call)

    def close(self) -> None:
        self._outbox.put(_CLOSE)
        self.call.cancel()


class Client:
    """Channel to a SwanSphere server; ``token`` adds ``authorization: Bearer``, and
    ``root_cert`` (PEM) switches to TLS."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        token: str | None = None,
        root_cert: bytes | None = None,
        server_name: str | None = None,
    ) -> None:
        options = list(CLIENT_OPTIONS)
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if root_cert is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.stub = pb_grpc.SwanSphereStub(self.channel)

    def open(self, config: pb.SessionConfig, timeout: float | None = None) -> SessionStream:
        return SessionStream(self.stub, config, self.metadata, timeout)

    def list_models(self, timeout: float = 10.0) -> pb.ListModelsResponse:
        return self.stub.ListModels(pb.ListModelsRequest(), metadata=self.metadata, timeout=timeout)

    def generate(self, request: pb.GenerateRequest, timeout: float = 300.0) -> pb.GenerateResponse:
        return self.stub.Generate(request, metadata=self.metadata, timeout=timeout)

    def close(self) -> None:
        self.channel.close()
