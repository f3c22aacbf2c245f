"""The server's model registry: specs it refuses by name, and the device and accel mode it
loads runtimes with (serve --device / --accel)."""

from __future__ import annotations

import pytest

from swansphere.serve.models import ModelRegistry, parse_model_option
from swansphere.serve.types import ModelNotFoundError


@pytest.mark.parametrize("spec", ["random:tiny:abc", "random:tiny:1:2", "random:huge"])
def test_a_bad_random_spec_is_refused_by_name(spec):
    registry = ModelRegistry({"m": spec})
    with pytest.raises(ModelNotFoundError, match="model 'm' cannot be loaded") as err:
        registry.runtime("m")
    assert spec in str(err.value) or "huge" in str(err.value)


def test_runtimes_load_with_the_registry_accel_mode(caplog):
    registry = ModelRegistry({"m": "random:tiny:3"}, accel="tensorrt")
    with caplog.at_level("WARNING"):
        runtime = registry.runtime("m")
    assert runtime.accel.mode == "eager"  # no CUDA here: the logged fallback
    assert any("tensorrt" in r.message for r in caplog.records)
    assert registry.runtime("m") is runtime and registry.list()[0].loaded


def test_model_options_parse():
    assert parse_model_option("fast=random:tiny") == ("fast", "random:tiny")
    assert parse_model_option("default") == ("default", "default")
