"""The committed generated modules match protos/ (regenerate with ``make proto``)."""

import re
import tomllib
from importlib.metadata import version

from swansphere.serve import protogen


def test_installed_grpcio_tools_is_the_pinned_one():
    # The generated code records the grpcio-tools (and its bundled protoc) version that
    # wrote it, so a newer generator makes every file differ; a clear message beats a diff.
    project = tomllib.loads((protogen.REPO / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["optional-dependencies"]["dev"] if d.startswith("grpcio-tools")]
    assert len(pins) == 1 and re.fullmatch(r"grpcio-tools==[\d.]+", pins[0]), pins
    pinned = pins[0].split("==")[1]
    assert version("grpcio-tools") == pinned, (
        f"grpcio-tools {version('grpcio-tools')} is installed but pyproject.toml pins {pinned}: "
        "reinstall with make setup, or move the pin and run make proto"
    )


def test_generated_code_is_up_to_date(tmp_path):
    written = protogen.generate(out_dir=tmp_path)
    assert written
    for path in written:
        committed = protogen.OUT_DIR / path.name
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run make proto"
