// Between the gRPC reader thread and the engine's audio thread.
//
// The server sends AudioChunks whose sample_offset says where each one belongs in the
// session's output. A chunk the server dropped (late for a slow client) leaves a gap: the
// buffer fills it with silence so later audio stays on time. A chunk that overlaps what
// was already written (a repeat) loses the overlap. The audio thread reads whole blocks;
// what is not there yet is silence and counts as an underrun.
//
// One writer thread and one reader thread, no locks: each side owns one position and
// publishes it with a volatile write (the C++ twin in bridges/unreal uses std::atomic).

using System;
using System.Threading;

namespace SwanSphere.Bridge
{
    /// <summary>Interleaved float PCM, single producer / single consumer, placed by sample offset.</summary>
    public sealed class PcmRingBuffer
    {
        private readonly float[] _data;
        private readonly int _capacityFrames;
        private long _written;   // frames ever stored (writer-owned)
        private long _read;      // frames ever consumed (reader-owned)
        private long _nextOffset = -1; // session sample offset of the next frame to store (writer-owned)

        public int Channels { get; private set; }
        public int CapacityFrames { get { return _capacityFrames; } }

        /// <summary>Silence inserted for chunks that never arrived (frames).</summary>
        public long GapFrames;
        /// <summary>Frames of repeated or overlapping chunks, discarded.</summary>
        public long StaleFrames;
        /// <summary>Frames that did not fit (the reader fell behind), discarded.</summary>
        public long OverflowFrames;
        /// <summary>Frames the reader asked for after the first write but found missing.</summary>
        public long UnderrunFrames;

        public PcmRingBuffer(int channels, int capacityFrames)
        {
            if (channels < 1 || channels > 64)
                throw new ArgumentException("channels must be 1..64, got " + channels);
            if (capacityFrames < 1)
                throw new ArgumentException("capacity must be at least one frame, got " + capacityFrames);
            Channels = channels;
            _capacityFrames = capacityFrames;
            _data = new float[(long)channels * capacityFrames];
        }

        /// <summary>Frames stored and not yet read.</summary>
        public int AvailableFrames
        {
            get { return (int)(Volatile.Read(ref _written) - Volatile.Read(ref _read)); }
        }

        /// <summary>
        /// Writer thread: store <paramref name="frames"/> interleaved frames that start at
        /// session sample <paramref name="sampleOffset"/>. Returns the frames stored.
        /// </summary>
        public int Write(long sampleOffset, float[] interleaved, int frames)
        {
            if (sampleOffset < 0) throw new ArgumentException("sample offset must be >= 0, got " + sampleOffset);
            if (frames < 0 || interleaved == null || (long)frames * Channels > interleaved.Length)
                throw new ArgumentException("chunk holds fewer than " + frames + " frames of " + Channels + " channels");
            if (_nextOffset < 0) _nextOffset = sampleOffset; // the session's first chunk
            int skip = 0;
            if (sampleOffset < _nextOffset)
            {
                skip = (int)Math.Min(frames, _nextOffset - sampleOffset);
                StaleFrames += skip;
            }
            else if (sampleOffset > _nextOffset)
            {
                long gap = sampleOffset - _nextOffset;
                GapFrames += gap;
                long silent = Math.Min(gap, Free());
                OverflowFrames += gap - silent;
                Store(null, 0, (int)silent);
            }
            int fresh = frames - skip;
            int stored = (int)Math.Min(fresh, Free());
            OverflowFrames += fresh - stored;
            Store(interleaved, skip, stored);
            _nextOffset = Math.Max(_nextOffset, sampleOffset + frames);
            return stored;
        }

        /// <summary>
        /// Reader (audio) thread: fill <paramref name="frames"/> interleaved frames of
        /// <paramref name="destination"/>; missing frames are zeros. Returns the frames that were real audio.
        /// </summary>
        public int Read(float[] destination, int frames)
        {
            if (frames < 0 || destination == null || (long)frames * Channels > destination.Length)
                throw new ArgumentException("destination holds fewer than " + frames + " frames of " + Channels + " channels");
            long written = Volatile.Read(ref _written);
            long read = _read;
            int n = (int)Math.Min(frames, written - read);
            for (int i = 0; i < n; i++)
            {
                long slot = (read + i) % _capacityFrames;
                Array.Copy(_data, slot * Channels, destination, (long)i * Channels, Channels);
            }
            Array.Clear(destination, n * Channels, (frames - n) * Channels);
            if (n < frames && written > 0) Interlocked.Add(ref UnderrunFrames, frames - n);
            Volatile.Write(ref _read, read + n);
            return n;
        }

        private long Free()
        {
            return _capacityFrames - (_written - Volatile.Read(ref _read));
        }

        // source == null stores silence
        private void Store(float[] source, int firstFrame, int frames)
        {
            long written = _written;
            for (int i = 0; i < frames; i++)
            {
                long slot = (written + i) % _capacityFrames;
                if (source == null)
                    Array.Clear(_data, (int)(slot * Channels), Channels);
                else
                    Array.Copy(source, (long)(firstFrame + i) * Channels, _data, slot * Channels, Channels);
            }
            Volatile.Write(ref _written, written + frames);
        }
    }

    /// <summary>AudioChunk.sample_format on the wire.</summary>
    public enum WireSampleFormat { Float32 = 1, Int16 = 2 }

    public static class PcmCodec
    {
        /// <summary>
        /// AudioChunk.pcm (interleaved little-endian float32, or int16 scaled by 1/32768)
        /// -> interleaved floats in <paramref name="destination"/>. Returns the frame count.
        /// </summary>
        public static int Decode(byte[] pcm, int channels, WireSampleFormat format, float[] destination)
        {
            if (channels < 1) throw new ArgumentException("channels must be >= 1, got " + channels);
            int width = format == WireSampleFormat.Int16 ? 2 : 4;
            if (pcm == null || pcm.Length % (width * channels) != 0)
                throw new ArgumentException("PCM payload of " + (pcm == null ? 0 : pcm.Length) +
                    " bytes is not whole frames of " + channels + " x " + width + " bytes");
            int samples = pcm.Length / width;
            if (destination == null || destination.Length < samples)
                throw new ArgumentException("destination holds fewer than " + samples + " samples");
            bool swap = !BitConverter.IsLittleEndian;
            for (int i = 0; i < samples; i++)
            {
                int at = i * width;
                if (format == WireSampleFormat.Int16)
                {
                    int lo = pcm[at], hi = pcm[at + 1];
                    destination[i] = (short)(lo | (hi << 8)) / 32768f;
                }
                else if (!swap)
                {
                    destination[i] = BitConverter.ToSingle(pcm, at);
                }
                else
                {
                    var b = new byte[] { pcm[at + 3], pcm[at + 2], pcm[at + 1], pcm[at] };
                    destination[i] = BitConverter.ToSingle(b, 0);
                }
            }
            return samples / channels;
        }
    }
}
