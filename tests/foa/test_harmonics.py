"""Real spherical harmonics (swansphere.foa.harmonics)."""

import math

import numpy as np
import pytest
import torch

from swansphere.errors import InputError
from swansphere.foa.harmonics import (
    harmonic_orders,
    harmonics_count,
    real_spherical_harmonics,
)
from swansphere.foa.rotation import ypr_to_matrix


def fibonacci_sphere(n: int) -> torch.Tensor:
    """n nearly uniform unit vectors (n, 3), float64: equal-area quadrature points."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar = torch.arccos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5**0.5) * i
    return torch.stack(
        [polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], dim=-1
    )


def test_orthonormal_over_the_sphere() -> None:
    points = fibonacci_sphere(100_000)
    y = real_spherical_harmonics(points, 3)
    gram = y.T @ y * (4 * math.pi / points.shape[0])
    assert y.shape == (100_000, harmonics_count(3)) == (100_000, 16)
    assert torch.allclose(gram, torch.eye(16, dtype=gram.dtype), atol=1e-4)


def test_order_one_is_the_ambix_dipole_order() -> None:
    d = torch.tensor([[0.6, 0.0, 0.8], [0.0, 1.0, 0.0]], dtype=torch.float64)
    y = real_spherical_harmonics(d, 1)
    scale = math.sqrt(3 / (4 * math.pi))
    assert torch.allclose(y[:, 1:], scale * d[:, [1, 2, 0]])  # (y, z, x): ACN 1, 2, 3
    assert harmonic_orders(2).tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2]


def test_each_order_is_rotation_invariant_in_power() -> None:
    # Harmonics of one order only mix among themselves under a rotation, so the power per
    # order of a direction map is the same after rotating every direction.
    rng = np.random.default_rng(1)
    points = fibonacci_sphere(50)
    weights = torch.from_numpy(rng.uniform(0, 1, 50))
    rotation = torch.from_numpy(ypr_to_matrix(37.0, -20.0, 65.0))
    code = weights @ real_spherical_harmonics(points, 3)
    rotated = weights @ real_spherical_harmonics(points @ rotation.T, 3)
    orders = harmonic_orders(3)
    for order in range(4):
        sel = orders == order
        assert float(code[sel].norm()) == pytest.approx(float(rotated[sel].norm()), rel=1e-9)
    assert not torch.allclose(code, rotated)


def test_bad_order_or_shape_is_refused() -> None:
    with pytest.raises(InputError, match=r"order must be an integer 0\.\.3"):
        real_spherical_harmonics(torch.ones(2, 3), 4)
    with pytest.raises(InputError, match=r"\(\.\.\., 3\)"):
        real_spherical_harmonics(torch.ones(2, 4), 2)
