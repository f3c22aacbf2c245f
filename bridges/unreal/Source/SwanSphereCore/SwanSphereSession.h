// A SwanSphere live session over gRPC, in plain C++17 (grpc++ and the classes protoc
// generates from protos/swansphere/v1/swansphere.proto). The Unreal component
// (Source/SwanSphere) is a thin layer over it; tests/bridges builds it with g++ and streams
// through a real server.
//
// Threads: any one game thread calls the send_* functions (they serialise on a mutex); a
// reader thread owned by the session puts AudioChunks into a PcmRingBuffer by sample offset;
// the audio thread calls read(). Protocol types stay in the .cpp: callers see wire-frame
// values (SwanSphereAxes.h) and interleaved float PCM.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "PcmRingBuffer.h"
#include "SwanSphereAxes.h"

namespace swansphere::bridge {

enum class OutputFormat { kBinaural, kFoa, kStereo, kSurround51, kSurround714 };

struct SessionOptions {
  std::string model;                  // a name from ListModels; "" = the server's default
  OutputFormat format = OutputFormat::kBinaural;
  int sample_rate = 48000;            // 44100 or 48000 (the server refuses others)
  std::string caption;                // initial caption
  std::optional<uint32_t> steps;      // flow-matching steps; unset = the model's default
  std::optional<uint64_t> seed;
  std::optional<float> duration_s;    // the audio's length; unset = end of video
  bool realtime = true;               // false: as fast as possible (offline rendering): the
                                      // frames' capture times are the clock: end_of_video()
                                      // after the last frame, or the session waits for more
  int buffer_ms = 500;                // playback buffer between network and audio thread
  int connect_timeout_ms = 5000;
  std::string token;                  // server started with --token: "authorization: Bearer"
};

struct SessionInfo {
  std::string session_id, model;
  int sample_rate = 0, channels = 0;
  std::vector<std::string> layout;    // channel labels, e.g. L, R or W, Y, Z, X
};

class Session {
 public:
  /// Connects, sends the config and waits for the server's SessionStarted. Throws
  /// std::runtime_error with the server's reason (no server, a refused config, ...).
  Session(const std::string& address, const SessionOptions& options);
  ~Session();  // ends the stream (EndOfVideo) if needed, cancels, joins the reader
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const SessionInfo& info() const { return info_; }

  /// An equirectangular RGB8 panorama (rows top to bottom; centre column = front, left at a
  /// quarter width), with the listener's head when given. False once the stream is closed.
  bool send_panorama(const std::vector<uint8_t>& rgb, int width, int height, double capture_time_s,
                     const WireQuaternion* head = nullptr);
  /// A field-of-view RGB8 frame with the camera's orientation and horizontal field of view.
  bool send_view(const std::vector<uint8_t>& rgb, int width, int height, const WireQuaternion& orientation,
                 double hfov_deg, double capture_time_s, const WireQuaternion* head = nullptr);
  /// New caption from the next patch on ("" clears it).
  bool set_caption(const std::string& text, double capture_time_s);
  /// The listener's head, applied at render time.
  bool set_head(const WireQuaternion& head, double capture_time_s);
  /// No more camera frames: the server finishes the audio and closes the stream.
  void end_of_video();

  /// Audio thread: `frames` interleaved frames (info().channels each); silence where none.
  int read(float* interleaved, int frames) { return ring_->read(interleaved, frames); }
  const PcmRingBuffer& buffer() const { return *ring_; }

  /// The server closed the stream (finished, or failed: see status()).
  bool finished() const { return finished_.load(); }
  /// "" while running or after a clean finish; else the gRPC status and message.
  std::string status() const;
  /// Warning and error events so far, as "LEVEL CODE: message" lines; clears them.
  std::vector<std::string> take_events();
  uint64_t chunks_received() const { return chunks_.load(); }

 private:
  struct Impl;  // gRPC channel, stub, context and stream (protocol types stay in the .cpp)
  bool write_frame(void* message);  // a swansphere::v1::ClientMessage holding a Frame
  void read_loop();

  std::unique_ptr<Impl> impl_;
  SessionInfo info_;
  std::unique_ptr<PcmRingBuffer> ring_;  // made once SessionStarted names the channel count
  std::thread reader_;
  std::mutex write_mutex_, events_mutex_;
  uint64_t sequence_ = 0;
  bool writes_done_ = false;
  std::atomic<bool> finished_{false};
  std::atomic<uint64_t> chunks_{0};
  std::string status_;
  std::vector<std::string> events_;
};

}  // namespace swansphere::bridge
