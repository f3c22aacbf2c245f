"""Tests for swansphere.foa.hrtf: SOFA loading, our direction convention, resampling."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.hrtf import (
    DEFAULT_SOFA,
    SUPPORTED_RATES,
    HrirSet,
    load_default_hrirs,
    load_sofa,
)

pytestmark = pytest.mark.skipif(not DEFAULT_SOFA.is_file(), reason="libmysofa1 not installed")


def _energy_db(irs: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.sum(irs**2, axis=-1))


def _response_db(ir: np.ndarray, rate: int, freq: float) -> float:
    """Magnitude in dB of an FIR at one frequency (direct DTFT, no FFT grid)."""
    n = np.arange(ir.size)
    return float(20 * np.log10(abs(np.sum(ir * np.exp(-2j * np.pi * freq * n / rate)))))


def write_sofa(path: Path, **overrides: object) -> Path:
    """A tiny SimpleFreeFieldHRIR file: 4 directions, 2 ears, 8 taps; overrides replace parts.

    Keys: conventions (str or None to omit), ir (array or None), positions (array or None),
    position_type, rate (array or None), delay (array), receivers (array).
    """
    ir = np.zeros((4, 2, 8))
    ir[:, 0, 1] = 1.0  # left ear: impulse at 1
    ir[:, 1, 2] = 0.5  # right ear: half as loud, one sample later
    settings = {
        "conventions": "SimpleFreeFieldHRIR",
        "ir": ir,
        "positions": np.array([[0, 0, 1.2], [90, 0, 1.2], [180, 30, 1.2], [270, -30, 1.2]]),
        "position_type": "spherical",
        "rate": np.array([48000.0]),
        "delay": None,
        "receivers": None,
    }
    settings.update(overrides)
    with h5py.File(path, "w") as f:
        f.attrs["Conventions"] = "SOFA"
        if settings["conventions"] is not None:
            f.attrs["SOFAConventions"] = settings["conventions"]
        if settings["ir"] is not None:
            f["Data.IR"] = settings["ir"]
        if settings["positions"] is not None:
            f["SourcePosition"] = settings["positions"]
            f["SourcePosition"].attrs["Type"] = settings["position_type"]
            units = "metre" if settings["position_type"] == "cartesian" else "degree, degree, metre"
            f["SourcePosition"].attrs["Units"] = units
        if settings["rate"] is not None:
            f["Data.SamplingRate"] = settings["rate"]
        if settings["delay"] is not None:
            f["Data.Delay"] = settings["delay"]
        if settings["receivers"] is not None:
            f["ReceiverPosition"] = settings["receivers"]
    return path


# --- the real MIT KEMAR set -----------------------------------------------------------------


def test_kemar_loads_with_expected_shape_rate_and_grid():
    hrirs = load_sofa()
    assert hrirs.irs.shape == (710, 2, 512)
    assert hrirs.sample_rate == 44100
    assert hrirs.source == str(DEFAULT_SOFA)
    elevations = np.unique(np.round(np.degrees(hrirs.elevation)))
    np.testing.assert_array_equal(elevations, np.arange(-40, 91, 10))
    assert np.all(np.isfinite(hrirs.irs))


def test_kemar_directions_follow_our_convention():
    """Azimuth counter-clockwise from the front: +90 deg is the listener's left."""
    hrirs = load_sofa()
    left = hrirs.nearest(np.pi / 2, 0.0)
    right = hrirs.nearest(-np.pi / 2, 0.0)
    front = hrirs.nearest(0.0, 0.0)
    assert np.degrees(hrirs.azimuth[left]) == pytest.approx(90.0)
    assert np.degrees(hrirs.azimuth[right]) % 360 == pytest.approx(270.0)
    level_left = _energy_db(hrirs.irs[left])
    level_right = _energy_db(hrirs.irs[right])
    assert level_left[0] - level_left[1] > 10.0  # left ear about 12 dB louder
    assert level_right[1] - level_right[0] > 10.0
    assert abs(np.diff(_energy_db(hrirs.irs[front]))[0]) < 1.0
    # The left ear hears a left source first.
    onset = np.argmax(np.abs(hrirs.irs[left]) > 0.2 * np.abs(hrirs.irs[left]).max(), axis=1)
    assert onset[0] < onset[1]


def test_nearest_finds_the_measured_direction():
    hrirs = load_sofa()
    m = hrirs.nearest(np.radians(32.0), np.radians(11.0))  # grid: 5 deg azimuth at +10 deg
    assert np.degrees(hrirs.azimuth[m]) == pytest.approx(30.0)
    assert np.degrees(hrirs.elevation[m]) == pytest.approx(10.0)


@pytest.mark.parametrize("rate", [48000, 22050, 96000])
def test_resampling_preserves_length_ratio_and_response(rate):
    hrirs = load_sofa()
    out = hrirs.resampled(rate)
    assert out.sample_rate == rate
    assert out.irs.shape == (710, 2, int(np.ceil(512 * rate / 44100)))
    np.testing.assert_array_equal(out.azimuth, hrirs.azimuth)
    m = hrirs.nearest(np.pi / 4, 0.0)
    for freq in (500.0, 1000.0, 5000.0):
        for ear in range(2):
            before = _response_db(hrirs.irs[m, ear], 44100, freq)
            after = _response_db(out.irs[m, ear], rate, freq)
            assert after == pytest.approx(before, abs=0.3)
    # Energy of the IR scales with the band kept: old/new rate when upsampling.
    if rate > 44100:
        ratio = np.sum(out.irs**2) / np.sum(hrirs.irs**2)
        assert ratio == pytest.approx(44100 / rate, rel=0.03)


def test_resampling_to_the_same_rate_is_a_no_op_and_bad_rates_are_refused():
    hrirs = load_sofa()
    assert hrirs.resampled(44100) is hrirs
    for rate in (12345, 0, "fast", 44100.5):
        with pytest.raises(InputError, match=r"supported rates: .*48000"):
            hrirs.resampled(rate)
    assert 44100 in SUPPORTED_RATES and 48000 in SUPPORTED_RATES


def test_default_set_is_cached_and_read_only():
    first = load_default_hrirs(48000)
    assert load_default_hrirs(48000) is first
    assert first.sample_rate == 48000
    with pytest.raises(ValueError):
        first.irs[0, 0, 0] = 1.0


# --- small synthetic SOFA files -------------------------------------------------------------


def test_tiny_spherical_file_loads(tmp_path):
    hrirs = load_sofa(write_sofa(tmp_path / "ok.sofa"))
    assert hrirs.irs.shape == (4, 2, 8)
    assert hrirs.sample_rate == 48000
    np.testing.assert_allclose(np.degrees(hrirs.azimuth), [0, 90, 180, 270])
    np.testing.assert_allclose(np.degrees(hrirs.elevation), [0, 0, 30, -30])


def test_cartesian_positions_are_converted(tmp_path):
    positions = np.array([[1.0, 0, 0], [0, 2.0, 0], [-1.0, 0, 1.0], [0, -1.0, 0]])
    path = write_sofa(tmp_path / "cart.sofa", positions=positions, position_type="cartesian")
    hrirs = load_sofa(path)
    np.testing.assert_allclose(np.degrees(hrirs.azimuth), [0, 90, 180, -90], atol=1e-9)
    np.testing.assert_allclose(np.degrees(hrirs.elevation), [0, 0, 45, 0], atol=1e-9)


def test_receivers_on_the_wrong_side_are_swapped(tmp_path):
    receivers = np.array([[[0.0], [-0.09], [0.0]], [[0.0], [0.09], [0.0]]])  # receiver 0 right
    hrirs = load_sofa(write_sofa(tmp_path / "swap.sofa", receivers=receivers))
    assert hrirs.irs[0, 1, 1] == 1.0 and hrirs.irs[0, 0, 2] == 0.5


def test_integer_delays_are_prepended(tmp_path):
    hrirs = load_sofa(write_sofa(tmp_path / "delay.sofa", delay=np.array([[3.0, 0.0]])))
    assert hrirs.irs.shape == (4, 2, 11)
    assert hrirs.irs[0, 0, 4] == 1.0 and hrirs.irs[0, 1, 2] == 0.5


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"conventions": "GeneralFIR"}, "SOFAConventions is 'GeneralFIR'"),
        ({"conventions": None}, "SOFAConventions is None"),
        ({"ir": None}, "missing variable Data.IR"),
        ({"ir": np.zeros((4, 8))}, r"Data.IR must have shape \(M, 2, N\)"),
        ({"ir": np.zeros((4, 1, 8))}, "1 receivers, expected 2"),
        ({"ir": np.full((4, 2, 8), np.nan)}, "non-finite"),
        ({"positions": None}, "missing variable SourcePosition"),
        ({"positions": np.zeros((3, 3))}, r"SourcePosition must have shape \(4, 3\)"),
        ({"positions": np.zeros((4, 2))}, r"SourcePosition must have shape \(4, 3\)"),
        ({"position_type": "polar"}, "neither spherical nor cartesian"),
        ({"rate": None}, "missing variable Data.SamplingRate"),
        ({"rate": np.array([0.0])}, "Data.SamplingRate must be positive"),
        ({"rate": np.array([np.nan])}, "Data.SamplingRate must be positive"),
        ({"delay": np.array([[0.5, 0.0]])}, "Data.Delay must hold whole"),
    ],
)
def test_bad_sofa_files_raise_input_error_naming_file_and_problem(tmp_path, overrides, problem):
    path = write_sofa(tmp_path / "bad.sofa", **overrides)
    with pytest.raises(InputError, match=problem) as info:
        load_sofa(path)
    assert str(path) in str(info.value)


def test_missing_and_non_hdf5_files_raise_input_error(tmp_path):
    missing = tmp_path / "nowhere.sofa"
    with pytest.raises(InputError, match="does not exist"):
        load_sofa(missing)
    text = tmp_path / "notes.sofa"
    text.write_text("this is not HDF5\n")
    with pytest.raises(InputError, match="not a readable HDF5/SOFA file") as info:
        load_sofa(text)
    assert str(text) in str(info.value)


def test_hrir_set_validates_its_arrays():
    with pytest.raises(InputError, match=r"\(M, 2, N\)"):
        HrirSet(np.zeros((3, 1, 8)), np.zeros(3), np.zeros(3), 48000, "test")
    with pytest.raises(InputError, match="directions"):
        HrirSet(np.zeros((3, 2, 8)), np.zeros(2), np.zeros(3), 48000, "test")
    with pytest.raises(InputError, match="non-finite"):
        HrirSet(np.full((3, 2, 8), np.inf), np.zeros(3), np.zeros(3), 48000, "test")
