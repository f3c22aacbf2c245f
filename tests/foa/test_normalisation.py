import numpy as np
import pytest

from swansphere.errors import InputError
from swansphere.foa.encode import sh_gains
from swansphere.foa.normalisation import ambix_to_fuma, fuma_to_ambix, n3d_to_sn3d, sn3d_to_n3d


def test_fuma_reference_values():
    # Front source: AmbiX (1, 0, 0, 1) is FuMa (1/sqrt2, X=1, Y=0, Z=0).
    fuma = ambix_to_fuma(sh_gains(0.0, 0.0)[:, None])[:, 0]
    np.testing.assert_allclose(fuma, [1 / np.sqrt(2), 1, 0, 0], atol=1e-12)
    left = ambix_to_fuma(sh_gains(np.pi / 2, 0.0)[:, None])[:, 0]
    np.testing.assert_allclose(left, [1 / np.sqrt(2), 0, 1, 0], atol=1e-12)


def test_round_trips():
    x = np.random.default_rng(0).standard_normal((4, 32))
    np.testing.assert_allclose(fuma_to_ambix(ambix_to_fuma(x)), x, atol=1e-12)
    np.testing.assert_allclose(n3d_to_sn3d(sn3d_to_n3d(x)), x, atol=1e-12)


def test_n3d_dipoles_have_unit_mean_power():
    # N3D: every channel of a random plane wave has mean power 1 over the sphere.
    rng = np.random.default_rng(2)
    v = rng.standard_normal((20000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    az, el = np.arctan2(v[:, 1], v[:, 0]), np.arcsin(v[:, 2])
    n3d = sn3d_to_n3d(sh_gains(az, el).T)
    np.testing.assert_allclose(np.mean(n3d**2, axis=1), 1.0, atol=0.03)


def test_wrong_channel_count():
    with pytest.raises(InputError, match="4 first-order channels"):
        ambix_to_fuma(np.zeros((3, 10)))
