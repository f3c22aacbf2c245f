"""One random-weight tiny runtime and one server for the whole directory (loading costs
seconds). Random generator weights exercise the real code path (issue 6: never a fake);
``steps=2`` keeps patches fast on two CPU cores."""

import numpy as np
import pytest
import torch

from swansphere.foa.formats import build_decoder
from swansphere.serve.client import Client
from swansphere.serve.grpc_service import ServeOptions, start_server
from swansphere.serve.metrics import Metrics
from swansphere.serve.models import ModelRegistry

MODEL = "tiny-random"


@pytest.fixture(scope="session")
def registry():
    torch.set_num_threads(1)
    reg = ModelRegistry({MODEL: "random:tiny"})
    reg.warm_up()
    build_decoder("binaural", 48000)  # cached: sessions start without designing it
    return reg


@pytest.fixture(scope="session")
def runtime(registry):
    return registry.runtime(MODEL)


@pytest.fixture(scope="session")
def server(registry):
    metrics = Metrics()
    running = start_server(
        registry,
        "127.0.0.1:0",
        metrics=metrics,
        options=ServeOptions(max_sessions=4, stall_timeout_s=3.0, stats_interval_s=0.5),
        max_message_bytes=1024 * 1024,
    )
    running.metrics = metrics
    yield running
    running.stop(0, wait_s=1.0)


@pytest.fixture()
def client(server):
    c = Client(f"127.0.0.1:{server.port}")
    yield c
    c.close()


def panorama(width: int = 128, azimuth_deg: float = 90.0) -> np.ndarray:
    """A procedural equirectangular frame: dark sky/ground, a bright disc at azimuth."""
    h = width // 2
    rows, cols = np.mgrid[0:h, 0:width]
    elev = 90 - (rows + 0.5) * 180 / h
    azim = 180 - (cols + 0.5) * 360 / width  # centre column = front, left at a quarter width
    img = np.zeros((h, width, 3), dtype=np.uint8)
    img[elev < 0] = (60, 50, 40)
    img[elev >= 0] = (30, 60, 110)
    d = np.hypot(((azim - azimuth_deg + 180) % 360) - 180, elev)
    img[d < 20] = (250, 220, 60)
    return img


@pytest.fixture(scope="session")
def make_panorama():
    return panorama
