"""Prometheus-style metrics (text exposition format 0.0.4) without a client library.

Counters, gauges and histograms keyed by name; :meth:`Metrics.render` writes the text
format and :func:`serve_metrics` exposes it on ``GET /metrics`` (loopback by default).
"""

from __future__ import annotations

import bisect
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Thread-safe registry. Names follow Prometheus conventions (``_total``, ``_seconds``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, float] = {}
        self._hist: dict[str, tuple[tuple[float, ...], list[int], list[float]]] = {}

    def _declare(self, name: str, kind: str, text: str) -> None:
        self._help.setdefault(name, (kind, text))

    def inc(self, name: str, amount: float = 1.0, text: str = "") -> None:
        with self._lock:
            self._declare(name, "counter", text)
            self._values[name] = self._values.get(name, 0.0) + amount

    def set(self, name: str, value: float, text: str = "") -> None:
        with self._lock:
            self._declare(name, "gauge", text)
            self._values[name] = float(value)

    def add(self, name: str, amount: float, text: str = "") -> None:
        """Change a gauge by ``amount``."""
        with self._lock:
            self._declare(name, "gauge", text)
            self._values[name] = self._values.get(name, 0.0) + amount

    def observe(
        self, name: str, value: float, text: str = "", buckets: tuple = LATENCY_BUCKETS_S
    ) -> None:
        with self._lock:
            self._declare(name, "histogram", text)
            entry = self._hist.setdefault(name, (buckets, [0] * (len(buckets) + 1), [0.0, 0.0]))
            entry[1][bisect.bisect_left(entry[0], value)] += 1
            entry[2][0] += value
            entry[2][1] += 1

    def value(self, name: str) -> float:
        with self._lock:
            if name in self._hist:
                return self._hist[name][2][1]
            return self._values.get(name, 0.0)

    def histogram(self, name: str) -> tuple[int, float]:
        """(count, sum) of histogram ``name`` so far; (0, 0.0) before its first value."""
        with self._lock:
            if name not in self._hist:
                return 0, 0.0
            total, count = self._hist[name][2]
            return int(count), total

    def render(self) -> str:
        lines = []
        with self._lock:
            for name in sorted(self._help):
                kind, text = self._help[name]
                lines.append(f"# HELP {name} {text or name}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "histogram":
                    buckets, counts, (total, count) = self._hist[name]
                    running = 0
                    for edge, c in zip((*buckets, float("inf")), counts, strict=True):
                        running += c
                        le = "+Inf" if edge == float("inf") else repr(edge)
                        lines.append(f'{name}_bucket{{le="{le}"}} {running}')
                    lines.append(f"{name}_sum {total!r}")
                    lines.append(f"{name}_count {int(count)}")
                else:
                    lines.append(f"{name} {self._values[name]!r}")
        return "\n".join(lines) + "\n"


def serve_metrics(metrics: Metrics, host: str, port: int) -> ThreadingHTTPServer:
    """Start a daemon HTTP server answering ``GET /metrics``; ``.shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
