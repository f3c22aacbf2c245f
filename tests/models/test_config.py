"""Every network config reads back from its JSON dict the same way (models/config.py)."""

import json

import pytest

from swansphere.errors import InputError
from swansphere.models.direction import DIRECTION_PRESETS, VideoDirectionConfig
from swansphere.models.generator import GENERATOR_PRESETS, GeneratorConfig
from swansphere.models.svac import SVAC_PRESETS, SVACConfig
from swansphere.models.vae import VAE_PRESETS, VAEConfig

CONFIGS = [
    (VAEConfig, VAE_PRESETS["tiny"]),
    (SVACConfig, SVAC_PRESETS["tiny"]),
    (GeneratorConfig, GENERATOR_PRESETS["tiny"]),
    (VideoDirectionConfig, DIRECTION_PRESETS["tiny"]),
]


@pytest.mark.parametrize(("cls", "config"), CONFIGS, ids=lambda c: getattr(c, "__name__", ""))
def test_configs_round_trip_through_json_and_name_bad_fields(cls, config):
    data = json.loads(json.dumps(config.to_dict()))
    assert cls.from_dict(data) == config
    with pytest.raises(InputError, match=rf"unknown {cls.__name__} field\(s\): bogus, zeta"):
        cls.from_dict({**data, "zeta": 1, "bogus": 2})


def test_a_missing_required_field_is_named():
    data = VAE_PRESETS["tiny"].to_dict()
    del data["latent_dim"]
    with pytest.raises(InputError, match=r"incomplete VAEConfig: .*latent_dim"):
        VAEConfig.from_dict(data)
