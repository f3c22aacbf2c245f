// Engine coordinates -> the SwanSphere wire frame (DESIGN.md section 3).
//
// Wire frame: right-handed, x front, y left, z up, metres; orientations are unit
// quaternions (w, x, y, z); yaw/pitch/roll in degrees compose as Rz(yaw) Ry(pitch) Rx(roll).
// Unity is left-handed with x right, y up, z forward (metres); Unreal is left-handed with
// x forward, y right, z up (centimetres). Both maps are reflections, so angles change sign
// where the axis keeps its direction and quaternion vector parts pick up a minus sign.
// The same mapping lives in Python (swansphere.foa.engines) and C++ (bridges/unreal); the
// tests run all three on the same inputs.
//
// No UnityEngine types here, so this file compiles and is tested outside Unity; the Unity
// adapter (SwanSphereListener.cs) passes Vector3/Quaternion fields in.

using System;

namespace SwanSphere.Bridge
{
    /// <summary>A position or direction on the wire axes (x front, y left, z up), metres.</summary>
    public struct WireVector
    {
        public double X, Y, Z;

        public WireVector(double x, double y, double z) { X = x; Y = y; Z = z; }
    }

    /// <summary>A rotation on the wire axes: unit quaternion (w, x, y, z).</summary>
    public struct WireQuaternion
    {
        public double W, X, Y, Z;

        public WireQuaternion(double w, double x, double y, double z) { W = w; X = x; Y = y; Z = z; }

        public static readonly WireQuaternion Identity = new WireQuaternion(1, 0, 0, 0);
    }

    /// <summary>Yaw, pitch, roll in degrees on the wire axes: R = Rz(yaw) Ry(pitch) Rx(roll).</summary>
    public struct WireYpr
    {
        public double Yaw, Pitch, Roll;

        public WireYpr(double yaw, double pitch, double roll) { Yaw = yaw; Pitch = pitch; Roll = roll; }
    }

    public static class SwanSphereAxes
    {
        // --- Unity: left-handed, x right, y up, z forward, metres ------------------------

        /// <summary>Unity position (x, y, z) -> wire (z, -x, y).</summary>
        public static WireVector UnityPosition(double x, double y, double z)
        {
            RequireFinite("Unity position", x, y, z);
            return new WireVector(z, -x, y);
        }

        /// <summary>Unity transform.eulerAngles (x, y, z) degrees -> wire yaw, pitch, roll.</summary>
        public static WireYpr UnityEulerToYpr(double ex, double ey, double ez)
        {
            RequireFinite("Unity euler angles", ex, ey, ez);
            return new WireYpr(-ey, ex, -ez);
        }

        /// <summary>Unity Quaternion fields (x, y, z, w) -> wire (w, -z, x, -y), normalised.</summary>
        public static WireQuaternion UnityQuaternion(double x, double y, double z, double w)
        {
            return Normalize(new WireQuaternion(w, -z, x, -y));
        }

        // --- Unreal: left-handed, x forward, y right, z up, centimetres ------------------

        /// <summary>Unreal location (X, Y, Z) cm -> wire (X, -Y, Z) / 100 metres.</summary>
        public static WireVector UnrealPosition(double x, double y, double z)
        {
            RequireFinite("Unreal position", x, y, z);
            return new WireVector(x / 100.0, -y / 100.0, z / 100.0);
        }

        /// <summary>Unreal FRotator(Pitch, Yaw, Roll) degrees -> wire yaw, pitch, roll.</summary>
        public static WireYpr UnrealRotatorToYpr(double pitch, double yaw, double roll)
        {
            RequireFinite("Unreal rotator", pitch, yaw, roll);
            return new WireYpr(-yaw, -pitch, roll);
        }

        /// <summary>Unreal FQuat fields (X, Y, Z, W) -> wire (W, -X, Y, -Z), normalised.</summary>
        public static WireQuaternion UnrealQuaternion(double x, double y, double z, double w)
        {
            return Normalize(new WireQuaternion(w, -x, y, -z));
        }

        // --- wire-frame rotation math ------------------------------------------------------

        /// <summary>Unit quaternion with w >= 0; throws for a non-finite or zero quaternion.</summary>
        public static WireQuaternion Normalize(WireQuaternion q)
        {
            RequireFinite("quaternion", q.W, q.X, q.Y, q.Z);
            double n = Math.Sqrt(q.W * q.W + q.X * q.X + q.Y * q.Y + q.Z * q.Z);
            if (n < 1e-8)
                throw new ArgumentException("quaternion has zero norm: it does not describe a rotation");
            double s = (q.W < 0 ? -1.0 : 1.0) / n; // q and -q are the same rotation
            return new WireQuaternion(q.W * s, q.X * s, q.Y * s, q.Z * s);
        }

        /// <summary>Quaternion of R = Rz(yaw) Ry(pitch) Rx(roll), degrees, w >= 0.</summary>
        public static WireQuaternion YprToQuaternion(WireYpr ypr)
        {
            RequireFinite("yaw/pitch/roll", ypr.Yaw, ypr.Pitch, ypr.Roll);
            double h = Math.PI / 360.0; // half-angle, radians per degree
            double cy = Math.Cos(ypr.Yaw * h), sy = Math.Sin(ypr.Yaw * h);
            double cp = Math.Cos(ypr.Pitch * h), sp = Math.Sin(ypr.Pitch * h);
            double cr = Math.Cos(ypr.Roll * h), sr = Math.Sin(ypr.Roll * h);
            return Normalize(new WireQuaternion(
                cy * cp * cr + sy * sp * sr,
                cy * cp * sr - sy * sp * cr,
                cy * sp * cr + sy * cp * sr,
                sy * cp * cr - cy * sp * sr));
        }

        /// <summary>v rotated by the unit quaternion q (R(q) v).</summary>
        public static WireVector Rotate(WireQuaternion q, WireVector v)
        {
            // t = 2 (q_vec x v); v' = v + w t + q_vec x t
            double tx = 2 * (q.Y * v.Z - q.Z * v.Y);
            double ty = 2 * (q.Z * v.X - q.X * v.Z);
            double tz = 2 * (q.X * v.Y - q.Y * v.X);
            return new WireVector(
                v.X + q.W * tx + (q.Y * tz - q.Z * ty),
                v.Y + q.W * ty + (q.Z * tx - q.X * tz),
                v.Z + q.W * tz + (q.X * ty - q.Y * tx));
        }

        /// <summary>
        /// A world point seen from the listener: R(listener)^T (point - listener), on the wire
        /// axes. This is what SceneObject.position expects (metres, listener frame).
        /// </summary>
        public static WireVector ToListenerFrame(WireVector point, WireVector listener, WireQuaternion listenerOrientation)
        {
            WireQuaternion q = Normalize(listenerOrientation);
            var inverse = new WireQuaternion(q.W, -q.X, -q.Y, -q.Z);
            return Rotate(inverse, new WireVector(point.X - listener.X, point.Y - listener.Y, point.Z - listener.Z));
        }

        private static void RequireFinite(string what, params double[] values)
        {
            foreach (double v in values)
                if (double.IsNaN(v) || double.IsInfinity(v))
                    throw new ArgumentException(what + " has a non-finite component (" + v + ")");
        }
    }
}
