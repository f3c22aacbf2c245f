// Between the gRPC reader thread and the engine's audio render thread (header-only C++17).
//
// The server sends AudioChunks whose sample_offset says where each one belongs in the
// session's output. A chunk the server dropped (late for a slow client) leaves a gap: the
// buffer fills it with silence so later audio stays on time. A chunk that overlaps what
// was already written (a repeat) loses the overlap. The audio thread reads whole blocks;
// what is not there yet is silence and counts as an underrun.
//
// One writer thread and one reader thread, no locks: each side owns one position and
// publishes it with release/acquire atomics. Same behaviour as the C# twin in bridges/unity.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace swansphere::bridge {

/// Interleaved float PCM, single producer / single consumer, placed by sample offset.
class PcmRingBuffer {
 public:
  PcmRingBuffer(int channels, int capacity_frames) : channels_(channels), capacity_(capacity_frames) {
    if (channels < 1 || channels > 64) {
      throw std::invalid_argument("channels must be 1..64, got " + std::to_string(channels));
    }
    if (capacity_frames < 1) {
      throw std::invalid_argument("capacity must be at least one frame, got " +
                                  std::to_string(capacity_frames));
    }
    data_.assign(static_cast<size_t>(channels) * capacity_frames, 0.0f);
  }

  int channels() const { return channels_; }
  int capacity_frames() const { return capacity_; }

  /// Frames stored and not yet read.
  int available_frames() const {
    return static_cast<int>(written_.load(std::memory_order_acquire) - read_.load(std::memory_order_acquire));
  }

  // Counters (frames): silence inserted for chunks that never arrived; repeated or
  // overlapping frames discarded; frames that did not fit; frames the reader found missing
  // after the first write.
  int64_t gap_frames() const { return gap_.load(); }
  int64_t stale_frames() const { return stale_.load(); }
  int64_t overflow_frames() const { return overflow_.load(); }
  int64_t underrun_frames() const { return underrun_.load(); }

  /// Writer thread: store `frames` interleaved frames that start at session sample
  /// `sample_offset`. Returns the frames stored.
  int write(int64_t sample_offset, const float* interleaved, int frames) {
    if (sample_offset < 0) {
      throw std::invalid_argument("sample offset must be >= 0, got " + std::to_string(sample_offset));
    }
    if (frames < 0 || (frames > 0 && interleaved == nullptr)) {
      throw std::invalid_argument("chunk holds fewer than " + std::to_string(frames) + " frames");
    }
    if (next_offset_ < 0) next_offset_ = sample_offset;  // the session's first chunk
    int skip = 0;
    if (sample_offset < next_offset_) {
      skip = static_cast<int>(std::min<int64_t>(frames, next_offset_ - sample_offset));
      stale_ += skip;
    } else if (sample_offset > next_offset_) {
      const int64_t gap = sample_offset - next_offset_;
      gap_ += gap;
      const int64_t silent = std::min<int64_t>(gap, free_frames());
      overflow_ += gap - silent;
      store(nullptr, static_cast<int>(silent));
    }
    const int fresh = frames - skip;
    const int stored = static_cast<int>(std::min<int64_t>(fresh, free_frames()));
    overflow_ += fresh - stored;
    store(interleaved + static_cast<size_t>(skip) * channels_, stored);
    next_offset_ = std::max(next_offset_, sample_offset + frames);
    return stored;
  }

  /// Reader (audio) thread: fill `frames` interleaved frames of `destination`; missing
  /// frames are zeros. Returns the frames that were real audio.
  int read(float* destination, int frames) {
    if (frames < 0 || (frames > 0 && destination == nullptr)) {
      throw std::invalid_argument("destination holds fewer than " + std::to_string(frames) + " frames");
    }
    const int64_t written = written_.load(std::memory_order_acquire);
    const int64_t read = read_.load(std::memory_order_relaxed);
    const int n = static_cast<int>(std::min<int64_t>(frames, written - read));
    for (int i = 0; i < n; ++i) {
      const size_t slot = static_cast<size_t>((read + i) % capacity_);
      std::memcpy(destination + static_cast<size_t>(i) * channels_, &data_[slot * channels_],
                  sizeof(float) * channels_);
    }
    std::fill(destination + static_cast<size_t>(n) * channels_,
              destination + static_cast<size_t>(frames) * channels_, 0.0f);
    if (n < frames && written > 0) underrun_ += frames - n;
    read_.store(read + n, std::memory_order_release);
    return n;
  }

 private:
  int64_t free_frames() const {
    return capacity_ - (written_.load(std::memory_order_relaxed) - read_.load(std::memory_order_acquire));
  }

  // source == nullptr stores silence
  void store(const float* source, int frames) {
    const int64_t written = written_.load(std::memory_order_relaxed);
    for (int i = 0; i < frames; ++i) {
      float* slot = &data_[static_cast<size_t>((written + i) % capacity_) * channels_];
      if (source == nullptr) {
        std::fill(slot, slot + channels_, 0.0f);
      } else {
        std::memcpy(slot, source + static_cast<size_t>(i) * channels_, sizeof(float) * channels_);
      }
    }
    written_.store(written + frames, std::memory_order_release);
  }

  const int channels_;
  const int capacity_;
  std::vector<float> data_;
  std::atomic<int64_t> written_{0};  // frames ever stored (writer-owned)
  std::atomic<int64_t> read_{0};     // frames ever consumed (reader-owned)
  int64_t next_offset_ = -1;         // session sample of the next frame to store (writer-owned)
  std::atomic<int64_t> gap_{0}, stale_{0}, overflow_{0}, underrun_{0};
};

/// AudioChunk.sample_format on the wire.
enum class WireSampleFormat { kFloat32 = 1, kInt16 = 2 };

/// AudioChunk.pcm (interleaved little-endian float32, or int16 scaled by 1/32768) ->
/// interleaved floats appended to `destination`. Returns the frame count.
inline int decode_pcm(const uint8_t* pcm, size_t bytes, int channels, WireSampleFormat format,
                      std::vector<float>& destination) {
  if (channels < 1) throw std::invalid_argument("channels must be >= 1, got " + std::to_string(channels));
  const size_t width = format == WireSampleFormat::kInt16 ? 2 : 4;
  if (bytes % (width * channels) != 0) {
    throw std::invalid_argument("PCM payload of " + std::to_string(bytes) + " bytes is not whole frames of " +
                                std::to_string(channels) + " x " + std::to_string(width) + " bytes");
  }
  const size_t samples = bytes / width;
  destination.reserve(destination.size() + samples);
  for (size_t i = 0; i < samples; ++i) {
    const uint8_t* b = pcm + i * width;
    if (format == WireSampleFormat::kInt16) {
      const auto v = static_cast<int16_t>(static_cast<uint16_t>(b[0] | (b[1] << 8)));
      destination.push_back(static_cast<float>(v) / 32768.0f);
    } else {
      const uint32_t bits = static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) |
                            (static_cast<uint32_t>(b[2]) << 16) | (static_cast<uint32_t>(b[3]) << 24);
      float v;
      std::memcpy(&v, &bits, sizeof v);  // byte order handled above, so any host works
      destination.push_back(v);
    }
  }
  return static_cast<int>(samples / channels);
}

}  // namespace swansphere::bridge
