"""SwanSphere: real-time generative spatial audio middleware.

Conventions shared by every module (see README, "Conventions"):

* Ambisonics are AmbiX: ACN channel order W, Y, Z, X with SN3D normalisation.
* Axes are right-handed, x front, y left, z up, metres; azimuth is counter-clockwise
  from the front, elevation is up. Functions take radians unless a name ends in ``_deg``.
* Orientations are unit quaternions (w, x, y, z) in that frame.
"""

__version__ = "0.1.0"
