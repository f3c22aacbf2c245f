"""A tiny generator runtime at random weights (one per test module), and a bundle with the
shipped VAE and SVAC and that generator."""

from __future__ import annotations

import pytest

from swansphere.generation import GeneratorRuntime
from swansphere.models.bundle import load_bundle, write_bundle


@pytest.fixture(scope="module")
def runtime() -> GeneratorRuntime:
    return GeneratorRuntime.random("tiny", seed=0)


@pytest.fixture(scope="session")
def random_generator_bundle(tmp_path_factory):
    runtime = GeneratorRuntime.random("tiny", seed=0)
    base = load_bundle("default")
    components = {name: (*base.component(name), base.kind(name)) for name in ("vae", "svac")}
    gen = runtime.generator
    components["generator"] = (gen.config.to_dict(), gen.state_dict(), "generator")
    return write_bundle(tmp_path_factory.mktemp("bundle") / "random-tiny", components)
