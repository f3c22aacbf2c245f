"""Build the bridges' engine-independent cores once per test session (C# with mono's mcs,
C++ with g++). A missing toolchain fails the tests that need it, naming what to install
(`make test` installs every one), so a bridge is never left untested unseen."""

import shutil
import subprocess
from pathlib import Path

import pytest

BRIDGES = Path(__file__).resolve().parents[2] / "bridges"


def require_tools(*tools: str) -> None:
    """Fail, naming them, unless every program is on PATH."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: `make test` installs the bridges' toolchains "
            "(Makefile APT_PACKAGES)",
            pytrace=False,
        )


def _build(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def csharp_core(tmp_path_factory) -> list[str]:
    """Command that runs the C# conformance driver (bridges/unity)."""
    require_tools("mcs", "mono")
    exe = tmp_path_factory.mktemp("csharp") / "conformance.exe"
    unity = BRIDGES / "unity"
    sources = ["Runtime/SwanSphereAxes.cs", "Runtime/PcmRingBuffer.cs"]
    _build(
        ["mcs", "-nologo", "-warnaserror", f"-out:{exe}", *sources, "Tests/BridgeConformance.cs"],
        unity,
    )
    return ["mono", str(exe)]


@pytest.fixture(scope="session")
def cpp_core(tmp_path_factory) -> list[str]:
    """Command that runs the C++ conformance driver (bridges/unreal)."""
    require_tools("g++")
    exe = tmp_path_factory.mktemp("cpp") / "conformance"
    unreal = BRIDGES / "unreal"
    flags = ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I", "Source/SwanSphereCore"]
    _build(["g++", *flags, "Tests/bridge_conformance.cpp", "-o", str(exe)], unreal)
    return [str(exe)]


def run_script(command: list[str], lines: list[str]) -> list[str]:
    """Feed a conformance script to a driver; one answer line per command line."""
    done = subprocess.run(
        command, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    answers = done.stdout.splitlines()
    assert len(answers) == len(lines), (lines, answers)
    return answers
