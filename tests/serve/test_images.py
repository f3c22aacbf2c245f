import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.serve.client import encode_jpeg
from swansphere.serve.images import decode_image, probe_image
from swansphere.serve.types import EncodedImage


def test_probe_reads_size_and_decode_scales_jpeg_down(make_panorama):
    img = make_panorama(1024)
    probed = probe_image(EncodedImage("jpeg", encode_jpeg(img)), equirect=True)
    assert (probed.width, probed.height) == (1024, 512)
    rgb = decode_image(probed, max_width=128)
    assert rgb.shape == (64, 128, 3)  # DCT-scaled by 1/8 to the width asked
    assert rgb.flags.writeable


@pytest.mark.parametrize(
    "image,equirect,match",
    [
        (EncodedImage("jpeg", b"\xff\xd8garbage"), True, "not a readable image"),
        (EncodedImage("png", encode_jpeg(np.zeros((32, 64, 3), np.uint8))), True, "not PNG"),
        (EncodedImage("raw", b"\0" * 10, 4, 2), True, "needs 24 bytes"),
        (EncodedImage("raw", b"\0" * 48, 4, 4), True, "twice as wide"),
        (EncodedImage("raw", b"\0" * 3, 1, 1), False, "too small"),
        (EncodedImage("raw", b"", 100000, 50000), True, "too large"),
        (EncodedImage("gif", b"GIF89a"), True, "unknown image kind"),
    ],
)
def test_bad_images_are_named(image, equirect, match):
    with pytest.raises(InputError, match=match):
        probe_image(image, equirect)


def test_raw_round_trip(make_panorama):
    img = make_panorama(64)
    enc = EncodedImage("raw", img.tobytes(), 64, 32)
    np.testing.assert_array_equal(decode_image(probe_image(enc, True)), img)
