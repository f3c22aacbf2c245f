"""``eval svac --oracles``: the spatial code and activity map of video sides that know
clip.json's sounding sources (evaluation.svac.oracle_parts)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector
from swansphere.foa.harmonics import real_spherical_harmonics
from swansphere.models.svac import SVAC, SVAC_PRESETS
from swansphere_training.evaluation.svac import oracle_parts


def one_source_clip(azimuth_deg: float) -> dict:
    pulse = [1.0, 0.2] * 8  # 4 s at 4 fps
    return {
        "video": {"fps": 4.0, "frames": 16},
        "duration_s": 4.0,
        "sources": [
            {
                "class": "siren",
                "level_db": 0.0,
                "power_db": -10.0,
                "activity": pulse,
                "trajectory": {
                    "t": [0.0, 4.0],
                    "azimuth_deg": [azimuth_deg] * 2,
                    "elevation_deg": [0.0] * 2,
                    "distance_m": [2.0] * 2,
                },
            }
        ],
    }


def code_of(azimuth_deg: float) -> torch.Tensor:
    unit = direction_to_vector(math.radians(azimuth_deg), 0.0).reshape(1, 3)
    return F.normalize(real_spherical_harmonics(torch.from_numpy(unit), 3)[0, 1:].float(), dim=0)


def test_the_oracle_code_points_at_the_source_and_its_map_pulses_with_it() -> None:
    torch.manual_seed(0)
    model = SVAC(SVAC_PRESETS["tiny"]).eval()
    frames = 86
    with torch.no_grad():
        known = oracle_parts(model, one_source_clip(90.0), frames)
    w, u = model.config.spatial_weight, model.config.activity_weight
    assert known["spatial"].shape == (frames, model.config.spatial_dim)
    assert known["activity"].shape == (frames, model.config.map_dim)
    code = known["spatial"][0] / math.sqrt(w)
    assert float(code @ code_of(90.0)) > 0.8 > float(code @ code_of(-90.0))
    # Standardised over the window: mean |map|^2 = 1 before the part's weight.
    energy = (known["activity"] / math.sqrt(u)).square().sum(-1).mean()
    assert float(energy) == pytest.approx(1.0, rel=1e-3)
    # Its order-0 term rises and falls with the pulse (frames alternate loud and quiet).
    w0 = known["activity"][:, 0]
    assert float(w0.max()) > 0 > float(w0.min())


def test_clips_without_known_sources_have_no_oracle() -> None:
    model = SVAC(SVAC_PRESETS["tiny"]).eval()
    assert oracle_parts(model, {"video": {"fps": 4.0, "frames": 16}, "sources": []}, 86) == {}
    clip = one_source_clip(0.0)
    del clip["sources"][0]["power_db"]  # a corpus that did not measure it
    assert oracle_parts(model, clip, 86) == {}


def test_the_video_oracle_knows_a_sources_class_not_its_drawn_level() -> None:
    """knowledge="video" weighs each source by its class's typical power: two sirens drawn
    20 dB apart count alike, where the signal oracle follows the louder one."""
    torch.manual_seed(0)
    model = SVAC(SVAC_PRESETS["tiny"]).eval()
    clip = one_source_clip(90.0)
    loud = clip["sources"][0]
    loud["level_db"] = 20.0
    quiet = {**loud, "level_db": 0.0, "activity": [1.0] * 16}
    quiet["trajectory"] = {**loud["trajectory"], "azimuth_deg": [-90.0] * 2}
    loud["activity"] = [1.0] * 16
    clip["sources"].append(quiet)
    clip["sample_rate"] = 22050
    w = model.config.spatial_weight
    with torch.no_grad():
        signal = oracle_parts(model, clip, 86)["spatial"][0] / math.sqrt(w)
        video = oracle_parts(model, clip, 86, knowledge="video")["spatial"][0] / math.sqrt(w)
    assert float(signal @ code_of(90.0)) > 0.8
    assert float(video @ code_of(90.0)) == pytest.approx(float(video @ code_of(-90.0)), abs=1e-4)
    del clip["sample_rate"]  # the typical power is measured at the clip's rate
    assert oracle_parts(model, clip, 86, knowledge="video") == {}
    with pytest.raises(InputError, match="unknown delivery knowledge 'heard'"):
        oracle_parts(model, clip, 86, knowledge="heard")
