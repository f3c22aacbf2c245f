"""The Unreal bridge's C++ session core (grpc++) streaming through a real SwanSphere server:
config, panorama frames with head orientation, a caption change, a frame the server refuses,
one the core refuses itself, end of video, and the audio placed by sample offset."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from swansphere.serve.grpc_service import ServeOptions, start_server
from swansphere.serve.metrics import Metrics
from swansphere.serve.models import ModelRegistry

from .conftest import require_tools

ROOT = Path(__file__).resolve().parents[2]
UNREAL = ROOT / "bridges" / "unreal"


@pytest.fixture(scope="module")
def stream_client(tmp_path_factory) -> Path:
    """bridges/unreal/Tests/stream_client built against protoc's classes for our proto."""
    require_tools("g++", "protoc", "grpc_cpp_plugin", "pkg-config")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"], capture_output=True, text=True
    )
    assert flags.returncode == 0, (
        f"grpc++/protobuf development files missing ({flags.stderr.strip()}): `make test` "
        "installs libgrpc++-dev and libprotobuf-dev"
    )
    out = tmp_path_factory.mktemp("unreal")
    subprocess.run(
        ["protoc", "-I", str(ROOT / "protos"), f"--cpp_out={out}", f"--grpc_out={out}",
         f"--plugin=protoc-gen-grpc={shutil.which('grpc_cpp_plugin')}",
         "swansphere/v1/swansphere.proto"],
        check=True, timeout=60,
    )  # fmt: skip
    generated = out / "swansphere" / "v1"
    exe = out / "stream_client"
    build = subprocess.run(
        ["g++", "-std=c++17", "-O1", "-Wall", "-Wextra",
         "-I", str(UNREAL / "Source/SwanSphereCore"), "-I", str(out),
         str(UNREAL / "Tests/stream_client.cpp"),
         str(UNREAL / "Source/SwanSphereCore/SwanSphereSession.cpp"),
         str(generated / "swansphere.pb.cc"), str(generated / "swansphere.grpc.pb.cc"),
         "-o", str(exe), *flags.stdout.split()],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    return exe


@pytest.fixture(scope="module")
def server():
    torch.set_num_threads(1)
    registry = ModelRegistry({"tiny-random": "random:tiny"})
    running = start_server(
        registry, "127.0.0.1:0", metrics=Metrics(), options=ServeOptions(max_sessions=2)
    )
    yield running
    running.stop(0, wait_s=1.0)


def _whole_chunks(duration_s: float, rate: int = 48000, chunk: int = 1024) -> int:
    """Frames of audio for duration_s: whole AudioChunks (the default 1024 frames)."""
    return -(-round(duration_s * rate) // chunk) * chunk


def _stream(exe: Path, address: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), address, *args], capture_output=True, text=True, timeout=180)


def test_session_streams_panoramas_and_gets_binaural_back(stream_client, server, tmp_path):
    raw = tmp_path / "out.f32"
    done = _stream(
        stream_client, f"127.0.0.1:{server.port}", "--steps", "2", "--frames", "12",
        "--fps", "6", "--duration", "2", "--odd-frame-at", "3",
        "--recaption-at", "5", "a bell rings on the right", "--out", str(raw),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "" and report["model"] == "tiny-random"
    assert report["channels"] == 2 and report["layout"] == ["L", "R"]
    assert report["sample_rate"] == 48000
    assert report["frames"] == _whole_chunks(2.0)  # chunks placed by offset, without gaps
    assert report["gap_frames"] == 0 and report["overflow_frames"] == 0
    assert report["events"] == [
        "WARNING INVALID_ARGUMENT: an equirectangular image must be twice as wide as high, "
        "got 100x64"
    ]
    assert report["refused"] == ["RGB8 image of 128 x 64 needs 24576 bytes, got 10"]
    audio = np.fromfile(raw, dtype="<f4").reshape(-1, 2)
    assert len(audio) == report["frames"] and np.isfinite(audio).all()
    assert np.abs(audio).max() > 0 and report["finite"]


def test_session_in_foa_lasts_as_long_as_the_video(stream_client, server):
    """No duration: as fast as possible, the frames are the clock and the audio ends one
    frame interval after the last frame (3 frames at 6 fps: 0.5 s)."""
    done = _stream(
        stream_client, f"127.0.0.1:{server.port}", "--steps", "2", "--frames", "3",
        "--fps", "6", "--format", "foa",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["layout"] == ["W", "Y", "Z", "X"] and report["frames"] == _whole_chunks(0.5)


def test_refusals_name_the_problem(stream_client, server):
    bad_rate = _stream(stream_client, f"127.0.0.1:{server.port}", "--rate", "12345")
    assert bad_rate.returncode == 2
    assert (
        "the server refused the session: INVALID_ARGUMENT: sample_rate must be 44100 or 48000"
        in (bad_rate.stderr)
    )
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    nobody = _stream(stream_client, f"127.0.0.1:{free_port}")
    assert nobody.returncode == 2 and f"no SwanSphere server at 127.0.0.1:{free_port}" in (
        nobody.stderr
    )
    bad_format = _stream(stream_client, f"127.0.0.1:{server.port}", "--format", "9.1")
    assert bad_format.returncode == 2 and "unknown format 9.1" in bad_format.stderr
