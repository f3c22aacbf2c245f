// Line-oriented driver of the bridge core, so tests/bridges can run the C# core and its
// C++ twin on the same script and check both against the Python reference.
//
//   mcs -out:conformance.exe Runtime/SwanSphereAxes.cs Runtime/PcmRingBuffer.cs Tests/BridgeConformance.cs
//   mono conformance.exe < script.txt
//
// One command per line (see bridges/README.md, "Conformance script"); one answer per line:
// numbers separated by spaces, or "error: <message>" for input the core refuses.

using System;
using System.Globalization;
using System.Linq;
using System.Text;
using SwanSphere.Bridge;

public static class BridgeConformance
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static PcmRingBuffer _ring;

    public static int Main()
    {
        string line;
        while ((line = Console.In.ReadLine()) != null)
        {
            line = line.Trim();
            if (line.Length == 0 || line.StartsWith("#")) continue;
            string[] words = line.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
            try
            {
                Console.Out.WriteLine(Run(words[0], words.Skip(1).ToArray()));
            }
            catch (Exception e) // ArgumentException from the core; malformed script lines too
            {
                Console.Out.WriteLine("error: " + e.Message);
            }
        }
        return 0;
    }

    private static string Run(string command, string[] a)
    {
        double[] n = command == "decode" ? null : a.Select(Number).ToArray();
        switch (command)
        {
            case "unity_position": return Vec(SwanSphereAxes.UnityPosition(n[0], n[1], n[2]));
            case "unity_euler": return Ypr(SwanSphereAxes.UnityEulerToYpr(n[0], n[1], n[2]));
            case "unity_quat": return Quat(SwanSphereAxes.UnityQuaternion(n[0], n[1], n[2], n[3]));
            case "unreal_position": return Vec(SwanSphereAxes.UnrealPosition(n[0], n[1], n[2]));
            case "unreal_rotator": return Ypr(SwanSphereAxes.UnrealRotatorToYpr(n[0], n[1], n[2]));
            case "unreal_quat": return Quat(SwanSphereAxes.UnrealQuaternion(n[0], n[1], n[2], n[3]));
            case "ypr_quat": return Quat(SwanSphereAxes.YprToQuaternion(new WireYpr(n[0], n[1], n[2])));
            case "listener":
                return Vec(SwanSphereAxes.ToListenerFrame(
                    new WireVector(n[0], n[1], n[2]), new WireVector(n[3], n[4], n[5]),
                    new WireQuaternion(n[6], n[7], n[8], n[9])));
            case "decode":
            {
                var format = a[0] == "int16" ? WireSampleFormat.Int16 : WireSampleFormat.Float32;
                int channels = int.Parse(a[1], Inv);
                byte[] pcm = Hex(a.Length > 2 ? a[2] : "");
                var dst = new float[pcm.Length / 2 + 1];
                int frames = PcmCodec.Decode(pcm, channels, format, dst);
                return Floats(dst, frames * channels);
            }
            case "ring":
                _ring = new PcmRingBuffer((int)n[0], (int)n[1]);
                return "ok";
            case "write":
            {
                int frames = (int)n[1];
                float[] pcm = n.Skip(2).Select(v => (float)v).ToArray();
                return _ring.Write((long)n[0], pcm, frames).ToString(Inv);
            }
            case "read":
            {
                int frames = (int)n[0];
                var dst = new float[frames * _ring.Channels];
                int real = _ring.Read(dst, frames);
                return real.ToString(Inv) + (frames > 0 ? " " + Floats(dst, dst.Length) : "");
            }
            case "counters":
                return string.Join(" ", new long[] {
                    _ring.GapFrames, _ring.StaleFrames, _ring.OverflowFrames, _ring.UnderrunFrames,
                    _ring.AvailableFrames }.Select(v => v.ToString(Inv)));
            default:
                throw new ArgumentException("unknown command " + command);
        }
    }

    // the same spellings as C's strtod: nan, inf, -inf
    private static double Number(string word)
    {
        switch (word.ToLowerInvariant())
        {
            case "nan": return double.NaN;
            case "inf": case "+inf": return double.PositiveInfinity;
            case "-inf": return double.NegativeInfinity;
            default: return double.Parse(word, NumberStyles.Float, Inv);
        }
    }

    private static string Vec(WireVector v) { return D(v.X, v.Y, v.Z); }
    private static string Ypr(WireYpr v) { return D(v.Yaw, v.Pitch, v.Roll); }
    private static string Quat(WireQuaternion q) { return D(q.W, q.X, q.Y, q.Z); }

    private static string D(params double[] values)
    {
        return string.Join(" ", values.Select(v => v.ToString("R", Inv)));
    }

    private static string Floats(float[] values, int count)
    {
        return string.Join(" ", values.Take(count).Select(v => v.ToString("R", Inv)));
    }

    private static byte[] Hex(string hex)
    {
        if (hex.Length % 2 != 0) throw new ArgumentException("odd-length hex payload");
        var bytes = new byte[hex.Length / 2];
        for (int i = 0; i < bytes.Length; i++)
            bytes[i] = byte.Parse(hex.Substring(2 * i, 2), NumberStyles.HexNumber, Inv);
        return bytes;
    }
}
