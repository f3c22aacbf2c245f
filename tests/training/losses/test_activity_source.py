"""SVAC's source supervision: the sounding sources' activity map of a procedural clip
(losses.svac.source_activity_map), the correlation loss against the video side
(losses.svac.activity_source_loss), and the sources' map over the token grid that the
spatial code's saliency is fitted to (losses.svac.source_saliency_map)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.foa.encode import direction_to_vector
from swansphere.foa.harmonics import real_spherical_harmonics
from swansphere.foa.panorama import grid_directions
from swansphere_training.corpus.synth import ACTIVITY_RANGE_DB
from swansphere_training.losses.svac import (
    activity_source_loss,
    source_activity_map,
    source_saliency_map,
)


def static_source(azimuth_deg: float, distance_m: float, level_db: float, activity) -> dict:
    return {
        "class": "siren",
        "level_db": level_db,
        "power_db": -10.0,
        "activity": list(activity),
        "trajectory": {
            "t": [0.0, 10.0],
            "azimuth_deg": [azimuth_deg] * 2,
            "elevation_deg": [0.0] * 2,
            "distance_m": [distance_m] * 2,
        },
    }


def meta_of(*sources, distractors=()) -> dict:
    return {
        "video": {"fps": 4.0, "frames": 8},
        "duration_s": 2.0,
        "sources": list(sources),
        "distractors": list(distractors),
    }


def harmonics_at(azimuth_deg: float, order: int = 3) -> np.ndarray:
    unit = direction_to_vector(math.radians(azimuth_deg), 0.0).reshape(1, 3)
    return real_spherical_harmonics(torch.from_numpy(unit), order).numpy()[0]


def test_source_map_weighs_each_source_by_power_pulse_and_distance() -> None:
    pulse = [1, 0, 1, 0, 1, 0, 1, 0]
    left = static_source(90.0, 2.0, 0.0, pulse)
    times = np.arange(8) / 4.0
    got = source_activity_map(meta_of(left), times, order=3)
    assert got.shape == (8, 16)
    # Loud frames against quiet ones: the pulse's range as a power; the direction is Y(left).
    quiet = 10 ** (-ACTIVITY_RANGE_DB / 10)
    mean = (1 + quiet) / 2
    power = 10 ** (-10 / 10) / 2.0**2
    np.testing.assert_allclose(got[0], power / mean * harmonics_at(90.0), rtol=1e-5)
    np.testing.assert_allclose(got[1], power * quiet / mean * harmonics_at(90.0), rtol=1e-4)
    # A second source adds its own map; a silent look-alike adds nothing.
    front = static_source(0.0, 1.0, -6.0, [1] * 8)
    decoy = {"class": "siren", "azimuth_deg": -90.0, "activity": [1, 0] * 4}
    both = source_activity_map(meta_of(left, front, distractors=[decoy]), times, order=3)
    alone = source_activity_map(meta_of(front), times, order=3)
    np.testing.assert_allclose(both, got + alone, rtol=1e-5)


def test_source_map_is_none_without_what_it_needs() -> None:
    left = static_source(90.0, 2.0, 0.0, [1] * 8)
    times = np.arange(4) / 4.0
    assert source_activity_map({**meta_of(left), "video": None}, times, 3) is None
    assert source_activity_map(meta_of(), times, 3) is None
    unmeasured = {k: v for k, v in left.items() if k != "power_db"}
    assert source_activity_map(meta_of(unmeasured), times, 3) is None


def test_loss_is_one_minus_the_correlation_over_time() -> None:
    g = torch.Generator().manual_seed(0)
    video = torch.randn(3, 8, 16, generator=g)
    source = video * 1e-5  # the sources' powers are tiny: the loss is scale-free
    valid = torch.tensor([True, True, True])
    loss, corr = activity_source_loss(3.0 * video + 7.0, source, valid)  # nor an offset
    assert float(loss) == pytest.approx(0.0, abs=1e-4)
    assert float(corr) == pytest.approx(1.0, abs=1e-4)
    loss, _ = activity_source_loss(-video, source, valid)
    assert float(loss) == pytest.approx(2.0, abs=1e-4)
    # A clip left out (invalid, or a map that never changes) does not count.
    noisy = video.clone()
    noisy[1] = torch.randn(8, 16, generator=g)
    loss, _ = activity_source_loss(noisy, source, torch.tensor([True, False, True]))
    assert float(loss) == pytest.approx(0.0, abs=1e-4)
    still = source.clone()
    still[1] = still[1, :1].expand(8, -1)
    loss, _ = activity_source_loss(noisy, still, valid)
    assert float(loss) == pytest.approx(0.0, abs=1e-4)


def test_loss_without_any_valid_clip_is_zero_and_keeps_the_graph() -> None:
    video = torch.randn(2, 8, 16, requires_grad=True)
    loss, corr = activity_source_loss(video, torch.zeros(2, 8, 16), torch.tensor([True, False]))
    assert float(loss.detach()) == 0.0 and float(corr) == 0.0
    loss.backward()
    assert video.grad is not None


def test_loss_names_mismatched_maps() -> None:
    with pytest.raises(InputError, match=r"\(B, F, S\)"):
        activity_source_loss(torch.zeros(2, 8, 16), torch.zeros(2, 8, 9), torch.ones(2).bool())


def test_saliency_map_puts_each_step_on_the_sounding_sources() -> None:
    """Per tubelet step, rows summing to 1 over the 4 x 8 token grid, peaked on the cells
    of the sources, each weighed by the power it delivers; look-alikes get nothing."""
    cells = grid_directions(4, 8)
    left = static_source(90.0, 2.0, 0.0, [1] * 8)
    times = np.arange(8) / 4.0
    got = source_saliency_map(meta_of(left), times, cells, tubelet=2)
    assert got.shape == (4, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    nearest = np.argmax(cells @ direction_to_vector(math.radians(90.0), 0.0))
    assert (got.argmax(axis=1) == nearest).all()
    # A louder source in front takes the larger share; a silent look-alike changes nothing.
    front = static_source(0.0, 1.0, 6.0, [1] * 8)
    decoy = {"class": "siren", "azimuth_deg": -90.0, "activity": [1, 0] * 4}
    both = source_saliency_map(meta_of(left, front, distractors=[decoy]), times, cells, 2)
    ahead = np.argmax(cells @ direction_to_vector(0.0, 0.0))
    assert (both.argmax(axis=1) == ahead).all()
    assert (both[:, nearest] > 0.01).all()
    assert both[:, nearest].sum() < got[:, nearest].sum()
    # Five frames make three steps, the last padded with its last frame.
    moving = static_source(90.0, 2.0, 0.0, [1] * 8)
    moving["trajectory"]["azimuth_deg"] = [0.0, 100.0]
    five = source_saliency_map(meta_of(moving), times[:5], cells, 2)
    single = source_saliency_map(meta_of(moving), times[4:5], cells, 1)
    assert five.shape == (3, 32)
    np.testing.assert_allclose(five[2], single[0], rtol=1e-5)


def test_saliency_map_is_none_without_what_it_needs() -> None:
    cells = grid_directions(4, 8)
    left = static_source(90.0, 2.0, 0.0, [1] * 8)
    times = np.arange(4) / 4.0
    assert source_saliency_map({**meta_of(left), "video": None}, times, cells, 2) is None
    assert source_saliency_map(meta_of(), times, cells, 2) is None
    unmeasured = {k: v for k, v in left.items() if k != "power_db"}
    assert source_saliency_map(meta_of(unmeasured), times, cells, 2) is None
