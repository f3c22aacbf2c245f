"""The REAPER bridge (Lua): OSC framing byte for byte against python-osc, its refusals,
and both REAPER actions and the shell sender driving a real OscController end to end."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from swansphere.serve.models import ModelRegistry
from swansphere.serve.osc import OscController

from .conftest import require_tools

REAPER = Path(__file__).resolve().parents[2] / "bridges" / "reaper"
HARNESS = Path(__file__).resolve().parent / "fake_reaper.lua"
LUA = shutil.which("lua5.4") or "lua5.4"


@pytest.fixture(autouse=True, scope="module")
def _lua_installed() -> None:
    require_tools("lua5.4")


def _lua(code: str) -> subprocess.CompletedProcess:
    """Run Lua with the OSC module loaded as `osc`; stdout is bytes."""
    prelude = f'local osc = dofile("{REAPER / "swansphere_osc.lua"}")\n'
    return subprocess.run([LUA, "-e", prelude + code], capture_output=True, timeout=30)


def _packet(expression: str) -> bytes:
    done = _lua(f"io.write({expression})")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _python_osc(address: str, *args: tuple[str, object]) -> bytes:
    builder = OscMessageBuilder(address)
    for tag, value in args:
        builder.add_arg(value, tag)
    return builder.build().dgram


@pytest.mark.parametrize(
    "expression, address, args",
    [
        (
            'osc.prompt("a dog barks on the left")',
            "/swansphere/prompt",
            [("s", "a dog barks on the left")],
        ),
        (
            'osc.prompt("rain, ünd Donner — 雷")',
            "/swansphere/prompt",
            [("s", "rain, ünd Donner — 雷")],
        ),
        ('osc.prompt("")', "/swansphere/prompt", [("s", "")]),
        ('osc.format("7.1.4")', "/swansphere/format", [("s", "7.1.4")]),
        (
            "osc.head_ypr(30, -12.5, 0.25)",
            "/SceneRotator/ypr",
            [("f", 30.0), ("f", -12.5), ("f", 0.25)],
        ),
        (
            "osc.head_quat(0.966, 0, 0, 0.259)",
            "/swansphere/head/quat",
            [("f", 0.966), ("f", 0.0), ("f", 0.0), ("f", 0.259)],
        ),
        (
            'osc.reply_to("127.0.0.1", 9001)',
            "/swansphere/return",
            [("s", "127.0.0.1"), ("i", 9001)],
        ),
        ("osc.start()", "/swansphere/start", []),
        ("osc.stop()", "/swansphere/stop", []),
        ("osc.status()", "/swansphere/status", []),
    ],
)
def test_framing_matches_python_osc(expression, address, args):
    assert _packet(expression) == _python_osc(address, *args)


def test_decodes_python_osc_replies():
    dgram = _python_osc(
        "/swansphere/status", ("s", "started: binaural to out/x.wav"), ("i", -7), ("f", 0.5)
    )
    hexed = dgram.hex()
    done = _lua(
        f'local raw = ("{hexed}"):gsub("..", function(h) return string.char(tonumber(h, 16)) end)\n'
        "local address, args = osc.decode(raw)\n"
        'io.write(address, "|", args[1], "|", math.type(args[2]), args[2], "|", args[3])'
    )
    assert done.stdout.decode() == "/swansphere/status|started: binaural to out/x.wav|integer-7|0.5"
    assert OscMessage(dgram).address == "/swansphere/status"


@pytest.mark.parametrize(
    "expression, message",
    [
        ('osc.format("9.1")', "unknown format 9.1; choose one of foa, binaural"),
        ('osc.prompt(string.rep("é", 10001))', "prompt is 10001 characters; the limit is 10000"),
        ('osc.prompt("bad \\xff byte")', "prompt is not valid UTF-8"),
        ("osc.prompt(42)", "prompt must be a string"),
        ('osc.prompt("nul \\0 inside")', "contains a NUL byte"),
        ("osc.head_ypr(0/0, 0, 0)", "must be a finite number"),
        ("osc.head_quat(1, 0, 0)", "must be a finite number, got nil"),
        ('osc.reply_to("127.0.0.1", 9001.5)', "must be a 32-bit integer"),
        ('osc.encode("no/slash", "")', "must be a string starting with '/'"),
        ('osc.encode("/x", "s", "a", "b")', "takes 1 arguments, got 2"),
        ('osc.decode("/x")', "unterminated string"),
    ],
)
def test_bad_input_is_refused_by_name(expression, message):
    done = _lua(f"io.write({expression})")
    assert done.returncode != 0 and message in done.stderr.decode(), done.stderr.decode()


def test_prompt_at_the_limit_is_accepted():
    packet = _packet('osc.prompt(string.rep("é", 10000))')
    assert OscMessage(packet).params == ["é" * 10000]


# --- end to end against the server's OSC controller -------------------------------------


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    torch.set_num_threads(1)
    registry = ModelRegistry({"tiny-random": "random:tiny"})
    osc = OscController(
        registry, port=0, out_dir=tmp_path_factory.mktemp("osc"), steps=2, prefer_device=False
    ).start()
    yield osc
    osc.shutdown()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _send(controller, *words: str, wait: float = 1.0) -> subprocess.CompletedProcess:
    cmd = [
        LUA,
        str(REAPER / "swansphere_send.lua"),
        "--port",
        str(controller.port),
        "--reply-port",
        str(_free_udp_port()),
        "--wait",
        str(wait),
        *words,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_shell_sender_drives_the_server(controller):
    done = _send(
        controller,
        "format",
        "foa",
        "prompt",
        "a cello on the right",
        "ypr",
        "30",
        "0",
        "0",
        "status",
    )
    assert done.returncode == 0, done.stderr
    replies = done.stdout.splitlines()
    assert replies[0].startswith("/swansphere/status replies go to 127.0.0.1:")
    assert "/swansphere/status format: foa (from the next start)" in replies
    assert "/swansphere/status prompt: a cello on the right" in replies
    assert replies[-1] == "/swansphere/status stopped"
    assert controller.prompt == "a cello on the right" and controller.format == "foa"
    np.testing.assert_allclose(
        controller.head, [np.cos(np.pi / 12), 0, 0, np.sin(np.pi / 12)], atol=1e-6
    )

    bad = _send(controller, "format", "9.1")
    assert bad.returncode == 2 and "unknown format 9.1" in bad.stderr
    nobody = subprocess.run(
        [
            LUA,
            str(REAPER / "swansphere_send.lua"),
            "--port",
            str(_free_udp_port()),
            "--reply-port",
            str(_free_udp_port()),
            "--wait",
            "0.3",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert nobody.returncode == 2 and "is the server listening" in nobody.stderr


def _action(controller, script: str, **env: str) -> list[str]:
    environment = {
        **os.environ,
        "SWANSPHERE_PORT": str(controller.port),
        "SWANSPHERE_REPLY_PORT": str(_free_udp_port()),
        **env,
    }
    done = subprocess.run(
        [LUA, str(HARNESS), str(REAPER / "Scripts" / script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_reaper_actions_prompt_then_stop_and_import(controller):
    lines = _action(
        controller,
        "SwanSphere - Prompt.lua",
        ITEM_NOTES="footsteps on gravel\nbehind you",
        USER_INPUT="footsteps on gravel behind you\nbinaural",
    )
    inputs = next(line for line in lines if line.startswith("INPUTS "))
    assert inputs.endswith("| footsteps on gravel behind you\\nbinaural")  # the item's notes
    console = next(line for line in lines if line.startswith("CONSOLE "))
    assert "prompt: footsteps on gravel behind you" in console
    assert "started: binaural" in console, console
    assert "EXTSTATE prompt=footsteps on gravel behind you" in lines

    # while it runs, a new prompt only changes the caption (no second start)
    lines = _action(
        controller, "SwanSphere - Prompt.lua", USER_INPUT="rain on a tin roof\nbinaural"
    )
    console = next(line for line in lines if line.startswith("CONSOLE "))
    assert "prompt: rain on a tin roof" in console and "already running" not in console
    assert controller.prompt == "rain on a tin roof"

    time.sleep(1.5)  # real-time pacing: let some audio reach the file
    lines = _action(controller, "SwanSphere - Stop and import.lua")
    assert any(line.startswith("CONSOLE SwanSphere: stopped after") for line in lines), lines
    inserted = next(line for line in lines if line.startswith("INSERT "))
    mode, path = inserted.split(" ", 2)[1:]
    assert mode == "1"
    audio, rate = sf.read(path)
    assert rate == 48000 and audio.shape[1] == 2 and len(audio) > 0
    assert np.isfinite(audio).all()


def test_reaper_action_reports_a_bad_format(controller):
    lines = _action(controller, "SwanSphere - Prompt.lua", USER_INPUT="wind\n9.1")
    assert any("unknown format 9.1" in line for line in lines if line.startswith("MESSAGEBOX")), (
        lines
    )


def test_reaper_action_reports_bad_settings(controller):
    lines = _action(controller, "SwanSphere - Stop and import.lua", SWANSPHERE_PORT="abc")
    assert "MESSAGEBOX ExtState SwanSphere/port must be a port number 1..65535, got 'abc'" in lines
