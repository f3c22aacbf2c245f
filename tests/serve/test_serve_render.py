"""Model-rate FOA chunks -> output blocks: aligned with the offline path, head tracked."""

import numpy as np
import pytest

from swansphere.foa.binaural import interaural_level_difference
from swansphere.foa.encode import encode_mono
from swansphere.foa.formats import build_decoder
from swansphere.foa.io import resample
from swansphere.foa.rotation import ypr_to_quat
from swansphere.serve.render import OutputRenderer, decode_pcm, encode_pcm
from swansphere.serve.types import OutputSpec


def _render_all(renderer, foa, patch=4096):
    out = []
    for i in range(0, foa.shape[1], patch):
        renderer.push(foa[:, i : i + patch])
        while renderer.ready():
            out.append(renderer.render())
    renderer.flush()
    while renderer.ready():
        out.append(renderer.render())
    return np.concatenate(out, axis=1)


def test_stream_equals_offline_resample_and_decode():
    rng = np.random.default_rng(1)
    foa = rng.standard_normal((4, 4096 * 3)) * 0.1
    spec = OutputSpec("stereo", 48000, chunk_samples=512)
    y = _render_all(OutputRenderer(spec, 22050), foa)
    offline = build_decoder("stereo", 48000).apply(resample(foa, 22050, 48000))
    n = offline.shape[1] - 200  # the offline resampler looks ahead at the very end
    assert y.shape[1] >= offline.shape[1]
    np.testing.assert_allclose(y[:, :n], offline[:, :n], atol=1e-5)


@pytest.mark.parametrize("fmt", ["foa", "binaural", "5.1", "7.1.4"])
def test_formats_have_their_channel_counts(fmt):
    r = OutputRenderer(OutputSpec(fmt, 44100, chunk_samples=256), 22050)
    r.push(np.zeros((4, 4096)))
    assert r.render().shape == (len(r.layout), 256)


def test_head_yaw_swaps_interaural_level_difference():
    rng = np.random.default_rng(2)
    foa = encode_mono(rng.standard_normal(22050) * 0.1, np.deg2rad(30.0), 0.0)
    ild = {}
    for yaw in (90.0, -90.0):
        spec = OutputSpec("binaural", 48000, chunk_samples=1024)
        r = OutputRenderer(spec, 22050, head=ypr_to_quat(yaw, 0, 0))
        ild[yaw] = interaural_level_difference(_render_all(r, foa)[:, 4800:])
    # Head turned left (+90): the source at +30 deg is heard on the right, and vice versa.
    assert ild[90.0] < -3 and ild[-90.0] > 3


def test_pcm_round_trip_and_int16_clipping():
    x = np.array([[0.5, -1.5], [0.25, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(decode_pcm(encode_pcm(x, "float32"), 2, "float32"), x)
    y = decode_pcm(encode_pcm(x, "int16"), 2, "int16")
    np.testing.assert_allclose(y, np.clip(x, -1, 32767 / 32768), atol=1 / 32768)
