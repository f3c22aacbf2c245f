"""Loudspeaker layouts and energy-preserving first-order loudspeaker decoders (AllRAD, max-rE).

Conventions: input is AmbiX FOA (ACN W, Y, Z, X; SN3D). Directions use our frame
(x front, y left, z up); azimuth is counter-clockwise from the front, so left
speakers have *positive* azimuth; elevation is up. Layout angles are in degrees
(ITU-R BS.2051), channel order is the WAV (WAVE_FORMAT_EXTENSIBLE / SMPTE) order.

Decoder design (All-Round Ambisonic Decoding, Zotter & Frank 2012):

1. Sample-decode the FOA to a dense, uniform virtual layout with max-rE weights:
   a 3D Fibonacci grid (equal-area spiral) for layouts with height,
   a uniform horizontal ring for horizontal-only layouts (stereo, 5.1).
2. Pan every virtual speaker onto the real speakers by VBAP: pairwise on the ring
   (2D) or over the convex-hull triangulation of the speaker directions (3D,
   scipy.spatial.ConvexHull). Where the real speakers leave a hole, imaginary
   speakers are inserted first: on the ring, an arc wider than 150 degrees is filled
   with imaginary speakers at most 60 degrees apart (stereo: +-90 and +-150); on the
   sphere, a hull facet whose circumscribed cap is wider than 70 degrees gets one at
   its outward normal (7.1.4: the nadir).
3. Imaginary speakers are *downmixed* by default, not muted: on the ring each goes
   to the nearer of the two real speakers bounding its hole (both at 1/sqrt(2) at
   the exact middle), so stereo keeps rear-left sources in L; on the sphere each
   goes at 1/sqrt(n) to the n real speakers it shares hull facets with (7.1.4: the
   nadir feeds the seven ear-level speakers). This keeps the energy of sources
   inside the hole.
   ``imaginary="discard"`` drops their signal as Zotter & Frank (2012) do for the
   nadir; sources inside the hole then fade out.
4. Left/right symmetrisation: the hull triangulates coplanar quads (the top square
   TFL, TFR, TBL, TBR and the rear quad BL, BR, TBL, TBR of 7.1.4) with an arbitrary
   diagonal and the virtual grid is not mirror symmetric, so for a mirror-symmetric
   layout the matrix is averaged with its mirror image (:func:`symmetrise`).
5. Energy equalisation (default strength 0.5, see :func:`equalise_energy`): at first
   order the broad virtual patterns add up coherently on sparse speakers, so plain
   AllRAD is louder where speakers are sparse (5.1: rear 3.8 dB above front). The
   singular values of the matrix are pulled half-way (geometrically) towards equal,
   which halves that loudness spread at a small cost in rE direction. Stereo is
   left as is (two speakers cannot carry three components, see below).
6. Own-speaker priority (default 1 dB, see :func:`enforce_own_speaker_loudest`): the
   same coverage effect makes plain AllRAD play a front source louder in FL/FR than
   in FC (5.1) and an FL source louder in SL (7.1.4). The smallest change of the
   matrix (gains averaged over all directions) that makes a source at each speaker's
   direction at least 1 dB louder in that speaker is found by a small convex
   quadratic programme (scipy SLSQP).
7. The decoder matrix is scaled so that the energy sum over outputs of g^2,
   averaged over all source directions of a unit SN3D plane wave, equals 1
   (energy-preserving: a diffuse field keeps its power).

Stereo: AllRAD on two speakers alone is degenerate, so the rear is filled with
imaginary speakers as above. The result is a mid/side decoder L, R = a W +- b Y
(no X): front and rear sources land equally in L and R, a +90 deg source almost
only in L, and the energy 2 (a^2 + b^2 sin^2 az) varies by 10 log10(1 + b^2/a^2)
over azimuth.

LFE channels get zero gain: bass management (routing lows to the subwoofer) is
left to the receiver, as for any full-range ambisonic feed.

Max-rE weights: first-order gains [1, a1] that maximise |rE| of the sampling
decoder. a1 is the largest root of the Legendre polynomial P_{N+1} (3D) or
cos(pi / (2N + 2)) (2D). For N = 1: 3D a1 = 1/sqrt(3) = 0.5774 (P2 = (3x^2 - 1)/2;
the common approximation cos(137.9 deg / (N + 1.51)) gives 0.5746), and 2D
a1 = cos(45 deg) = 1/sqrt(2) = 0.7071. In both cases |rE| of the virtual decoder
equals a1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.spatial import ConvexHull, QhullError

from swansphere.errors import InputError, require_finite
from swansphere.foa.decoder import Decoder
from swansphere.foa.encode import direction_to_vector, sh_gains

# Max-rE first-order weight a1 (see the module docstring).
MAX_RE_WEIGHT_3D = 1.0 / math.sqrt(3.0)
MAX_RE_WEIGHT_2D = 1.0 / math.sqrt(2.0)

# Average of y y^T over the sphere for SN3D first-order gains y = (1, Y, Z, X):
# the dipoles are unit-amplitude cosines, whose mean square over the sphere is 1/3.
_SN3D_DIFFUSE_COVARIANCE = np.diag([1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0])

# Hole thresholds for imaginary-speaker insertion (angles in degrees).
_MAX_RING_ARC_DEG = 150.0  # wider ring arcs make pairwise VBAP ill-conditioned
_RING_FILL_SPACING_DEG = 60.0  # largest spacing of imaginary speakers filling a ring hole
_MAX_FACET_APERTURE_DEG = 70.0  # hull facet whose circumscribed cap is wider is a hole
_ANGLE_TOL = 1e-9
_MIRROR_TOL = 1e-6

ImaginaryMode = Literal["downmix", "discard"]


@dataclass(frozen=True)
class SpeakerLayout:
    """A loudspeaker layout in WAV channel order.

    name:          layout name, e.g. "5.1".
    labels:        one name per channel, e.g. ("FL", "FR", "FC", "LFE", "BL", "BR").
    azimuth_deg:   per channel, degrees counter-clockwise from the front (left > 0).
    elevation_deg: per channel, degrees up from the horizontal plane.
    lfe:           per channel, True for a low-frequency-effects channel; its angles
                   are placeholders (an LFE feed has no direction).
    """

    name: str
    labels: tuple[str, ...]
    azimuth_deg: tuple[float, ...]
    elevation_deg: tuple[float, ...]
    lfe: tuple[bool, ...]

    def __post_init__(self) -> None:
        n = len(self.labels)
        if n == 0:
            raise InputError(f"speaker layout {self.name!r} has no channels")
        for field_name in ("azimuth_deg", "elevation_deg", "lfe"):
            if len(getattr(self, field_name)) != n:
                raise InputError(
                    f"speaker layout {self.name!r} has {n} labels but "
                    f"{len(getattr(self, field_name))} values in {field_name}"
                )
        if len(set(self.labels)) != n:
            raise InputError(f"speaker layout {self.name!r} has duplicate labels: {self.labels}")
        az = np.asarray(self.azimuth_deg, dtype=np.float64)
        el = np.asarray(self.elevation_deg, dtype=np.float64)
        require_finite("azimuth_deg", az)
        require_finite("elevation_deg", el)
        if np.any(np.abs(el) > 90.0):
            raise InputError(f"speaker elevations must lie in [-90, 90] degrees, got {el.tolist()}")
        if all(self.lfe):
            raise InputError(f"speaker layout {self.name!r} has no full-range (non-LFE) speaker")
        object.__setattr__(self, "labels", tuple(str(s) for s in self.labels))
        object.__setattr__(self, "azimuth_deg", tuple(float(a) for a in az))
        object.__setattr__(self, "elevation_deg", tuple(float(e) for e in el))
        object.__setattr__(self, "lfe", tuple(bool(f) for f in self.lfe))

    @property
    def channels(self) -> int:
        """Number of output channels, LFE included."""
        return len(self.labels)

    @property
    def main_indices(self) -> np.ndarray:
        """Channel indices (m,) of the full-range (non-LFE) speakers."""
        return np.flatnonzero(~np.asarray(self.lfe))

    @property
    def main_vectors(self) -> np.ndarray:
        """Unit direction vectors (m, 3) as (x, y, z) of the full-range speakers."""
        idx = self.main_indices
        az = np.deg2rad(np.asarray(self.azimuth_deg)[idx])
        el = np.deg2rad(np.asarray(self.elevation_deg)[idx])
        return direction_to_vector(az, el)

    @property
    def is_horizontal(self) -> bool:
        """True if every full-range speaker lies in the horizontal plane."""
        return bool(np.all(np.abs(np.asarray(self.elevation_deg)[self.main_indices]) < 1e-9))


LAYOUTS: dict[str, SpeakerLayout] = {
    "stereo": SpeakerLayout(
        name="stereo",
        labels=("L", "R"),
        azimuth_deg=(30.0, -30.0),
        elevation_deg=(0.0, 0.0),
        lfe=(False, False),
    ),
    "5.1": SpeakerLayout(
        name="5.1",
        labels=("FL", "FR", "FC", "LFE", "BL", "BR"),
        azimuth_deg=(30.0, -30.0, 0.0, 0.0, 110.0, -110.0),
        elevation_deg=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        lfe=(False, False, False, True, False, False),
    ),
    "7.1.4": SpeakerLayout(
        name="7.1.4",
        labels=("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR", "TFL", "TFR", "TBL", "TBR"),
        azimuth_deg=(30.0, -30.0, 0.0, 0.0, 135.0, -135.0, 90.0, -90.0, 45.0, -45.0, 135.0, -135.0),
        elevation_deg=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 45.0, 45.0, 45.0, 45.0),
        lfe=(False, False, False, True, False, False, False, False, False, False, False, False),
    ),
}


def get_layout(name: str) -> SpeakerLayout:
    """The built-in layout called ``name`` ("stereo", "5.1" or "7.1.4")."""
    if name not in LAYOUTS:
        raise InputError(f"unknown speaker layout {name!r}; known layouts: {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def max_re_weights(dimensions: int) -> np.ndarray:
    """First-order max-rE weights (2,) = [a0, a1] for a 3D (sphere) or 2D (ring) decoder."""
    if dimensions == 3:
        return np.array([1.0, MAX_RE_WEIGHT_3D])
    if dimensions == 2:
        return np.array([1.0, MAX_RE_WEIGHT_2D])
    raise InputError(f"max-rE weights exist for 2 or 3 dimensions, got {dimensions}")


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (n, 3) on the sphere (golden-angle spiral, equal area)."""
    if n < 1:
        raise InputError(f"fibonacci_sphere needs at least one point, got {n}")
    i = np.arange(n)
    z = 1.0 - (2.0 * i + 1.0) / n
    azimuth = i * math.pi * (3.0 - math.sqrt(5.0))
    return direction_to_vector(azimuth, np.arcsin(z))


def _mirror(vectors: np.ndarray) -> np.ndarray:
    """Left/right mirror images (..., 3): y -> -y."""
    return vectors * np.array([1.0, -1.0, 1.0])


def _mirror_permutation(vectors: np.ndarray) -> np.ndarray | None:
    """Index of each speaker's mirror image (n,), or None if the set is not mirror symmetric."""
    mirrored = _mirror(vectors)
    distance = np.linalg.norm(mirrored[:, None, :] - vectors[None, :, :], axis=-1)
    perm = np.argmin(distance, axis=1)
    if np.any(distance[np.arange(len(vectors)), perm] > _MIRROR_TOL):
        return None
    return perm


# ----------------------------------------------------------------------------- 2D (ring) design


def _ring_with_imaginary(azimuth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Real ring azimuths (m,) rad plus imaginary ones filling arcs wider than 150 degrees.

    A hole is filled with evenly spaced imaginary speakers at most 60 degrees apart.
    Returns (azimuths (t,) rad, downmix (m, t)): column j maps ring speaker j to the
    real speakers. A real speaker maps to itself; an imaginary one maps to the nearer
    of the two real speakers bounding its hole (1/sqrt(2) to each at the exact
    middle), so a source inside the hole stays on its own side (for stereo: the left
    half of the rear goes to L, the right half to R).
    """
    m = len(azimuth)
    order = np.argsort(np.mod(azimuth, 2 * math.pi))
    sorted_az = np.mod(azimuth[order], 2 * math.pi)
    ring = list(azimuth)
    columns = [np.eye(m)[:, j] for j in range(m)]
    for k in range(m):
        a, b = order[k], order[(k + 1) % m]
        start = sorted_az[k]
        arc = 2 * math.pi if m == 1 else np.mod(sorted_az[(k + 1) % m] - start, 2 * math.pi)
        if arc <= math.radians(_MAX_RING_ARC_DEG):
            continue
        parts = math.ceil(arc / math.radians(_RING_FILL_SPACING_DEG) - _ANGLE_TOL)
        for p in range(1, parts):
            ring.append(start + p * arc / parts)
            column = np.zeros(m)
            if 2 * p == parts and a != b:
                column[[a, b]] = math.sqrt(0.5)
            else:
                column[a if 2 * p < parts else b] = 1.0
            columns.append(column)
    return np.asarray(ring), np.stack(columns, axis=1)


def _vbap_2d(speaker_azimuth: np.ndarray, source_azimuth: np.ndarray) -> np.ndarray:
    """Pairwise VBAP gains (q, t) of sources (q,) on a ring of speakers (t,), azimuths in rad.

    Each row has unit L2 norm (energy-normalised panning). Requires every arc
    between neighbouring speakers to be shorter than pi.
    """
    t = len(speaker_azimuth)
    order = np.argsort(np.mod(speaker_azimuth, 2 * math.pi))
    sorted_az = np.mod(speaker_azimuth[order], 2 * math.pi)
    src = np.mod(source_azimuth, 2 * math.pi)
    # Arc k runs from sorted speaker k to k + 1 (wrapping); find each source's arc.
    k = np.searchsorted(sorted_az, src, side="right") - 1
    k = np.mod(k, t)
    a, b = order[k], order[np.mod(k + 1, t)]
    start = sorted_az[k]
    arc = np.mod(sorted_az[np.mod(k + 1, t)] - start, 2 * math.pi)
    offset = np.mod(src - start, 2 * math.pi)
    # 2D VBAP (tangent law): g_a l_a + g_b l_b = p  =>  sine-ratio gains.
    gain_a = np.sin(arc - offset) / np.sin(arc)
    gain_b = np.sin(offset) / np.sin(arc)
    gains = np.zeros((len(src), t))
    rows = np.arange(len(src))
    np.add.at(gains, (rows, a), gain_a)
    np.add.at(gains, (rows, b), gain_b)
    return gains / np.linalg.norm(gains, axis=1, keepdims=True)


def _allrad_2d(
    layout: SpeakerLayout, weights: np.ndarray, virtual_points: int, imaginary: ImaginaryMode
) -> np.ndarray:
    """AllRAD matrix (m, 4) for a horizontal layout's m full-range speakers (unnormalised)."""
    speaker_az = np.deg2rad(np.asarray(layout.azimuth_deg)[layout.main_indices])
    ring_az, downmix = _ring_with_imaginary(speaker_az)
    if imaginary == "discard":
        downmix = downmix * (np.arange(downmix.shape[1]) < len(speaker_az))
    # An even count starting at 0 makes the virtual ring mirror symmetric (phi and -phi).
    count = virtual_points + virtual_points % 2
    virtual_az = 2 * math.pi * np.arange(count) / count
    a0, a1 = weights
    # Circular-harmonic sampling decoder: pattern a0 + 2 a1 cos(phi - phi_k) on horizontal
    # dipoles (Y, X); Z is ignored since a horizontal layout cannot render height.
    sampling = (
        np.stack(
            [
                np.full(count, a0),
                2 * a1 * np.sin(virtual_az),
                np.zeros(count),
                2 * a1 * np.cos(virtual_az),
            ],
            axis=1,
        )
        / count
    )
    panning = _vbap_2d(ring_az, virtual_az)  # (count, t)
    return downmix @ panning.T @ sampling


# ----------------------------------------------------------------------------- 3D (hull) design


def _hull(points: np.ndarray) -> ConvexHull | None:
    """Convex hull of unit vectors (n, 3), or None if they are flat or too few."""
    if len(points) < 4:
        return None
    try:
        return ConvexHull(points)
    except QhullError:
        return None


def _add_unique(points: list[np.ndarray], new: np.ndarray) -> None:
    """Append unit vector ``new`` and its mirror image unless already present."""
    for candidate in (new, _mirror(new)):
        candidate = candidate / np.linalg.norm(candidate)
        if all(np.linalg.norm(candidate - p) > _MIRROR_TOL for p in points):
            points.append(candidate)


def _imaginary_speakers_3d(real: np.ndarray) -> np.ndarray:
    """Imaginary speaker directions (k, 3) that close the holes of the real set (m, 3).

    A hull facet is a hole when the plane through it passes within
    cos(70 deg) of the origin, i.e. its circumscribed spherical cap is wider
    than 70 degrees (the bottom of a layout with no floor speakers, for instance);
    an imaginary speaker goes at the facet's outward normal. Flat sets (all
    speakers on one plane) get speakers at both normals of that plane.
    """
    points = [p for p in real]
    min_distance = math.cos(math.radians(_MAX_FACET_APERTURE_DEG))
    for _ in range(4 * len(real) + 8):
        hull = _hull(np.asarray(points))
        if hull is None:
            centred = np.asarray(points) - np.mean(points, axis=0)
            normal = np.linalg.svd(centred)[2][-1]
            _add_unique(points, normal)
            _add_unique(points, -normal)
            continue
        distance = -hull.equations[:, 3]  # origin-to-facet distance (outward normals)
        worst = int(np.argmin(distance))
        if distance[worst] >= min_distance:
            return np.asarray(points[len(real) :]).reshape(-1, 3)
        _add_unique(points, hull.equations[worst, :3])
    raise InputError("could not close the holes of the speaker layout with imaginary speakers")


def _vbap_3d(speakers: np.ndarray, hull: ConvexHull, sources: np.ndarray) -> np.ndarray:
    """VBAP gains (q, t) of unit source vectors (q, 3) over hull triangles of speakers (t, 3).

    Each source uses the facet whose three gains are all non-negative (the facet its
    ray crosses); rows have unit L2 norm.
    """
    facets = hull.simplices  # (f, 3) speaker indices
    inverse = np.linalg.inv(speakers[facets])  # (f, 3, 3): g @ L = p  =>  g = p @ inv(L)
    facet_gains = np.einsum("qj,fjk->qfk", sources, inverse)  # (q, f, 3)
    best = np.argmax(facet_gains.min(axis=2), axis=1)  # facet with the least negative gain
    rows = np.arange(len(sources))
    chosen = np.clip(facet_gains[rows, best], 0.0, None)
    gains = np.zeros((len(sources), len(speakers)))
    np.add.at(gains, (rows[:, None], facets[best]), chosen)
    return gains / np.linalg.norm(gains, axis=1, keepdims=True)


def _hull_downmix(hull: ConvexHull, real_count: int, total: int, mode: ImaginaryMode) -> np.ndarray:
    """Downmix (m, t) from real + imaginary speakers to the m real ones.

    An imaginary speaker feeds the real speakers it shares a hull facet with, each at
    1/sqrt(n) (energy-preserving); with ``mode == "discard"`` its column is zero.
    """
    downmix = np.zeros((real_count, total))
    downmix[:, :real_count] = np.eye(real_count)
    if mode == "discard":
        return downmix
    for j in range(real_count, total):
        touching = hull.simplices[np.any(hull.simplices == j, axis=1)]
        neighbours = np.unique(touching[touching < real_count])
        if len(neighbours):
            downmix[neighbours, j] = 1.0 / math.sqrt(len(neighbours))
    return downmix


def _allrad_3d(
    layout: SpeakerLayout, weights: np.ndarray, virtual_points: int, imaginary: ImaginaryMode
) -> np.ndarray:
    """AllRAD matrix (m, 4) for a layout with height, m full-range speakers (unnormalised)."""
    real = layout.main_vectors
    speakers = np.concatenate([real, _imaginary_speakers_3d(real)], axis=0)
    hull = ConvexHull(speakers)
    virtual = fibonacci_sphere(virtual_points)
    a0, a1 = weights
    # Spherical-harmonic sampling decoder for SN3D input: sum_m Y_nm Y_nm = P_n(cos gamma),
    # so the (2n + 1) a_n factors give the pattern a0 + 3 a1 cos(gamma).
    y = sh_gains(*_vector_angles(virtual))  # (v, 4) ACN W, Y, Z, X
    sampling = y * np.array([a0, 3 * a1, 3 * a1, 3 * a1]) / len(virtual)
    panning = _vbap_3d(speakers, hull, virtual)  # (v, t)
    downmix = _hull_downmix(hull, len(real), len(speakers), imaginary)
    return downmix @ panning.T @ sampling


def _vector_angles(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (rad) of unit vectors (..., 3)."""
    return np.arctan2(vectors[..., 1], vectors[..., 0]), np.arcsin(np.clip(vectors[..., 2], -1, 1))


# ----------------------------------------------------------------------------- public design


def normalise_diffuse_energy(matrix: np.ndarray) -> np.ndarray:
    """Scale a decoding matrix (outputs, 4) so that mean over directions of sum g^2 is 1.

    For SN3D plane-wave gains y(dir), the direction average of |D y|^2 is
    trace(D C D^T) with C = diag(1, 1/3, 1/3, 1/3); a diffuse field keeps its power.
    """
    m = np.asarray(matrix, dtype=np.float64)
    power = float(np.trace(m @ _SN3D_DIFFUSE_COVARIANCE @ m.T))
    if power <= 0.0:
        raise InputError("decoding matrix is all zero: it cannot be energy-normalised")
    return m / math.sqrt(power)


def equalise_energy(matrix: np.ndarray, strength: float) -> np.ndarray:
    """Flatten the energy of a decoding matrix (outputs, 4) over directions, partly or fully.

    With the SVD D = U S V^T, returns U S^(1 - strength) V^T (zero singular values,
    e.g. the Z column of a horizontal decoder, stay zero). strength 0 leaves D
    unchanged; strength 1 gives equal singular values, i.e. D^T D proportional to a
    projector, so sum g^2 = |P y|^2 is the same for every direction the decoder
    renders (the energy-preserving decoder closest to D, as in EPAD). Values in
    between trade a little rE direction accuracy for a flatter loudness.
    Overall scale is arbitrary; normalise afterwards.
    """
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"energy equalisation strength must lie in [0, 1], got {strength}")
    u, s, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)
    kept = s > 1e-12 * s.max()
    shrunk = np.where(kept, np.where(kept, s, 1.0) ** (1.0 - strength), 0.0)
    return (u * shrunk) @ vt


def symmetrise(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Left/right symmetric part of a decoding matrix (m, 4) for speakers at vectors (m, 3).

    The mirror image of a decoder feeds speaker i what the original feeds i's mirror
    speaker for the mirrored source (Y negated); the mean of both is exactly
    symmetric. Returned unchanged if the speaker set is not mirror symmetric.
    """
    perm = _mirror_permutation(vectors)
    if perm is None:
        return matrix
    return 0.5 * (matrix + matrix[perm] * np.array([1.0, -1.0, 1.0, 1.0]))


def enforce_own_speaker_loudest(
    matrix: np.ndarray, vectors: np.ndarray, margin_db: float
) -> np.ndarray:
    """Smallest change of a decoding matrix (m, 4) after which a plane wave from each
    speaker's direction (vectors (m, 3)) plays at least ``margin_db`` louder in that
    speaker than in any other.

    The gains at fixed source directions are linear in the matrix, so this is a convex
    quadratic programme: minimise the change of the gains averaged over all
    directions, trace(dD C dD^T) with C = diag(1, 1/3, 1/3, 1/3), subject to
    g_k(u_k) >= 10^(margin/20) |g_j(u_k)| for all j != k (two linear constraints per
    pair, one per sign of g_j). Columns that are all zero (Z of a horizontal decoder)
    stay zero. Raises InputError when no such matrix with g_k(u_k) > 0 exists (two
    speakers at the same direction). Speakers that are very close together can be
    separated only by steep gain patterns, which costs energy flatness.
    """
    m = np.asarray(matrix, dtype=np.float64)
    ratio = 10.0 ** (margin_db / 20.0)
    cols = np.flatnonzero(np.any(m != 0.0, axis=0))
    y = sh_gains(*_vector_angles(vectors))[:, cols]  # (m, c): source k at speaker k
    count, width = len(vectors), len(cols)
    rows = []
    for k in range(count):
        for j in range(count):
            for sign in (1.0, -1.0) if j != k else ():
                row = np.zeros((count, width))
                row[k] += y[k]
                row[j] -= sign * ratio * y[k]
                rows.append(row.ravel())
    a = np.asarray(rows)
    x0 = m[:, cols].ravel()
    if np.all(a @ x0 >= 0.0):
        return m
    weight = np.tile(_SN3D_DIFFUSE_COVARIANCE.diagonal()[cols], count)
    scale = float(np.sqrt(np.mean(x0**2)))  # unit-scale variables keep SLSQP tolerances meaningful
    target = x0 / scale
    result = minimize(
        lambda x: float(np.sum(weight * (x - target) ** 2)),
        target,
        jac=lambda x: 2.0 * weight * (x - target),
        constraints=[{"type": "ineq", "fun": lambda x: a @ x, "jac": lambda x: a}],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    out = np.zeros_like(m)
    out[:, cols] = result.x.reshape(count, width)
    own = np.einsum("kc,kc->k", y, out[:, cols])
    if not (np.all(a @ result.x >= -1e-7) and np.all(own > 1e-6)):
        raise InputError(
            f"cannot make every speaker loudest for a source at its own direction with a "
            f"{margin_db} dB margin (two speakers at the same direction?); pass "
            f"speaker_margin_db=None to skip this step"
        )
    return out * scale


def design_speaker_decoder(
    layout: SpeakerLayout | str,
    max_re: bool = True,
    virtual_points: int = 2000,
    imaginary: ImaginaryMode = "downmix",
    energy_equalisation: float = 0.5,
    speaker_margin_db: float | None = 1.0,
    sample_rate: int = 48000,
) -> Decoder:
    """Energy-preserving first-order AllRAD decoder (taps == 1) for a loudspeaker layout.

    layout:              a :class:`SpeakerLayout` or a built-in name ("stereo", "5.1", "7.1.4").
    max_re:              max-rE weights (3D a1 = 1/sqrt(3), 2D a1 = 1/sqrt(2)); else a1 = 1.
    virtual_points:      virtual speakers: ring size for horizontal layouts, Fibonacci
                         grid size for 3D ones.
    imaginary:           "downmix" imaginary speakers to real neighbours, or "discard" them.
    energy_equalisation: strength in [0, 1] of :func:`equalise_energy` applied to the
                         AllRAD matrix (0 = plain AllRAD). Skipped when the layout has
                         fewer full-range speakers than rendered FOA components (3 for
                         horizontal layouts, 4 otherwise), e.g. stereo: a rank-deficient
                         decoder cannot be flattened that way.
    speaker_margin_db:   a source at a speaker's direction must play at least this many dB
                         louder in that speaker than in any other; the smallest matrix
                         change that ensures it is made (:func:`enforce_own_speaker_loudest`).
                         None skips this step.
    sample_rate:         Hz recorded on the Decoder; gains work at any rate.

    Returns a Decoder with filters (channels, 4, 1) for AmbiX input, labels in the
    layout's WAV order, zero rows for LFE channels and name "allrad-<layout>".
    The matrix is normalised so that sum g^2 averaged over all directions is 1.
    """
    if isinstance(layout, str):
        layout = get_layout(layout)
    if not isinstance(layout, SpeakerLayout):
        raise InputError(f"layout must be a SpeakerLayout or a layout name, got {type(layout)}")
    if not isinstance(virtual_points, int) or virtual_points < 64:
        raise InputError(f"virtual_points must be an integer >= 64, got {virtual_points!r}")
    if imaginary not in ("downmix", "discard"):
        raise InputError(f"imaginary must be 'downmix' or 'discard', got {imaginary!r}")
    if speaker_margin_db is not None and not (
        math.isfinite(speaker_margin_db) and speaker_margin_db >= 0.0
    ):
        raise InputError(f"speaker_margin_db must be >= 0 dB or None, got {speaker_margin_db!r}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    if layout.is_horizontal:
        weights = max_re_weights(2) if max_re else np.ones(2)
        main = _allrad_2d(layout, weights, virtual_points, imaginary)
        components = 3
    else:
        weights = max_re_weights(3) if max_re else np.ones(2)
        main = _allrad_3d(layout, weights, virtual_points, imaginary)
        components = 4
    vectors = layout.main_vectors
    main = symmetrise(main, vectors)
    if len(vectors) >= components:
        main = equalise_energy(main, energy_equalisation)
    elif not 0.0 <= energy_equalisation <= 1.0:
        raise InputError(
            f"energy equalisation strength must lie in [0, 1], got {energy_equalisation}"
        )
    if speaker_margin_db is not None:
        main = symmetrise(enforce_own_speaker_loudest(main, vectors, speaker_margin_db), vectors)
    matrix = np.zeros((layout.channels, 4))
    matrix[layout.main_indices] = normalise_diffuse_energy(main)
    return Decoder(
        filters=matrix[:, :, None],
        sample_rate=sample_rate,
        labels=layout.labels,
        name=f"allrad-{layout.name}",
    )


# ----------------------------------------------------------------------------- measurement


def decoder_gains(
    decoder: Decoder, azimuth: np.ndarray | float, elevation: np.ndarray | float
) -> np.ndarray:
    """Speaker gains (..., outputs) of a gains-only decoder for unit plane waves (rad)."""
    if decoder.taps != 1:
        raise InputError(
            f"decoder_gains needs a gains-only decoder (taps == 1), got taps = {decoder.taps}"
        )
    return sh_gains(azimuth, elevation) @ decoder.filters[:, :, 0].T


def energy_vector(
    decoder: Decoder,
    layout: SpeakerLayout,
    azimuth: np.ndarray | float,
    elevation: np.ndarray | float,
) -> np.ndarray:
    """Gerzon energy vector rE (..., 3) = sum g_i^2 u_i / sum g_i^2 over the speakers."""
    if decoder.labels != layout.labels:
        raise InputError(f"decoder labels {decoder.labels} do not match layout {layout.labels}")
    g2 = decoder_gains(decoder, azimuth, elevation)[..., layout.main_indices] ** 2
    return (g2 @ layout.main_vectors) / g2.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class DecoderQuality:
    """Energy and rE figures of a decoder over a set of source directions.

    energy_min_db, energy_max_db: extremes of 10 log10(sum g^2) (0 dB = diffuse average).
    energy_spread_db:             energy_max_db - energy_min_db.
    re_error_mean_deg, re_error_max_deg: angle between rE and the source direction.
    re_norm_min, re_norm_mean, re_norm_max: |rE| (1 = single speaker, 0 = no direction).
    """

    energy_min_db: float
    energy_max_db: float
    energy_spread_db: float
    re_error_mean_deg: float
    re_error_max_deg: float
    re_norm_min: float
    re_norm_mean: float
    re_norm_max: float


def evaluate_decoder(
    decoder: Decoder, layout: SpeakerLayout, azimuth: np.ndarray, elevation: np.ndarray
) -> DecoderQuality:
    """Energy spread and rE figures over source directions (q,) in radians (unweighted means)."""
    az = np.asarray(azimuth, dtype=np.float64).ravel()
    el = np.asarray(elevation, dtype=np.float64).ravel()
    if az.shape != el.shape or az.size == 0:
        raise InputError(f"need matching non-empty azimuth/elevation, got {az.shape}, {el.shape}")
    energy_db = 10 * np.log10(np.sum(decoder_gains(decoder, az, el) ** 2, axis=-1))
    r_e = energy_vector(decoder, layout, az, el)
    norm = np.linalg.norm(r_e, axis=-1)
    cosine = np.sum(r_e * direction_to_vector(az, el), axis=-1) / np.maximum(norm, 1e-12)
    error = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    return DecoderQuality(
        energy_min_db=float(energy_db.min()),
        energy_max_db=float(energy_db.max()),
        energy_spread_db=float(energy_db.max() - energy_db.min()),
        re_error_mean_deg=float(error.mean()),
        re_error_max_deg=float(error.max()),
        re_norm_min=float(norm.min()),
        re_norm_mean=float(norm.mean()),
        re_norm_max=float(norm.max()),
    )
