"""The video direction cue: whole sequences equal the patch-by-patch tracker, the targets
follow the AmbiX intensity convention, and bad input is named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.foa.encode import encode_mono
from swansphere.models.direction import (
    DirectionTracker,
    VideoDirectionConfig,
    VideoDirectionCue,
    carry_repeated_change,
    patch_intensity_targets,
)


@pytest.fixture(scope="module")
def cue() -> VideoDirectionCue:
    torch.manual_seed(0)
    return VideoDirectionCue(VideoDirectionConfig(window=6, taps=4, smoothing=3)).eval()


def test_whole_sequences_equal_the_tracker_patch_by_patch(cue):
    video = torch.randint(0, 256, (2, 13, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        whole = cue(video)
        same, power = cue(video, with_cells=True)  # what training's source maps fit
    assert whole.shape == (2, 13, 3) and power.shape == (2, 13, 128)
    assert (power >= 0).all()
    torch.testing.assert_close(same, whole)
    torch.testing.assert_close(power @ cue.directions, whole)
    for b in range(2):
        tracker = DirectionTracker(cue)
        pushed = torch.stack([tracker.push(video[b, p]) for p in range(13)])
        # The estimates are sums of 128 cells' powers times unit directions: compare at
        # the scale of the terms, not of what is left after they cancel.
        with torch.no_grad():
            scale = float(cue(video[b : b + 1, :1]).abs().max()) + 1.0
        torch.testing.assert_close(pushed, whole[b], atol=1e-5 * scale, rtol=1e-4)
        torch.testing.assert_close(tracker.direction, pushed[-3:].sum(0))


def test_the_long_filter_streams_as_whole_sequences_do_and_reaches_further_back():
    torch.manual_seed(1)
    cue = VideoDirectionCue(VideoDirectionConfig(window=3, taps=2, smoothing=2, long_taps=7))
    with torch.no_grad():  # its filter starts at zero: give it weights to carry
        cue.long_filter.weight.normal_(0.0, 0.1)
    cue.eval()
    video = torch.randint(0, 256, (1, 12, 3, 64, 128), dtype=torch.uint8)
    with torch.no_grad():
        whole = cue(video)[0]
        scale = float(whole.abs().max()) + 1.0
    tracker = DirectionTracker(cue)
    pushed = torch.stack([tracker.push(video[0, p]) for p in range(12)])
    torch.testing.assert_close(pushed, whole, atol=1e-5 * scale, rtol=1e-4)
    # Frame 0 reaches patch 7 only through the long filter: the window of 3 and the short
    # filter of 2 carry it to patch 3 at most, the long filter of 7 to patch 8.
    changed = video.clone()
    changed[0, 0] = 255 - changed[0, 0]
    with torch.no_grad():
        after = cue(changed)[0]
    assert not torch.allclose(after[7], whole[7])
    torch.testing.assert_close(after[9:], whole[9:])
    with pytest.raises(InputError, match="long_taps"):
        VideoDirectionConfig(long_taps=-1)


def test_the_pulse_reader_streams_as_whole_sequences_do_and_starts_without_effect():
    torch.manual_seed(2)
    config = VideoDirectionConfig(window=3, taps=2, smoothing=2, pulse_taps=5)
    reader = VideoDirectionCue(config).eval()
    plain = VideoDirectionCue(dataclasses.replace(config, pulse_taps=0)).eval()
    plain.load_state_dict(reader.state_dict(), strict=False)
    video = torch.randint(0, 256, (2, 14, 3, 64, 128), dtype=torch.uint8)
    video[:, 5] = video[:, 4]  # repeats, as 4 fps video gives the patches
    video[:, 6] = video[:, 4]
    video[1, 10] = video[1, 9]
    with torch.no_grad():
        # Its output layer starts at zero: the cue estimates what it did without it.
        torch.testing.assert_close(reader(video), plain(video))
        assert reader(video, with_cells=True, with_pulse=True)[2] is not None
        assert plain(video, with_cells=True, with_pulse=True)[2] is None
        torch.nn.init.normal_(reader.pulse_out[1].weight, std=2.0)
        whole, power, readings = reader(video, with_cells=True, with_pulse=True)
        assert not torch.allclose(whole, plain(video))
        scale = float(whole.abs().max()) + 1.0
    assert readings.shape == (2, 14, 128, 2)
    assert bool(((readings > 0) & (readings < 1)).all())
    torch.testing.assert_close(power @ reader.directions, whole)
    for b in range(2):
        tracker = DirectionTracker(reader)
        pushed = [tracker.push(video[b, p]) for p in range(8)]
        saved = tracker.state()
        tracker.push(video[b, 0])  # undone: the pulse window is restored with the rest
        tracker.restore(saved)
        pushed += [tracker.push(video[b, p]) for p in range(8, 14)]
        torch.testing.assert_close(torch.stack(pushed), whole[b], atol=1e-5 * scale, rtol=1e-4)
    # Frame 0 reaches patch 7 only through the pulse window of 5: the window of 3 carries
    # it to patch 2's features and so to its reading, and patch 3's step measures from it;
    # the short filter of 2 stops at patch 3.
    changed = video.clone()
    changed[:, 0] = 255 - changed[:, 0]
    with torch.no_grad():
        after = reader(changed)
    assert not torch.allclose(after[:, 7], whole[:, 7])
    torch.testing.assert_close(after[:, 8:], whole[:, 8:])
    with pytest.raises(InputError, match="pulse_taps"):
        VideoDirectionConfig(pulse_taps=-2)


def test_repeats_carry_the_change_their_frame_arrived_with():
    change = torch.arange(1.0, 8.0).reshape(1, 7, 1).expand(2, 7, 2).clone()  # (B, P, 2)
    repeated = torch.tensor(
        [[True, False, True, True, False, False, True], [True] * 7]
    )  # patch 0 repeats itself (prev is itself): it keeps its own change
    carried = carry_repeated_change(change, repeated)
    assert carried[0, :, 0].tolist() == [1.0, 2.0, 2.0, 2.0, 5.0, 6.0, 6.0]
    assert carried[1, :, 1].tolist() == [1.0] * 7
    torch.testing.assert_close(carry_repeated_change(change, torch.zeros_like(repeated)), change)


def test_change_from_frame_differs_only_at_repeats_and_streams_as_whole_sequences():
    """4 fps video conditions 5.4 patches a second, so some patches repeat their frame:
    measured from the previous patch, a repeat shows no change anywhere; measured from
    the last different frame, it keeps the change its frame came with."""
    torch.manual_seed(2)
    config = VideoDirectionConfig(window=4, taps=3, smoothing=2, long_taps=5)
    by_patch = VideoDirectionCue(config)
    with torch.no_grad():
        by_patch.long_filter.weight.normal_(0.0, 0.1)
    by_frame = VideoDirectionCue(dataclasses.replace(config, change_from="frame"))
    by_frame.load_state_dict(by_patch.state_dict())
    by_patch.eval()
    by_frame.eval()
    distinct = torch.randint(0, 256, (6, 3, 64, 128), dtype=torch.uint8)
    index = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4, 5, 5])
    video = distinct[index][None]
    with torch.no_grad():
        a, b = by_patch(video)[0], by_frame(video)[0]
        scale = float(b.abs().max()) + 1.0
        # Without repeats the two agree exactly.
        torch.testing.assert_close(by_patch(distinct[None]), by_frame(distinct[None]))
    torch.testing.assert_close(a[:2], b[:2])  # up to the first repeat
    assert not torch.allclose(a[2], b[2])
    tracker = DirectionTracker(by_frame)
    pushed = torch.stack([tracker.push(frame) for frame in video[0]])
    torch.testing.assert_close(pushed, b, atol=1e-5 * scale, rtol=1e-4)
    # restore brings back the carried change too.
    tracker = DirectionTracker(by_frame)
    for frame in video[0, :5]:
        tracker.push(frame)
    state = tracker.state()
    later = tracker.push(video[0, 5])
    tracker.push(distinct[0])
    tracker.restore(state)
    torch.testing.assert_close(tracker.push(video[0, 5]), later)
    with pytest.raises(InputError, match="change_from must be one of patch, frame"):
        VideoDirectionConfig(change_from="last")


def test_circular_padding_turns_the_cells_with_the_panorama_and_streams():
    """An equirectangular panorama wraps at azimuth +-180 deg: with circular padding an
    object across the seam is seen whole, so turning the panorama by whole cells turns
    the cell powers by as many columns, exactly; a wall of zeros at the edges does not."""
    torch.manual_seed(4)
    config = VideoDirectionConfig(window=4, taps=3, smoothing=2)
    walled = VideoDirectionCue(config).eval()
    wrapped = VideoDirectionCue(dataclasses.replace(config, azimuth_padding="circular"))
    wrapped.load_state_dict(walled.state_dict())  # the same weights, read anew
    wrapped.eval()
    video = torch.randint(0, 256, (1, 5, 3, 64, 128), dtype=torch.uint8)
    rows, cols = config.grid
    for shift in (1, 3, 8):  # cells of 8 pixels
        turned = video.roll(8 * shift, dims=-1)
        with torch.no_grad():
            power = wrapped.cell_powers(video).reshape(1, 5, rows, cols)
            power_turned = wrapped.cell_powers(turned).reshape(1, 5, rows, cols)
            wall = walled.cell_powers(video).reshape(1, 5, rows, cols)
            wall_turned = walled.cell_powers(turned).reshape(1, 5, rows, cols)
        torch.testing.assert_close(power_turned, power.roll(shift, dims=-1))
        assert not torch.allclose(wall_turned, wall.roll(shift, dims=-1))
    # It is what circular padding before every convolution gives (the wrap reaches far
    # enough: SEAM_CELLS).
    x = torch.rand(3, 9, 64, 128)
    padded = x
    for layer in wrapped.cells:
        if isinstance(layer, torch.nn.Conv2d):
            pad_rows, pad_cols = layer.padding
            padded = torch.nn.functional.pad(padded, (pad_cols, pad_cols, 0, 0), mode="circular")
            padded = torch.nn.functional.conv2d(
                padded, layer.weight, layer.bias, layer.stride, (pad_rows, 0)
            )
        else:
            padded = layer(padded)
    with torch.no_grad():
        torch.testing.assert_close(wrapped.cell_features(x), padded.flatten(2))
    # Away from the seam the two paddings see the same pixels: the middle columns agree
    # (the convolutions reach 15 pixels, under two cells, to either side).
    torch.testing.assert_close(power[..., 2:-2], wall[..., 2:-2])
    assert not torch.allclose(power[..., 0], wall[..., 0])
    with torch.no_grad():
        whole = wrapped(video)[0]
        scale = float(whole.abs().max()) + 1.0
    tracker = DirectionTracker(wrapped)
    pushed = torch.stack([tracker.push(frame) for frame in video[0]])
    torch.testing.assert_close(pushed, whole, atol=1e-5 * scale, rtol=1e-4)
    with pytest.raises(InputError, match="azimuth_padding must be one of zeros, circular"):
        VideoDirectionConfig(azimuth_padding="reflect")
    with pytest.raises(InputError, match="'circular' needs frame_width >= 16, got 8"):
        VideoDirectionConfig(frame_width=8, azimuth_padding="circular")


def test_an_estimate_depends_on_the_window_of_past_frames_only(cue):
    video = torch.randint(0, 256, (1, 12, 3, 64, 128), dtype=torch.uint8)
    changed = video.clone()
    changed[0, 0] = 255 - changed[0, 0]
    with torch.no_grad():
        a, b = cue(video)[0], cue(changed)[0]
    # Frame 0 enters patch p through the window mean (p < 6) and the filter (p < 4 + 6).
    assert not torch.allclose(a[1], b[1])
    torch.testing.assert_close(a[10:], b[10:])


def test_frames_of_another_size_are_resized_and_restore_undoes_pushes(cue):
    tracker = DirectionTracker(cue)
    frames = torch.randint(0, 256, (4, 3, 48, 96), dtype=torch.uint8)
    first = [tracker.push(f) for f in frames[:2]]
    state = tracker.state()
    later = tracker.push(frames[2])
    tracker.restore(state)
    torch.testing.assert_close(tracker.direction, first[0] + first[1])
    torch.testing.assert_close(tracker.push(frames[2]), later)
    with pytest.raises(InputError, match="one frame"):
        tracker.push(frames)
    with pytest.raises(InputError, match=r"\(B, P, 3, H, W\)"):
        cue(frames)


def test_targets_point_where_the_source_is_and_weigh_its_loudness():
    rate, patch = 8000, 400
    rng = np.random.default_rng(1)
    left = encode_mono(rng.normal(size=rate), np.pi / 2, 0.0)  # azimuth +90: +y
    quiet_front = 0.1 * encode_mono(rng.normal(size=rate), 0.0, 0.0)
    foa = np.concatenate([left, quiet_front], axis=1)  # (4, 2 s)
    targets = patch_intensity_targets(foa, patch, 41)
    assert targets.shape == (41, 3)
    first, second = targets[:20], targets[20:40]
    assert np.all(first[:, 1] > 0.9 * np.linalg.norm(first, axis=1))
    assert np.all(second[:, 0] > 0.9 * np.linalg.norm(second, axis=1))
    assert np.linalg.norm(first, axis=1).mean() > 50 * np.linalg.norm(second, axis=1).mean()
    np.testing.assert_array_equal(targets[40], 0.0)  # past the end
    # Their sum is the clip-level intensity over the clip's W power.
    expected = np.mean(foa[0] * foa[[3, 1, 2]], axis=1) / np.mean(foa[0] ** 2)
    np.testing.assert_allclose(targets.sum(0) * patch / foa.shape[1], expected, rtol=1e-9)


def test_captions_join_each_patch_and_start_without_effect():
    torch.manual_seed(1)
    config = VideoDirectionConfig(window=4, taps=3, smoothing=2, text_dim=16)
    captioned = VideoDirectionCue(config).eval()
    plain = VideoDirectionCue(VideoDirectionConfig(window=4, taps=3, smoothing=2)).eval()
    plain.load_state_dict(captioned.state_dict(), strict=False)
    video = torch.randint(0, 256, (2, 9, 3, 64, 128), dtype=torch.uint8)
    text = torch.nn.functional.normalize(torch.randn(2, 9, 16), dim=-1)
    with torch.no_grad():
        # The caption layers start at zero: any caption, or none, changes nothing yet.
        torch.testing.assert_close(captioned(video, text), plain(video))
        torch.nn.init.normal_(captioned.caption.weight, std=0.5)
        torch.nn.init.normal_(captioned.null_caption)
        per_patch = captioned(video, text)
        assert not torch.allclose(per_patch, plain(video))
        # One caption per clip is that caption on every patch; a zero row is no caption.
        torch.testing.assert_close(
            captioned(video, text[:, 0]), captioned(video, text[:, :1].expand_as(text))
        )
        torch.testing.assert_close(captioned(video, torch.zeros(2, 16)), captioned(video))
        scale = float(captioned(video[:1, :1]).abs().max()) + 1.0
    # The tracker reads each patch's caption as the whole sequence does.
    tracker = DirectionTracker(captioned)
    pushed = torch.stack([tracker.push(video[0, p], text[0, p]) for p in range(9)])
    torch.testing.assert_close(pushed, per_patch[0], atol=1e-5 * scale, rtol=1e-4)
    with pytest.raises(InputError, match="16-d caption"):
        captioned(video, torch.zeros(2, 8))


def test_bad_configs_and_inputs_are_named():
    with pytest.raises(InputError, match="text_dim"):
        VideoDirectionConfig(text_dim=-1)
    with pytest.raises(InputError, match="window"):
        VideoDirectionConfig(window=0)
    with pytest.raises(InputError, match="multiple of 8"):
        VideoDirectionConfig(frame_height=60)
    with pytest.raises(InputError, match="patch_seconds"):
        VideoDirectionConfig(patch_seconds=0.0)
    with pytest.raises(InputError, match="unknown VideoDirectionConfig"):
        VideoDirectionConfig.from_dict({"depth": 3})
    with pytest.raises(InputError, match="silent"):
        patch_intensity_targets(np.zeros((4, 800)), 400, 2)
    with pytest.raises(InputError, match=r"\(4, T\)"):
        patch_intensity_targets(np.zeros((2, 800)), 400, 2)
