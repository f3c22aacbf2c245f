"""The gRPC edge: the ``swansphere.v1.SwanSphere`` servicer and the server around it.

Servicers only decode (:mod:`swansphere.serve.codec`), call the session core
(:mod:`swansphere.serve.live`) and encode. Status codes: a first message that is not a
config -> FAILED_PRECONDITION; a bad config -> INVALID_ARGUMENT; an unknown model or
HRTF -> NOT_FOUND; too many sessions or an oversize message -> RESOURCE_EXHAUSTED; a
missing/wrong bearer token -> UNAUTHENTICATED. A bad *frame* does not end the session:
it is refused with an Event (code INVALID_ARGUMENT and the frame's sequence number).
Health (grpc.health.v1) and server reflection are registered.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from swansphere.errors import InputError
from swansphere.serve import codec
from swansphere.serve._generated import swansphere_pb2 as pb
from swansphere.serve._generated import swansphere_pb2_grpc as pb_grpc
from swansphere.serve.live import LiveSession, generate_file
from swansphere.serve.memory import limit_arenas
from swansphere.serve.metrics import Metrics
from swansphere.serve.models import ModelRegistry
from swansphere.serve.types import AudioBlock, CapacityError, Notice, status_of

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SwanSphere"].full_name
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# Keepalive, matched by swansphere.serve.client.CLIENT_OPTIONS.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
]


def _code(name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN)


@dataclass
class ServeOptions:
    """Server-wide settings. hrtfs: name -> SOFA path offered to clients."""

    max_sessions: int = 8
    queue_patches: int = 2
    stall_timeout_s: float = 30.0
    stats_interval_s: float = 1.0
    hrtfs: dict[str, str] = field(default_factory=dict)


class SwanSphereServicer(pb_grpc.SwanSphereServicer):
    def __init__(self, registry: ModelRegistry, metrics: Metrics, options: ServeOptions) -> None:
        self.registry = registry
        self.metrics = metrics
        self.options = options
        self._lock = threading.Lock()
        self._active: dict[str, tuple[LiveSession | None, grpc.ServicerContext]] = {}
        self._watchdog = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._stopping = threading.Event()
        self._watchdog.start()

    @property
    def active_sessions(self) -> int:
        with self._lock:
            return len(self._active)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            sessions = [s for s, _ in self._active.values() if s is not None]
        for s in sessions:
            s.close()

    def _watch(self) -> None:
        """Cancel sessions whose client has not taken a block for stall_timeout_s."""
        while not self._stopping.wait(0.5):
            now = time.monotonic()
            with self._lock:
                items = list(self._active.items())
            for sid, (live, context) in items:
                since = None if live is None else live.blocked_since
                if since is not None and now - since > self.options.stall_timeout_s:
                    log.warning("session %s: client stopped reading; cancelling", sid)
                    self.metrics.inc("swansphere_sessions_stalled_total", 1, "sessions cancelled")
                    live.close(timeout=0)
                    context.cancel()

    # --- Session ------------------------------------------------------------------------

    def _open(self, first: pb.ClientMessage, sid: str, context) -> LiveSession:
        spec = codec.decode_session_config(first.config, self.options.hrtfs)
        with self._lock:
            if len(self._active) >= self.options.max_sessions:
                raise CapacityError(
                    f"server is at its limit of {self.options.max_sessions} sessions"
                )
            self._active[sid] = (None, context)
        try:
            runtime = self.registry.runtime(spec.model)
            batcher = self.registry.batcher(spec.model)
            live = LiveSession(
                runtime, spec, sid, self.metrics, self.options.queue_patches, batcher=batcher
            )
        except BaseException:
            with self._lock:
                self._active.pop(sid, None)
            raise
        with self._lock:
            self._active[sid] = (live, context)
        return live

    def _read(self, requests, live: LiveSession) -> None:
        """Reader thread: client messages -> the session. Ends at half-close or cancel."""
        try:
            for message in requests:
                received = time.perf_counter()
                kind = message.WhichOneof("message")
                if kind == "frame":
                    try:
                        update = codec.decode_frame(message.frame)
                    except InputError as exc:
                        live.reject(str(exc), message.frame.sequence, status_of(exc))
                        continue
                    live.submit(update, received)
                elif kind == "end":
                    live.end_video()
                elif kind == "config":
                    live.reject("the session is already configured; a config comes only first",
                                None, "FAILED_PRECONDITION")  # fmt: skip
                else:
                    live.reject("empty client message (no config, frame or end)")
            live.end_video()  # half-close: no more frames
        except grpc.RpcError:
            live.close(timeout=0)
        except Exception:
            log.exception("session %s: reader failed", live.session_id)
            live.close(timeout=0)

    def Session(self, request_iterator, context):
        sid = uuid.uuid4().hex[:12]
        try:
            first = next(request_iterator)
        except (StopIteration, grpc.RpcError):
            return
        if first.WhichOneof("message") != "config":
            got = first.WhichOneof("message") or "an empty message"
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the first message must be a SessionConfig, got {got}",
            )
        try:
            live = self._open(first, sid, context)
        except InputError as exc:
            context.abort(_code(status_of(exc)), str(exc))
        context.add_callback(lambda: live.close(timeout=0))
        log.info(
            "session %s: opened (model %r, %s at %d Hz, peer %s)",
            sid, first.config.model or self.registry.default, live.spec.output.format,
            live.sample_rate, context.peer(),
        )  # fmt: skip
        reader = threading.Thread(
            target=self._read, args=(request_iterator, live), name=f"read-{sid}", daemon=True
        )
        reader.start()
        failure = None
        try:
            model = self.registry.resolve(live.spec.model)
            yield codec.encode_started(sid, model, live)
            spec, layout = live.spec.output, live.layout
            next_stats = time.monotonic() + self.options.stats_interval_s
            for item in live.output():
                if isinstance(item, AudioBlock):
                    yield codec.encode_block(item, spec, layout)
                else:
                    yield codec.encode_notice(item)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.options.stats_interval_s
                    yield codec.encode_notice(Notice("info", "OK", "stats", stats=live.stats()))
            if not live.closed:
                yield codec.encode_notice(Notice("info", "OK", "finished", stats=live.stats()))
        except Exception as exc:
            log.exception("session %s: failed", sid)
            failure = exc
        finally:
            live.close()
            with self._lock:
                self._active.pop(sid, None)
            log.info("session %s: closed %s", sid, live.stats())
        if failure is not None:
            context.abort(grpc.StatusCode.INTERNAL, f"generation failed: {failure}")

    # --- unary --------------------------------------------------------------------------

    def Generate(self, request, context):
        try:
            spec = codec.decode_session_config(request.config, self.options.hrtfs)
            frames, notices = [], []
            for f in request.frames:
                try:
                    frames.append(codec.decode_frame(f))
                except InputError as exc:
                    notices.append(Notice("warning", status_of(exc), str(exc), f.sequence))
            runtime = self.registry.runtime(spec.model)
            pcm, more, stats = generate_file(runtime, spec, frames, float(request.duration_s))
        except InputError as exc:
            context.abort(_code(status_of(exc)), str(exc))
        block = AudioBlock(0, 0, pcm)
        from swansphere.foa.formats import build_decoder

        layout = build_decoder(spec.output.format, spec.output.sample_rate, spec.output.hrtf).labels
        return pb.GenerateResponse(
            audio=codec.encode_audio(block, spec.output, layout),
            events=[codec.encode_event(n) for n in notices + more],
            stats=codec.encode_stats(stats),
        )

    def ListModels(self, request, context):
        return pb.ListModelsResponse(
            models=[
                pb.ModelInfo(name=m.name, spec=m.spec, is_default=m.is_default, loaded=m.loaded)
                for m in self.registry.list()
            ]
        )


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Requires ``authorization: Bearer TOKEN`` on every call except health checks."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)
        self._deny_stream = grpc.stream_stream_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith("/grpc.health.v1.Health/"):
            return continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), self._token):
            return continuation(handler_call_details)
        return self._deny_stream if handler_call_details.method.endswith("/Session") else self._deny


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    servicer: SwanSphereServicer
    health: health.HealthServicer

    def stop(self, grace: float | None = 1.0, wait_s: float = 10.0) -> None:
        """Refuse new calls, close the sessions, stop. The wait is bounded: after calls
        whose request could not be deserialised, grpcio's shutdown event can fire late."""
        self.health.enter_graceful_shutdown()
        self.servicer.stop()
        self.server.stop(grace).wait(timeout=wait_s)


def start_server(
    registry: ModelRegistry,
    address: str = "127.0.0.1:50051",
    metrics: Metrics | None = None,
    options: ServeOptions | None = None,
    tls: tuple[bytes, bytes] | None = None,
    token: str | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> RunningServer:
    """Start the gRPC server on ``address`` (port 0: any free port). tls: (cert PEM,
    key PEM) for a TLS port; token: required bearer token. Returns the running server."""
    options = options or ServeOptions()
    metrics = metrics or Metrics()
    limit_arenas(2)
    servicer = SwanSphereServicer(registry, metrics, options)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2 * options.max_sessions + 8),
        interceptors=[BearerTokenInterceptor(token)] if token else None,
        options=[
            *SERVER_OPTIONS,
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
    pb_grpc.add_SwanSphereServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )  # fmt: skip
    if tls is not None:
        credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise InputError(f"cannot bind gRPC on {address}")
    server.start()
    metrics.set("swansphere_up", 1, "server running")
    return RunningServer(server, port, servicer, health_servicer)
