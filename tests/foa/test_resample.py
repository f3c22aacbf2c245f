"""Streaming resampler: equals the offline resample_poly (shifted by its delay) for any split."""

import numpy as np
import pytest
from scipy.signal import upfirdn

from swansphere.errors import InputError
from swansphere.foa.io import resample
from swansphere.foa.resample import StreamingResampler, resample_filter


@pytest.mark.parametrize("rate,target", [(22050, 48000), (22050, 44100), (48000, 22050)])
def test_streaming_equals_offline_for_random_splits(rate, target):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6000))
    stream = StreamingResampler(rate, target, 4)
    cuts = np.sort(rng.integers(0, x.shape[1], 12))
    parts = [stream.process(p) for p in np.split(x, cuts, axis=1)]
    y = np.concatenate(parts, axis=1)
    offline = resample(x, rate, target)
    d = stream.delay
    n = y.shape[1] - d  # samples whose inputs have all arrived
    assert n > 0.9 * offline.shape[1]
    np.testing.assert_allclose(y[:, d:], offline[:, :n], atol=1e-10)
    # And the causal run is exactly upfirdn of the same filter.
    h, up, down, _ = resample_filter(rate, target)
    np.testing.assert_allclose(y, upfirdn(h, x, up, down, axis=-1)[:, : y.shape[1]], atol=1e-10)


def test_delay_is_short_and_sine_keeps_its_level():
    stream = StreamingResampler(22050, 48000, 1)
    assert stream.delay / 48000 < 1e-3  # under a millisecond
    t = np.arange(22050) / 22050
    y = np.concatenate(
        [stream.process(b) for b in np.split(np.sin(2 * np.pi * 1000 * t)[None], 9, 1)], 1
    )
    steady = y[0, 4800:-4800]
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(np.sqrt(0.5), rel=5e-3)  # pass-band ripple


def test_identity_rate_and_bad_shape():
    stream = StreamingResampler(48000, 48000, 2)
    x = np.ones((2, 10))
    np.testing.assert_array_equal(stream.process(x), x)
    with pytest.raises(InputError, match="shape"):
        stream.process(np.ones((3, 10)))
