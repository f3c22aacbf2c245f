// Line-oriented driver of the bridge core, so tests/bridges can run the C++ core and its
// C# twin on the same script and check both against the Python reference.
//
//   g++ -std=c++17 -O1 -I Source/SwanSphereCore Tests/bridge_conformance.cpp -o conformance
//   ./conformance < script.txt
//
// One command per line (bridges/README.md, "Conformance script"); one answer per line:
// numbers separated by spaces, or "error: <message>" for input the core refuses.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "PcmRingBuffer.h"
#include "SwanSphereAxes.h"

using namespace swansphere::bridge;

namespace {

std::string numbers(std::initializer_list<double> values) {
  std::string out;
  char buf[40];
  for (double v : values) {
    std::snprintf(buf, sizeof buf, "%.17g", v);
    if (!out.empty()) out += ' ';
    out += buf;
  }
  return out;
}

std::string floats(const std::vector<float>& values) {
  std::string out;
  char buf[32];
  for (float v : values) {
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    if (!out.empty()) out += ' ';
    out += buf;
  }
  return out;
}

std::vector<uint8_t> hex_bytes(const std::string& hex) {
  if (hex.size() % 2 != 0) throw std::invalid_argument("odd-length hex payload");
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return bytes;
}

std::unique_ptr<PcmRingBuffer> ring;

std::string run(const std::string& command, std::istringstream& in) {
  if (command == "decode") {
    std::string format, hex;
    int channels = 0;
    in >> format >> channels >> hex;
    const std::vector<uint8_t> pcm = hex_bytes(hex);
    std::vector<float> out;
    decode_pcm(pcm.data(), pcm.size(), channels,
               format == "int16" ? WireSampleFormat::kInt16 : WireSampleFormat::kFloat32, out);
    return floats(out);
  }
  std::vector<double> n;
  for (std::string word; in >> word;) {
    char* end = nullptr;
    n.push_back(std::strtod(word.c_str(), &end));  // strtod reads nan and inf too
    if (*end != '\0') throw std::invalid_argument("not a number: " + word);
  }
  auto vec = [](const WireVector& v) { return numbers({v.x, v.y, v.z}); };
  auto ypr = [](const WireYpr& v) { return numbers({v.yaw, v.pitch, v.roll}); };
  auto quat = [](const WireQuaternion& q) { return numbers({q.w, q.x, q.y, q.z}); };
  if (command == "unity_position") return vec(unity_position(n.at(0), n.at(1), n.at(2)));
  if (command == "unity_euler") return ypr(unity_euler_to_ypr(n.at(0), n.at(1), n.at(2)));
  if (command == "unity_quat") return quat(unity_quaternion(n.at(0), n.at(1), n.at(2), n.at(3)));
  if (command == "unreal_position") return vec(unreal_position(n.at(0), n.at(1), n.at(2)));
  if (command == "unreal_rotator") return ypr(unreal_rotator_to_ypr(n.at(0), n.at(1), n.at(2)));
  if (command == "unreal_quat") return quat(unreal_quaternion(n.at(0), n.at(1), n.at(2), n.at(3)));
  if (command == "ypr_quat") return quat(ypr_to_quaternion({n.at(0), n.at(1), n.at(2)}));
  if (command == "listener") {
    return vec(to_listener_frame({n.at(0), n.at(1), n.at(2)}, {n.at(3), n.at(4), n.at(5)},
                                 {n.at(6), n.at(7), n.at(8), n.at(9)}));
  }
  if (command == "ring") {
    ring = std::make_unique<PcmRingBuffer>(static_cast<int>(n.at(0)), static_cast<int>(n.at(1)));
    return "ok";
  }
  if (command == "write") {
    std::vector<float> pcm(n.begin() + 2, n.end());
    return std::to_string(ring->write(static_cast<int64_t>(n.at(0)), pcm.data(), static_cast<int>(n.at(1))));
  }
  if (command == "read") {
    const int frames = static_cast<int>(n.at(0));
    std::vector<float> out(static_cast<size_t>(frames) * ring->channels());
    const int real = ring->read(out.data(), frames);
    return std::to_string(real) + (frames > 0 ? " " + floats(out) : "");
  }
  if (command == "counters") {
    return std::to_string(ring->gap_frames()) + " " + std::to_string(ring->stale_frames()) + " " +
           std::to_string(ring->overflow_frames()) + " " + std::to_string(ring->underrun_frames()) + " " +
           std::to_string(ring->available_frames());
  }
  throw std::invalid_argument("unknown command " + command);
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    if (!(in >> command) || command[0] == '#') continue;
    try {
      std::cout << run(command, in) << '\n';
    } catch (const std::exception& e) {  // malformed script lines too
      std::cout << "error: " << e.what() << '\n';
    }
  }
  return 0;
}
