"""A real OSC peer (liblo's oscsend/oscdump) drives prompt -> audio in a WAV file."""

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from swansphere.serve.osc import OscController

pytestmark = pytest.mark.skipif(
    not (shutil.which("oscsend") and shutil.which("oscdump")), reason="liblo-tools missing"
)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(port: int, address: str, types: str = "", *args) -> None:
    cmd = ["oscsend", "127.0.0.1", str(port), address]
    if types:
        cmd += [types, *map(str, args)]
    subprocess.run(cmd, check=True, timeout=10)


def _wait_for(dump: subprocess.Popen, lines: list[str], text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = dump.stdout.readline()
        if line:
            lines.append(line.strip())
            if text in line:
                return line.strip()
    raise AssertionError(f"no reply containing {text!r}; got {lines}")


def test_oscsend_prompt_to_audio_file(registry, tmp_path):
    reply_port = _free_udp_port()
    dump = subprocess.Popen(
        ["stdbuf", "-oL", "oscdump", str(reply_port)], stdout=subprocess.PIPE, text=True
    )
    osc = OscController(registry, port=0, out_dir=tmp_path, steps=2, prefer_device=False).start()
    lines: list[str] = []
    try:
        time.sleep(0.3)  # oscdump binds
        _send(osc.port, "/swansphere/return", "si", "127.0.0.1", reply_port)
        _wait_for(dump, lines, "replies go to")
        _send(osc.port, "/swansphere/start")  # no prompt yet
        _wait_for(dump, lines, "no prompt")
        _send(osc.port, "/swansphere/format", "s", "9.1")
        _wait_for(dump, lines, "unknown format")
        _send(osc.port, "/swansphere/head/quat", "ffff", "nan", 0, 0, 1)
        _wait_for(dump, lines, "non-finite")
        _send(osc.port, "/ypr", "ff", 1, 2)
        _wait_for(dump, lines, "takes 3 numbers")
        _send(osc.port, "/swansphere/format", "s", "binaural")
        _send(osc.port, "/swansphere/prompt", "s", "a dog barks on the left")
        _wait_for(dump, lines, "prompt: a dog barks")
        _send(osc.port, "/SceneRotator/ypr", "fff", 30, 0, 0)
        _send(osc.port, "/SceneRotator/quaternions", "ffff", 0.966, 0, 0, 0.259)
        _send(osc.port, "/swansphere/head/quat", "ffff", 1, 0, 0, 0)
        _send(osc.port, "/swansphere/start")
        _wait_for(dump, lines, "started: binaural")
        time.sleep(1.5)
        _send(osc.port, "/ypr", "fff", -45, 0, 0)
        _send(osc.port, "/swansphere/prompt", "s", "rain all around")
        time.sleep(0.5)
        _send(osc.port, "/swansphere/stop")
        path = _wait_for(dump, lines, "/swansphere/file").split('"')[1]
        _wait_for(dump, lines, "stopped after")
    finally:
        osc.shutdown()
        dump.terminate()
        dump.wait(5)
    audio, rate = sf.read(path, always_2d=True)
    assert rate == 48000 and audio.shape[1] == 2
    assert audio.shape[0] >= 0.5 * rate  # real-time pacing: about the time it ran
    assert np.all(np.isfinite(audio)) and np.sqrt(np.mean(audio**2)) > 1e-5
