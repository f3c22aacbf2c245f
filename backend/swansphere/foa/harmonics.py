"""Real spherical harmonics up to order 3, for direction maps on the sphere.

Convention: ACN order (index l^2 + l + m), orthonormal over the unit sphere
(the integral of Y_i Y_j over the sphere is the Kronecker delta; N3D scaled by
1 / sqrt(4 pi)), directions as unit vectors (x front, y left, z up; DESIGN.md axes).
Order 1 is (y, z, x) times sqrt(3 / 4 pi): the same channel order as AmbiX's dipoles.
"""

from __future__ import annotations

import torch

from swansphere.errors import InputError

MAX_ORDER = 3

# Normalisation constants of the orthonormal real harmonics.
_C0 = 0.28209479177387814  # 1/2 sqrt(1/pi)
_C1 = 0.4886025119029199  # sqrt(3 / 4 pi)
_C2 = (1.0925484305920792, 0.31539156525252005, 0.5462742152960396)
_C3 = (
    0.5900435899266435,
    2.890611442640554,
    0.4570457994644658,
    0.3731763325901154,
    1.445305721320277,
)


def harmonics_count(order: int) -> int:
    """Harmonics of orders 0 to ``order``: (order + 1)^2."""
    return (int(order) + 1) ** 2


def real_spherical_harmonics(directions: torch.Tensor, order: int) -> torch.Tensor:
    """Y (..., (order + 1)^2) of unit vectors (..., 3), ACN order, orthonormal.

    Directions need not be exactly unit length; they are normalised first (a zero vector
    gives NaN-free zeros beyond order 0).
    """
    if not 0 <= int(order) <= MAX_ORDER or int(order) != order:
        raise InputError(f"spherical-harmonic order must be an integer 0..{MAX_ORDER}, got {order}")
    if directions.shape[-1] != 3:
        raise InputError(f"directions must be (..., 3), got {tuple(directions.shape)}")
    d = torch.nn.functional.normalize(directions, dim=-1)
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if order >= 1:
        out += [_C1 * y, _C1 * z, _C1 * x]
    if order >= 2:
        a, b, c = _C2
        out += [a * x * y, a * y * z, b * (3 * z * z - 1), a * x * z, c * (x * x - y * y)]
    if order >= 3:
        a, b, c, e, f = _C3
        out += [
            a * y * (3 * x * x - y * y),
            b * x * y * z,
            c * y * (5 * z * z - 1),
            e * z * (5 * z * z - 3),
            c * x * (5 * z * z - 1),
            f * z * (x * x - y * y),
            a * x * (x * x - 3 * y * y),
        ]
    return torch.stack(out, dim=-1)


def harmonic_orders(order: int) -> torch.Tensor:
    """The order l of each ACN index up to ``order``: (order + 1)^2 integers."""
    return torch.tensor([lo for lo in range(int(order) + 1) for _ in range(2 * lo + 1)])
