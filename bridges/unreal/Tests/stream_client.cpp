// Streams a procedural panorama clip through a SwanSphere server with the C++ session
// core, then prints one JSON line about what came back (tests/bridges runs it against a real
// server; it also checks a setup from a shell).
//
//   stream_client ADDRESS [--frames N] [--fps F] [--steps K] [--format binaural|foa|stereo|5.1|7.1.4]
//                 [--rate HZ] [--caption TEXT] [--recaption-at I TEXT] [--odd-frame-at I]
//                 [--duration S] [--realtime] [--out FILE.f32]
//
// The clip: a bright disc on a dark 128x64 equirectangular canvas moving from the left
// (+90 deg) to the right (-90 deg); the head turns with it. --odd-frame-at sends frame I
// at 100x64 (not 2:1), which the server refuses with a warning while the session goes on.
// Exit status 2 with one line on stderr when the session cannot start.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "SwanSphereSession.h"

using namespace swansphere::bridge;

namespace {

std::vector<uint8_t> panorama(int width, int height, double azimuth_deg) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3, 20);
  for (int row = 0; row < height; ++row) {
    const double elevation = 90.0 - (row + 0.5) * 180.0 / height;
    for (int col = 0; col < width; ++col) {
      // centre column = front, left (+90 deg) at a quarter width
      double azimuth = 180.0 - (col + 0.5) * 360.0 / width;
      double d = std::fmod(std::fabs(azimuth - azimuth_deg), 360.0);
      d = std::min(d, 360.0 - d);
      if (d * d + elevation * elevation < 20.0 * 20.0) {
        uint8_t* px = &rgb[(static_cast<size_t>(row) * width + col) * 3];
        px[0] = 250, px[1] = 240, px[2] = 200;
      }
    }
  }
  return rgb;
}

OutputFormat parse_format(const std::string& name) {
  if (name == "binaural") return OutputFormat::kBinaural;
  if (name == "foa") return OutputFormat::kFoa;
  if (name == "stereo") return OutputFormat::kStereo;
  if (name == "5.1") return OutputFormat::kSurround51;
  if (name == "7.1.4") return OutputFormat::kSurround714;
  throw std::invalid_argument("unknown format " + name + "; choose binaural, foa, stereo, 5.1 or 7.1.4");
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: stream_client ADDRESS [options]\n";
    return 2;
  }
  const std::string address = argv[1];
  SessionOptions options;
  options.realtime = false;
  options.buffer_ms = 60000;  // the whole clip: this client reads at the end
  int frames = 12, odd_frame = -1, recaption_at = -1;
  double fps = 6.0;
  std::string recaption, out_path;
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--frames") frames = std::stoi(next());
      else if (a == "--fps") fps = std::stod(next());
      else if (a == "--steps") options.steps = static_cast<uint32_t>(std::stoul(next()));
      else if (a == "--format") options.format = parse_format(next());
      else if (a == "--rate") options.sample_rate = std::stoi(next());
      else if (a == "--caption") options.caption = next();
      else if (a == "--recaption-at") recaption_at = std::stoi(next()), recaption = next();
      else if (a == "--odd-frame-at") odd_frame = std::stoi(next());
      else if (a == "--duration") options.duration_s = std::stof(next());
      else if (a == "--realtime") options.realtime = true;
      else if (a == "--out") out_path = next();
      else throw std::invalid_argument("unknown option " + a);
    }
    if (frames < 1 || !(fps > 0)) throw std::invalid_argument("--frames and --fps must be positive");

    Session session(address, options);
    std::vector<std::string> refused;
    const auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < frames; ++k) {
      const double t = k / fps;
      const double azimuth = frames > 1 ? 90.0 - 180.0 * k / (frames - 1) : 0.0;
      const WireQuaternion head = ypr_to_quaternion({azimuth, 0.0, 0.0});
      if (k == recaption_at) session.set_caption(recaption, t);
      const int width = k == odd_frame ? 100 : 128;
      session.send_panorama(panorama(width, 64, azimuth), width, 64, t, &head);
      if (options.realtime) std::this_thread::sleep_until(start + std::chrono::duration<double>(t + 1 / fps));
    }
    try {  // the core refuses a malformed image itself, before it reaches the wire
      session.send_panorama(std::vector<uint8_t>(10), 128, 64, frames / fps);
    } catch (const std::invalid_argument& e) {
      refused.push_back(e.what());
    }
    session.end_of_video();
    while (!session.finished()) std::this_thread::sleep_for(std::chrono::milliseconds(20));

    const int channels = session.info().channels;
    std::vector<float> audio(static_cast<size_t>(session.buffer().available_frames()) * channels);
    const int got = session.read(audio.data(), session.buffer().available_frames());
    double peak = 0;
    bool finite = true;
    for (float v : audio) {
      finite = finite && std::isfinite(v);
      peak = std::max(peak, static_cast<double>(std::fabs(v)));
    }
    if (!out_path.empty()) {
      std::ofstream(out_path, std::ios::binary).write(reinterpret_cast<const char*>(audio.data()),
                                                      static_cast<std::streamsize>(audio.size() * sizeof(float)));
    }
    std::string events;
    for (const std::string& e : session.take_events()) events += (events.empty() ? "" : ",") + json_string(e);
    std::string refusals;
    for (const std::string& e : refused) refusals += (refusals.empty() ? "" : ",") + json_string(e);
    std::string layout;
    for (const std::string& l : session.info().layout) layout += (layout.empty() ? "" : ",") + json_string(l);
    const PcmRingBuffer& ring = session.buffer();
    std::printf(
        "{\"session_id\": %s, \"model\": %s, \"sample_rate\": %d, \"channels\": %d, \"layout\": [%s], "
        "\"frames\": %d, \"chunks\": %llu, \"peak\": %.6g, \"finite\": %s, \"gap_frames\": %lld, "
        "\"overflow_frames\": %lld, \"status\": %s, \"events\": [%s], \"refused\": [%s]}\n",
        json_string(session.info().session_id).c_str(), json_string(session.info().model).c_str(),
        session.info().sample_rate, channels, layout.c_str(), got,
        static_cast<unsigned long long>(session.chunks_received()), peak, finite ? "true" : "false",
        static_cast<long long>(ring.gap_frames()), static_cast<long long>(ring.overflow_frames()),
        json_string(session.status()).c_str(), events.c_str(), refusals.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "stream_client: " << e.what() << "\n";
    return 2;
  }
}
