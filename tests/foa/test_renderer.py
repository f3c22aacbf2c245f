import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.decoder import Decoder
from swansphere.foa.encode import encode_mono
from swansphere.foa.renderer import BlockRenderer
from swansphere.foa.rotation import head_compensation, rotate_foa, ypr_to_quat


def random_fir_decoder(outputs=2, taps=300, rate=48000, seed=0):
    rng = np.random.default_rng(seed)
    filters = rng.standard_normal((outputs, 4, taps)) * np.exp(-np.arange(taps) / 40)
    return Decoder(filters, rate, tuple(f"o{i}" for i in range(outputs)), "random-fir")


def stream(renderer, foa):
    b = renderer.block_size
    blocks = [renderer.process(foa[:, i : i + b]) for i in range(0, foa.shape[1], b)]
    return np.concatenate(blocks, axis=-1)


@pytest.mark.parametrize("block", [32, 100, 128, 1024, 4096])
def test_streaming_equals_offline_decode_at_fixed_orientation(block):
    rng = np.random.default_rng(block)
    decoder = random_fir_decoder()
    foa = rng.standard_normal((4, block * 6))
    q = ypr_to_quat(35, -10, 5)
    renderer = BlockRenderer(decoder, block, listeners=1)
    renderer.set_orientations(q, immediate=True)  # start settled: compare the steady state
    out = stream(renderer, foa)[0]
    expected = decoder.apply(rotate_foa(foa, head_compensation(q)))
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_many_listeners_match_single_listener_renders():
    rng = np.random.default_rng(5)
    decoder = random_fir_decoder(taps=129)
    foa = rng.standard_normal((4, 128 * 8))
    quats = [ypr_to_quat(*rng.uniform(-90, 90, 3)) for _ in range(5)]
    batch = BlockRenderer(decoder, 128, listeners=5, transition_ms=5)
    batch.set_orientations(np.stack(quats))
    together = stream(batch, foa)
    for i, q in enumerate(quats):
        single = BlockRenderer(decoder, 128, listeners=1, transition_ms=5)
        single.set_orientations(q)
        np.testing.assert_allclose(together[i], stream(single, foa)[0], atol=1e-9)


def test_fast_head_turn_is_click_free():
    """A 200 Hz tone during a 90-degree jump per block: no high-frequency splatter."""
    rate, block = 48000, 128
    t = np.arange(block * 180) / rate
    foa = encode_mono(np.sin(2 * np.pi * 200 * t), 0.0, 0.0)
    decoder = Decoder(
        np.array([[[0.5], [0.5], [0.0], [0.5]]]), rate, ("cardioid",), "left-cardioid"
    )

    def high_band_ratio(y):
        spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
        freqs = np.fft.rfftfreq(y.size, 1 / rate)
        return spectrum[freqs > 2000].sum() / spectrum.sum(), np.max(np.abs(np.diff(y)))

    renderer = BlockRenderer(decoder, block, transition_ms=20)
    smooth, stepped = [], []
    for i in range(0, foa.shape[1], block):
        q = ypr_to_quat(90.0 * (i // block), 0, 0)
        renderer.set_orientations(q)
        smooth.append(renderer.process(foa[:, i : i + block])[0, 0])
        # What a renderer that swaps the rotation at block edges would output.
        stepped.append(decoder.apply(rotate_foa(foa[:, i : i + block], head_compensation(q)))[0])
    smooth_ratio, smooth_jump = high_band_ratio(np.concatenate(smooth))
    step_ratio, step_jump = high_band_ratio(np.concatenate(stepped))
    # A 200 Hz tone of amplitude <= 1 moves at most 2*pi*200/48000 = 0.026 per sample.
    assert smooth_jump < 0.03
    assert smooth_ratio < 1e-4
    assert step_jump > 0.1 and step_ratio > 100 * smooth_ratio  # the check catches steps


def test_orientation_reaches_target_and_stays():
    decoder = random_fir_decoder(taps=1)
    renderer = BlockRenderer(decoder, 64, transition_ms=10, sample_rate=48000)
    q = ypr_to_quat(120, 30, 0)
    renderer.set_orientations(q)
    for _ in range(20):
        renderer.process(np.zeros((4, 64)))
    assert abs(abs(np.dot(renderer._current[0], q)) - 1) < 1e-12


def test_bad_input_is_rejected():
    decoder = random_fir_decoder()
    with pytest.raises(InputError, match="block size"):
        BlockRenderer(decoder, 16)
    renderer = BlockRenderer(decoder, 64)
    with pytest.raises(InputError, match="shape"):
        renderer.process(np.zeros((3, 64)))
    with pytest.raises(InputError, match="non-finite"):
        renderer.process(np.full((4, 64), np.nan))
    with pytest.raises(InputError, match="quaternion"):
        renderer.set_orientations(np.array([np.nan, 0, 0, 1.0]))
    with pytest.raises(InputError, match="zero norm"):
        renderer.set_orientations(np.zeros(4))
    with pytest.raises(InputError, match="designed for"):
        BlockRenderer(decoder, 64, sample_rate=44100)


def test_compensation_weights_match_foa_rotation_matrix():
    from swansphere.foa.renderer import _PAIRS, _compensation_weights
    from swansphere.foa.rotation import foa_rotation_matrix, quat_to_matrix

    q = np.random.default_rng(0).standard_normal((50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    full = foa_rotation_matrix(np.swapaxes(quat_to_matrix(q), -1, -2))
    expected = np.stack([full[:, k, j] for k, j in _PAIRS], axis=1)
    np.testing.assert_allclose(_compensation_weights(q), expected, atol=1e-12)
    # The pairs cover every non-zero entry of a head-compensation matrix.
    assert np.count_nonzero(np.abs(full[0]) > 1e-12) <= len(_PAIRS)
