// Engine coordinates -> the SwanSphere wire frame (DESIGN.md section 3). Header-only,
// standard C++17, no Unreal types: the Unreal component passes FVector/FRotator/FQuat
// fields in, and tests/bridges compiles this with g++ and checks it against Python's
// swansphere.foa.engines and the C# twin in bridges/unity.
//
// Wire frame: right-handed, x front, y left, z up, metres; orientations are unit
// quaternions (w, x, y, z); yaw/pitch/roll in degrees compose as Rz(yaw) Ry(pitch) Rx(roll).
// Unreal is left-handed, x forward, y right, z up, centimetres; Unity is left-handed,
// x right, y up, z forward, metres. Both maps are reflections, so angles change sign where
// the axis keeps its direction and quaternion vector parts pick up a minus sign.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

namespace swansphere::bridge {

struct WireVector {
  double x = 0, y = 0, z = 0;  // metres: x front, y left, z up
};

struct WireQuaternion {
  double w = 1, x = 0, y = 0, z = 0;  // unit, (w, x, y, z)
};

struct WireYpr {
  double yaw = 0, pitch = 0, roll = 0;  // degrees, R = Rz(yaw) Ry(pitch) Rx(roll)
};

namespace detail {
inline void require_finite(const char* what, std::initializer_list<double> values) {
  for (double v : values) {
    if (!std::isfinite(v)) {
      throw std::invalid_argument(std::string(what) + " has a non-finite component (" +
                                  std::to_string(v) + ")");
    }
  }
}
}  // namespace detail

/// Unit quaternion with w >= 0; throws for a non-finite or zero quaternion.
inline WireQuaternion normalize(const WireQuaternion& q) {
  detail::require_finite("quaternion", {q.w, q.x, q.y, q.z});
  const double n = std::sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  if (n < 1e-8) throw std::invalid_argument("quaternion has zero norm: it does not describe a rotation");
  const double s = (q.w < 0 ? -1.0 : 1.0) / n;  // q and -q are the same rotation
  return {q.w * s, q.x * s, q.y * s, q.z * s};
}

// --- Unreal: left-handed, x forward, y right, z up, centimetres ----------------------

/// Unreal location (X, Y, Z) cm -> wire (X, -Y, Z) / 100 metres.
inline WireVector unreal_position(double x, double y, double z) {
  detail::require_finite("Unreal position", {x, y, z});
  return {x / 100.0, -y / 100.0, z / 100.0};
}

/// Unreal FRotator(Pitch, Yaw, Roll) degrees -> wire yaw, pitch, roll.
inline WireYpr unreal_rotator_to_ypr(double pitch, double yaw, double roll) {
  detail::require_finite("Unreal rotator", {pitch, yaw, roll});
  return {-yaw, -pitch, roll};
}

/// Unreal FQuat fields (X, Y, Z, W) -> wire (W, -X, Y, -Z), normalised.
inline WireQuaternion unreal_quaternion(double x, double y, double z, double w) {
  return normalize({w, -x, y, -z});
}

// --- Unity: left-handed, x right, y up, z forward, metres ----------------------------

/// Unity position (x, y, z) -> wire (z, -x, y).
inline WireVector unity_position(double x, double y, double z) {
  detail::require_finite("Unity position", {x, y, z});
  return {z, -x, y};
}

/// Unity transform.eulerAngles (x, y, z) degrees -> wire yaw, pitch, roll.
inline WireYpr unity_euler_to_ypr(double ex, double ey, double ez) {
  detail::require_finite("Unity euler angles", {ex, ey, ez});
  return {-ey, ex, -ez};
}

/// Unity Quaternion fields (x, y, z, w) -> wire (w, -z, x, -y), normalised.
inline WireQuaternion unity_quaternion(double x, double y, double z, double w) {
  return normalize({w, -z, x, -y});
}

// --- wire-frame rotation math ----------------------------------------------------------

/// Quaternion of R = Rz(yaw) Ry(pitch) Rx(roll), degrees, w >= 0.
inline WireQuaternion ypr_to_quaternion(const WireYpr& a) {
  detail::require_finite("yaw/pitch/roll", {a.yaw, a.pitch, a.roll});
  const double h = M_PI / 360.0;  // half-angle, radians per degree
  const double cy = std::cos(a.yaw * h), sy = std::sin(a.yaw * h);
  const double cp = std::cos(a.pitch * h), sp = std::sin(a.pitch * h);
  const double cr = std::cos(a.roll * h), sr = std::sin(a.roll * h);
  return normalize({cy * cp * cr + sy * sp * sr, cy * cp * sr - sy * sp * cr,
                    cy * sp * cr + sy * cp * sr, sy * cp * cr - cy * sp * sr});
}

/// v rotated by the unit quaternion q (R(q) v).
inline WireVector rotate(const WireQuaternion& q, const WireVector& v) {
  // t = 2 (q_vec x v); v' = v + w t + q_vec x t
  const double tx = 2 * (q.y * v.z - q.z * v.y);
  const double ty = 2 * (q.z * v.x - q.x * v.z);
  const double tz = 2 * (q.x * v.y - q.y * v.x);
  return {v.x + q.w * tx + (q.y * tz - q.z * ty), v.y + q.w * ty + (q.z * tx - q.x * tz),
          v.z + q.w * tz + (q.x * ty - q.y * tx)};
}

/// A world point seen from the listener: R(listener)^T (point - listener), wire axes.
/// This is what SceneObject.position expects (metres, listener frame).
inline WireVector to_listener_frame(const WireVector& point, const WireVector& listener,
                                    const WireQuaternion& listener_orientation) {
  const WireQuaternion q = normalize(listener_orientation);
  return rotate({q.w, -q.x, -q.y, -q.z},
                {point.x - listener.x, point.y - listener.y, point.z - listener.z});
}

}  // namespace swansphere::bridge
