"""``swansphere serve``: the gRPC session API and OSC control in one process."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import threading
from pathlib import Path

from swansphere.errors import InputError

from .common import ACCEL_CHOICES

log = logging.getLogger("swansphere.serve")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="gRPC session server + OSC control (loopback by default)",
        description="Serve live generation over gRPC (swansphere.v1.SwanSphere, health, "
        "reflection) and OSC. Binding a non-loopback address needs TLS and a bearer token.",
    )
    p.add_argument("--grpc", default="127.0.0.1:50051", help="gRPC HOST:PORT")
    p.add_argument("--bind", help="expose gRPC on this host (e.g. 0.0.0.0); needs TLS + token")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain for TLS")
    p.add_argument("--tls-key", type=Path, help="PEM private key for TLS")
    p.add_argument(
        "--token-file", type=Path, help="file holding the bearer token (or env SWANSPHERE_TOKEN)"
    )
    p.add_argument("--osc", default="127.0.0.1:9000", help="OSC UDP HOST:PORT ('off' disables)")
    p.add_argument("--osc-return", help="HOST:PORT for OSC status replies")
    p.add_argument("--osc-steps", type=int, help="sampler steps of OSC sessions")
    p.add_argument("--out-dir", type=Path, default=Path("out/osc"), help="OSC audio files")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="offer a model: SPEC is default, a bundle folder, models:/NAME@ALIAS or "
        "random:PRESET (repeatable; the first is the default)",
    )
    p.add_argument("--hrtf", action="append", default=[], metavar="NAME=SOFA", help="offer an HRTF")
    p.add_argument("--metrics", default="127.0.0.1:9464", help="Prometheus HOST:PORT ('off')")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent gRPC sessions")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads per call")
    p.add_argument("--device", default="cpu", help="torch device of the models (cpu, cuda, cuda:1)")
    p.add_argument(
        "--accel",
        choices=ACCEL_CHOICES,
        default="eager",
        help="LM/LocDiT acceleration; compile, aot and tensorrt compile at start-up "
        "(aot and tensorrt only on the first start; see README)",
    )
    p.add_argument("--no-warmup", action="store_true", help="skip loading the model at start")
    p.set_defaults(run=run_serve)


def split_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(f"{what} must be HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_models() -> tuple[dict[str, str], str]:
    """The shipped bundle if it holds a generator, else the tiny preset at random weights
    (said loudly): the server is usable before a generator is trained."""
    from swansphere.models.bundle import load_bundle

    models = {"default": "default", "tiny-random": "random:tiny"}
    try:
        has_generator = "generator" in load_bundle("default").components
    except InputError:
        has_generator = False
    if has_generator:
        return models, "default"
    log.warning(
        "the default bundle has no trained generator yet: the default model is 'tiny-random' "
        "(tiny preset, random generator weights; audio is not meaningful)"
    )
    return models, "tiny-random"


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        if not args.token_file.is_file():
            raise InputError(f"token file not found: {args.token_file}")
        token = args.token_file.read_text().strip()
    else:
        token = os.environ.get("SWANSPHERE_TOKEN", "").strip()
    return token or None


def run_serve(args: argparse.Namespace) -> int:
    import torch

    from swansphere.foa.formats import build_decoder
    from swansphere.serve.grpc_service import ServeOptions, start_server
    from swansphere.serve.metrics import Metrics, serve_metrics
    from swansphere.serve.models import ModelRegistry, parse_model_option

    host, port = split_address(args.grpc, "--grpc")
    if args.bind:
        host = args.bind
    token = _token(args)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise InputError("TLS needs both --tls-cert and --tls-key")
        for f in (args.tls_cert, args.tls_key):
            if not f.is_file():
                raise InputError(f"TLS file not found: {f}")
        tls = (args.tls_cert.read_bytes(), args.tls_key.read_bytes())
    if not is_loopback(host) and (tls is None or token is None):
        raise InputError(
            f"binding {host} exposes the server: give --tls-cert, --tls-key and a bearer token "
            "(--token-file or SWANSPHERE_TOKEN)"
        )
    if args.max_sessions < 1:
        raise InputError(f"--max-sessions must be >= 1, got {args.max_sessions}")
    if args.model:
        pairs = [parse_model_option(m) for m in args.model]
        models, default = dict(pairs), pairs[0][0]
    else:
        models, default = default_models()
    hrtfs = {}
    for item in args.hrtf:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise InputError(f"--hrtf must be NAME=EXISTING_SOFA_FILE, got {item!r}")
        hrtfs[name] = path
    torch.set_num_threads(max(1, args.torch_threads))
    registry = ModelRegistry(models, default, device=args.device, accel=args.accel)
    metrics = Metrics()
    if not args.no_warmup:
        seconds = registry.warm_up()
        for rate in (48000, 44100):
            build_decoder("binaural", rate)
        log.info("model %r ready (%.1f s)", default, seconds)
    server = start_server(
        registry,
        f"{host}:{port}",
        metrics=metrics,
        options=ServeOptions(max_sessions=args.max_sessions, hrtfs=hrtfs),
        tls=tls,
        token=token,
    )
    log.info("gRPC on %s:%d (%s%s)", host, server.port, "TLS" if tls else "plaintext",
             ", bearer token" if token else "")  # fmt: skip
    osc = http = None
    if args.osc != "off":
        from swansphere.serve.osc import OscController

        osc_host, osc_port = split_address(args.osc, "--osc")
        ret = split_address(args.osc_return, "--osc-return") if args.osc_return else None
        osc = OscController(
            registry, osc_host, osc_port, ret, args.out_dir, metrics, steps=args.osc_steps
        ).start()
        log.info("OSC on %s:%d", osc_host, osc.port)
    if args.metrics != "off":
        m_host, m_port = split_address(args.metrics, "--metrics")
        http = serve_metrics(metrics, m_host, m_port)
        log.info("metrics on http://%s:%d/metrics", m_host, http.server_address[1])
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    log.info("shutting down")
    if osc is not None:
        osc.shutdown()
    if http is not None:
        http.shutdown()
    server.stop(grace=2.0)
    return 0
