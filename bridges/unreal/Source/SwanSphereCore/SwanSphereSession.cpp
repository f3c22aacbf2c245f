// See SwanSphereSession.h. The only file of the core that sees gRPC and protobuf types.
#include "SwanSphereSession.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

#include "swansphere/v1/swansphere.grpc.pb.h"

namespace swansphere::bridge {

namespace pb = ::swansphere::v1;

struct Session::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::SwanSphere::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<pb::ClientMessage, pb::ServerMessage>> stream;
};

namespace {

const char* code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    default: return "ERROR";
  }
}

std::string describe(const grpc::Status& status) {
  return std::string(code_name(status.error_code())) + ": " + status.error_message();
}

pb::OutputFormat wire_format(OutputFormat format) {
  switch (format) {
    case OutputFormat::kFoa: return pb::OUTPUT_FORMAT_FOA;
    case OutputFormat::kStereo: return pb::OUTPUT_FORMAT_STEREO;
    case OutputFormat::kSurround51: return pb::OUTPUT_FORMAT_SURROUND_5_1;
    case OutputFormat::kSurround714: return pb::OUTPUT_FORMAT_SURROUND_7_1_4;
    case OutputFormat::kBinaural: break;
  }
  return pb::OUTPUT_FORMAT_BINAURAL;
}

void set_quaternion(pb::Quaternion* out, const WireQuaternion& q) {
  const WireQuaternion u = normalize(q);  // throws for a zero or non-finite quaternion
  out->set_w(static_cast<float>(u.w));
  out->set_x(static_cast<float>(u.x));
  out->set_y(static_cast<float>(u.y));
  out->set_z(static_cast<float>(u.z));
}

void set_raw_image(pb::CameraFrame* camera, const std::vector<uint8_t>& rgb, int width, int height) {
  if (width < 1 || height < 1 || rgb.size() != static_cast<size_t>(width) * height * 3) {
    throw std::invalid_argument("RGB8 image of " + std::to_string(width) + " x " + std::to_string(height) +
                                " needs " + std::to_string(static_cast<size_t>(std::max(width, 0)) *
                                                           std::max(height, 0) * 3) +
                                " bytes, got " + std::to_string(rgb.size()));
  }
  pb::RawImage* raw = camera->mutable_image()->mutable_raw();
  raw->set_width(static_cast<uint32_t>(width));
  raw->set_height(static_cast<uint32_t>(height));
  raw->set_rgb(rgb.data(), rgb.size());
}

std::string event_line(const pb::Event& event) {
  const char* level = event.level() == pb::Event::LEVEL_ERROR     ? "ERROR"
                      : event.level() == pb::Event::LEVEL_WARNING ? "WARNING"
                                                                  : "INFO";
  return std::string(level) + " " + event.code() + ": " + event.message();
}

}  // namespace

Session::Session(const std::string& address, const SessionOptions& options) : impl_(std::make_unique<Impl>()) {
  grpc::ChannelArguments args;
  // keepalive as the server sets it (DESIGN.md: both sides together)
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  impl_->channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(options.connect_timeout_ms);
  if (!impl_->channel->WaitForConnected(deadline)) {
    throw std::runtime_error("no SwanSphere server at " + address + " (waited " +
                             std::to_string(options.connect_timeout_ms) + " ms)");
  }
  impl_->stub = pb::SwanSphere::NewStub(impl_->channel);
  if (!options.token.empty()) impl_->context.AddMetadata("authorization", "Bearer " + options.token);
  impl_->stream = impl_->stub->Session(&impl_->context);

  pb::ClientMessage first;
  pb::SessionConfig* config = first.mutable_config();
  config->set_model(options.model);
  config->set_format(wire_format(options.format));
  config->set_sample_rate(static_cast<uint32_t>(options.sample_rate));
  config->set_sample_format(pb::SAMPLE_FORMAT_FLOAT32);
  config->set_caption(options.caption);
  if (options.steps) config->set_steps(*options.steps);
  if (options.seed) config->set_seed(*options.seed);
  if (options.duration_s) config->set_duration_s(*options.duration_s);
  config->set_pacing(options.realtime ? pb::PACING_REALTIME : pb::PACING_AS_FAST_AS_POSSIBLE);
  impl_->stream->Write(first);

  pb::ServerMessage message;
  while (impl_->stream->Read(&message)) {
    if (message.has_event()) {
      events_.push_back(event_line(message.event()));
    } else if (message.has_started()) {
      const pb::SessionStarted& started = message.started();
      info_.session_id = started.session_id();
      info_.model = started.model();
      info_.sample_rate = static_cast<int>(started.sample_rate());
      info_.channels = static_cast<int>(started.channels());
      info_.layout.assign(started.layout().begin(), started.layout().end());
      const int64_t capacity = static_cast<int64_t>(info_.sample_rate) * options.buffer_ms / 1000;
      ring_ = std::make_unique<PcmRingBuffer>(info_.channels, static_cast<int>(std::clamp<int64_t>(capacity, 1, 1 << 26)));
      reader_ = std::thread(&Session::read_loop, this);
      return;
    }
  }
  const grpc::Status status = impl_->stream->Finish();
  throw std::runtime_error("the server refused the session: " + describe(status));
}

Session::~Session() {
  end_of_video();
  if (reader_.joinable()) {
    if (!finished_.load()) impl_->context.TryCancel();
    reader_.join();
  }
}

bool Session::write_frame(void* message) {
  auto* m = static_cast<pb::ClientMessage*>(message);
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (writes_done_) return false;
  m->mutable_frame()->set_sequence(++sequence_);  // strictly increasing, in write order
  return impl_->stream->Write(*m);
}

bool Session::send_panorama(const std::vector<uint8_t>& rgb, int width, int height, double capture_time_s,
                            const WireQuaternion* head) {
  pb::ClientMessage message;
  pb::Frame* frame = message.mutable_frame();
  frame->set_capture_time_s(capture_time_s);
  set_raw_image(frame->mutable_camera(), rgb, width, height);
  frame->mutable_camera()->mutable_equirect();
  if (head) set_quaternion(frame->mutable_head(), *head);
  return write_frame(&message);
}

bool Session::send_view(const std::vector<uint8_t>& rgb, int width, int height, const WireQuaternion& orientation,
                        double hfov_deg, double capture_time_s, const WireQuaternion* head) {
  if (!(hfov_deg > 0 && hfov_deg < 180)) {
    throw std::invalid_argument("horizontal field of view must be in (0, 180) degrees, got " +
                                std::to_string(hfov_deg));
  }
  pb::ClientMessage message;
  pb::Frame* frame = message.mutable_frame();
  frame->set_capture_time_s(capture_time_s);
  set_raw_image(frame->mutable_camera(), rgb, width, height);
  pb::FieldOfView* view = frame->mutable_camera()->mutable_view();
  set_quaternion(view->mutable_orientation(), orientation);
  view->set_hfov_deg(static_cast<float>(hfov_deg));
  if (head) set_quaternion(frame->mutable_head(), *head);
  return write_frame(&message);
}

bool Session::set_caption(const std::string& text, double capture_time_s) {
  pb::ClientMessage message;
  message.mutable_frame()->set_capture_time_s(capture_time_s);
  message.mutable_frame()->mutable_caption()->set_text(text);
  return write_frame(&message);
}

bool Session::set_head(const WireQuaternion& head, double capture_time_s) {
  pb::ClientMessage message;
  message.mutable_frame()->set_capture_time_s(capture_time_s);
  set_quaternion(message.mutable_frame()->mutable_head(), head);
  return write_frame(&message);
}

void Session::end_of_video() {
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (writes_done_) return;
  pb::ClientMessage message;
  message.mutable_end();
  impl_->stream->Write(message);
  impl_->stream->WritesDone();
  writes_done_ = true;
}

std::string Session::status() const {
  if (!finished_.load()) return "";
  return status_;
}

std::vector<std::string> Session::take_events() {
  std::lock_guard<std::mutex> lock(events_mutex_);
  std::vector<std::string> out;
  out.swap(events_);
  return out;
}

void Session::read_loop() {
  pb::ServerMessage message;
  std::vector<float> pcm;
  while (impl_->stream->Read(&message)) {
    if (message.has_audio()) {
      const pb::AudioChunk& chunk = message.audio();
      pcm.clear();
      const auto format =
          chunk.sample_format() == pb::SAMPLE_FORMAT_INT16 ? WireSampleFormat::kInt16 : WireSampleFormat::kFloat32;
      const std::string& bytes = chunk.pcm();
      try {
        const int frames = decode_pcm(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                      static_cast<int>(chunk.channels()), format, pcm);
        ring_->write(static_cast<int64_t>(chunk.sample_offset()), pcm.data(), frames);
        chunks_.fetch_add(1);
      } catch (const std::invalid_argument& e) {
        std::lock_guard<std::mutex> lock(events_mutex_);
        events_.push_back(std::string("ERROR CLIENT: bad audio chunk: ") + e.what());
      }
    } else if (message.has_event() && message.event().level() != pb::Event::LEVEL_INFO) {
      std::lock_guard<std::mutex> lock(events_mutex_);
      events_.push_back(event_line(message.event()));
    }
  }
  const grpc::Status status = impl_->stream->Finish();
  status_ = status.ok() ? "" : describe(status);
  finished_.store(true);
}

}  // namespace swansphere::bridge
