"""The OSC edge (python-osc, UDP): a DAW drives one live session with text prompts.

Addresses (arguments in brackets; angles in degrees, quaternions w, x, y, z):

    /swansphere/prompt [s]             caption; applies from the next patch
    /swansphere/start                  start generating from the prompt
    /swansphere/stop                   stop; a file sink replies /swansphere/file [s path]
    /swansphere/format [s]             foa | binaural | stereo | 5.1 | 7.1.4 (next start)
    /swansphere/head/quat [ffff]       listener head orientation
    /swansphere/return [s i]           where replies go (also --osc-return)
    /swansphere/status                 ask for a status reply
    /SceneRotator/ypr [fff]            IEM SceneRotator yaw, pitch, roll
    /SceneRotator/quaternions [ffff]   IEM SceneRotator quaternion (w, x, y, z)
    /ypr [fff]                         SPARTA yaw, pitch, roll

Head-tracker messages are the listener's head orientation (the renderer compensates
it), the same convention as ``/swansphere/head/quat``. Replies: ``/swansphere/status
[s]``, ``/swansphere/error [s]``, ``/swansphere/file [s]``. A malformed message gets an
``/swansphere/error`` reply naming the problem, never an exception in the server.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from swansphere.errors import InputError
from swansphere.foa.formats import OUTPUT_FORMATS
from swansphere.foa.rotation import normalize_quaternion, ypr_to_quat
from swansphere.serve.audio_out import open_sink
from swansphere.serve.live import LiveSession
from swansphere.serve.metrics import Metrics
from swansphere.serve.models import ModelRegistry
from swansphere.serve.types import AudioBlock, OutputSpec, SessionSpec

log = logging.getLogger(__name__)


def _floats(args: tuple, count: int, address: str) -> np.ndarray:
    if len(args) != count or not all(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in args
    ):
        raise InputError(f"{address} takes {count} numbers, got {list(args)!r}")
    values = np.array(args, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{address} got non-finite values {values.tolist()}")
    return values


def _text(args: tuple, address: str) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise InputError(f"{address} takes one string, got {list(args)!r}")
    return args[0]


class OscController:
    """One OSC-driven session at a time. ``start()`` binds the UDP port (0: any free one)."""

    def __init__(
        self,
        registry: ModelRegistry,
        host: str = "127.0.0.1",
        port: int = 9000,
        return_address: tuple[str, int] | None = None,
        out_dir: str | Path = "out/osc",
        metrics: Metrics | None = None,
        model: str = "",
        steps: int | None = None,
        sample_rate: int = 48000,
        prefer_device: bool = True,
    ) -> None:
        self.registry = registry
        self.metrics = metrics or Metrics()
        self.out_dir = Path(out_dir)
        self.model, self.steps, self.sample_rate = model, steps, sample_rate
        self.prefer_device = prefer_device
        self.prompt: str | None = None
        self.format = "binaural"
        self.head = np.array([1.0, 0.0, 0.0, 0.0])
        self._lock = threading.RLock()
        self._live: LiveSession | None = None
        self._pump: threading.Thread | None = None
        self._sink = None
        self._reply: SimpleUDPClient | None = None
        if return_address:
            self.set_return(*return_address)
        dispatcher = Dispatcher()
        handlers = {
            "/swansphere/prompt": self._on_prompt,
            "/swansphere/start": self._on_start,
            "/swansphere/stop": self._on_stop,
            "/swansphere/format": self._on_format,
            "/swansphere/head/quat": self._on_quat,
            "/swansphere/return": self._on_return,
            "/swansphere/status": self._on_status,
            "/SceneRotator/ypr": self._on_ypr,
            "/SceneRotator/quaternions": self._on_quat,
            "/ypr": self._on_ypr,
        }
        for address, handler in handlers.items():
            dispatcher.map(address, self._guard(handler))
        dispatcher.set_default_handler(self._on_unknown)
        self.server = ThreadingOSCUDPServer((host, port), dispatcher)
        self.port = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> OscController:
        self._thread = threading.Thread(target=self.server.serve_forever, name="osc", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self.stop_session()
        self.server.shutdown()
        self.server.server_close()

    # --- replies ------------------------------------------------------------------------

    def set_return(self, host: str, port: int) -> None:
        if not (isinstance(port, int) and 0 < port < 65536):
            raise InputError(f"return port must be 1..65535, got {port!r}")
        self._reply = SimpleUDPClient(host, port)

    def reply(self, address: str, *args) -> None:
        if self._reply is not None:
            try:
                self._reply.send_message(address, list(args))
            except OSError as exc:
                log.warning("OSC reply to %s failed: %s", address, exc)

    def _guard(self, handler):
        def run(address: str, *args) -> None:
            try:
                handler(address, *args)
            except InputError as exc:
                self.reply("/swansphere/error", str(exc))
            except Exception as exc:
                log.exception("OSC %s failed", address)
                self.reply("/swansphere/error", f"{address} failed: {exc}")

        return run

    # --- handlers -----------------------------------------------------------------------

    def _on_unknown(self, address: str, *args) -> None:
        self.reply("/swansphere/error", f"unknown OSC address {address}")

    def _on_return(self, address: str, *args) -> None:
        if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
            raise InputError(
                f"{address} takes a host string and a port integer, got {list(args)!r}"
            )
        self.set_return(args[0], args[1])
        self.reply("/swansphere/status", f"replies go to {args[0]}:{args[1]}")

    def _on_prompt(self, address: str, *args) -> None:
        text = _text(args, address).strip()
        if len(text) > 10_000:
            raise InputError(f"prompt is {len(text)} characters; the limit is 10000")
        with self._lock:
            self.prompt = text or None
            if self._live is not None:
                self._live.set_caption(self.prompt)
        self.reply("/swansphere/status", f"prompt: {text}")

    def _on_format(self, address: str, *args) -> None:
        fmt = _text(args, address)
        if fmt not in OUTPUT_FORMATS:
            raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
        self.format = fmt
        self.reply("/swansphere/status", f"format: {fmt} (from the next start)")

    def _on_quat(self, address: str, *args) -> None:
        self._set_head(normalize_quaternion(_floats(args, 4, address)))

    def _on_ypr(self, address: str, *args) -> None:
        yaw, pitch, roll = _floats(args, 3, address)
        self._set_head(ypr_to_quat(yaw, pitch, roll))

    def _set_head(self, quat: np.ndarray) -> None:
        with self._lock:
            self.head = quat
            if self._live is not None:
                self._live.set_head(quat)

    def _on_status(self, address: str, *args) -> None:
        with self._lock:
            live = self._live
        if live is None:
            self.reply("/swansphere/status", "stopped")
        else:
            s = live.stats()
            self.reply("/swansphere/status", f"running: {s['audio_s']:.2f} s, rtf {s['rtf']:.2f}")

    def _on_start(self, address: str, *args) -> None:
        with self._lock:
            if self._live is not None:
                raise InputError("already running; send /swansphere/stop first")
            if not self.prompt:
                raise InputError("no prompt: send /swansphere/prompt first")
            spec = SessionSpec(
                model=self.model,
                steps=self.steps,
                caption=self.prompt,
                head=self.head,
                realtime=True,
                lead_s=0.1,
                output=OutputSpec(self.format, self.sample_rate, "float32", 1024),
            )
            runtime = self.registry.runtime(self.model)
            live = LiveSession(
                runtime, spec, "osc", self.metrics, batcher=self.registry.batcher(self.model)
            )
            try:
                sink = open_sink(self.sample_rate, live.channels, self.out_dir, self.prefer_device)
            except BaseException:
                live.close()
                raise
            self._live, self._sink = live, sink
            self._pump = threading.Thread(target=self._play, args=(live, sink), daemon=True)
            self._pump.start()
        where = sink.path if sink.kind == "file" else "the sound card"
        self.reply("/swansphere/status", f"started: {self.format} to {where}")

    def _play(self, live: LiveSession, sink) -> None:
        try:
            for item in live.output():
                if isinstance(item, AudioBlock):
                    sink.write(item.pcm)
                elif item.level != "info":
                    self.reply("/swansphere/error", item.message)
        except Exception as exc:
            log.exception("OSC session failed")
            self.reply("/swansphere/error", f"generation failed: {exc}")

    def _on_stop(self, address: str, *args) -> None:
        sink = self.stop_session()
        if sink is None:
            self.reply("/swansphere/status", "stopped (was not running)")
            return
        if sink.kind == "file":
            self.reply("/swansphere/file", str(sink.path.resolve()))
        seconds = sink.frames / self.sample_rate
        self.reply("/swansphere/status", f"stopped after {seconds:.2f} s")

    def stop_session(self):
        """Stop the running session, close its sink; returns the sink (None if idle)."""
        with self._lock:
            live, sink, pump = self._live, self._sink, self._pump
            self._live = self._sink = self._pump = None
        if live is None:
            return None
        live.close()
        if pump is not None:
            pump.join(timeout=10)
        sink.close()
        return sink
