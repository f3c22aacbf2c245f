import numpy as np
import pytest
import soundfile as sf

from swansphere.errors import InputError
from swansphere.foa.io import check_sample_rate, read_foa, write_audio, write_foa


def test_foa_round_trip_is_wavex_float(tmp_path):
    foa = np.random.default_rng(0).uniform(-0.9, 0.9, (4, 1000))
    path = write_foa(tmp_path / "a.wav", foa, 48000)
    info = sf.info(str(path))
    assert info.format == "WAVEX" and info.channels == 4 and info.subtype == "FLOAT"
    back, rate = read_foa(path)
    assert rate == 48000
    np.testing.assert_allclose(back, foa, atol=1e-7)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    """Not mkstemp's private 0600: another account (a DAW, a web server) reads the output
    as it would any file this user writes."""
    (tmp_path / "plain").write_bytes(b"")
    path = write_audio(tmp_path / "a.wav", np.zeros((2, 10)), 48000)
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_wrong_channel_count_is_named(tmp_path):
    write_audio(tmp_path / "st.wav", np.zeros((2, 100)), 48000)
    with pytest.raises(InputError, match="2 channel"):
        read_foa(tmp_path / "st.wav")


def test_nan_samples_and_missing_and_garbage(tmp_path):
    sf.write(str(tmp_path / "nan.wav"), np.full((10, 4), np.nan), 48000, subtype="FLOAT")
    with pytest.raises(InputError, match="non-finite"):
        read_foa(tmp_path / "nan.wav")
    with pytest.raises(InputError, match="not found"):
        read_foa(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(InputError, match="cannot read"):
        read_foa(tmp_path / "junk.wav")
    with pytest.raises(InputError, match="non-finite"):
        write_foa(tmp_path / "out.wav", np.full((4, 10), np.inf), 48000)


def test_sample_rates():
    assert check_sample_rate(44100) == 44100
    with pytest.raises(InputError, match="unsupported sample rate 12345"):
        check_sample_rate(12345)
