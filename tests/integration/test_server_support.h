#pragma once
// A real sagevid server for the tests: 127.0.0.1 on a free port, the tiny model on the CPU in float32 with
// the math backend (configs/tiny.json), and small helpers to call it.
#include "catch.h"
#include "integration/http_get.h"

#include "serve_command.h"
#include "server_config.h"

#include "sagevid/v1/sagevid.grpc.pb.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace sagevid::test {

namespace v1 = sagevid::v1;

inline const std::filesystem::path kTinyConfig = std::filesystem::path(SAGEVID_SOURCE_DIR) / "configs" / "tiny.json";

// The tiny config on an ephemeral port, quiet, with the given overrides on top. Its work cap lets
// slow_request() through (1000 steps at the largest size are 50x the default cap).
inline ServerConfig tiny_config(std::vector<std::string> overrides = {}) {
  overrides.insert(overrides.begin(),
                   {"server.address=\"127.0.0.1:0\"", "log_level=warn", "models.0.max_latent_token_steps=720000"});
  return load_server_config(kTinyConfig, overrides);
}

class TestServer {
 public:
  explicit TestServer(const ServerConfig& config, bool load = true) : server_(config) {
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_.port()), grpc::InsecureChannelCredentials());
    if (load) server_.load_models();
  }
  SagevidServer& server() { return server_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  std::unique_ptr<v1::VideoGeneration::Stub> stub() const { return v1::VideoGeneration::NewStub(channel_); }

 private:
  SagevidServer server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// The generator the request helpers draw from, seeded from the test's seed (CAPTUREd by the test).
inline std::mt19937_64 drawer(std::uint64_t seed) { return std::mt19937_64(seed); }

// A small valid request for the tiny model: 9 frames of 64 x 96, a few steps, a random prompt.
inline v1::GenerateRequest small_request(std::mt19937_64& draw, int steps = 2) {
  static const char* const words[] = {"a", "red", "fox", "runs", "over", "snow", "at", "dawn", "slowly", "city"};
  std::string prompt;
  for (int i = 0, n = std::uniform_int_distribution<int>(1, 8)(draw); i < n; ++i)
    prompt += std::string(i ? " " : "") + words[std::uniform_int_distribution<int>(0, 9)(draw)];
  v1::GenerateRequest request;
  request.set_model("tiny");
  request.set_prompt(prompt);
  request.set_frames(9);
  request.set_height(64);
  request.set_width(96);
  request.set_steps(steps);
  request.set_guidance_scale(float(std::uniform_real_distribution<double>(1.5, 8.0)(draw)));
  return request;
}

// A request that keeps the worker busy for seconds: the largest size and frame count, the most steps.
inline v1::GenerateRequest slow_request(std::mt19937_64& draw) {
  v1::GenerateRequest request = small_request(draw);
  request.set_frames(17);
  request.set_height(192);
  request.set_width(192);
  request.set_steps(1000);
  return request;
}

struct GenerateResult {
  std::vector<v1::GenerateEvent> events;
  grpc::Status status;

  std::string video() const {
    std::string bytes;
    for (const auto& event : events)
      if (event.has_chunk()) bytes += event.chunk().data();
    return bytes;
  }
  const v1::GenerateEvent* first(v1::GenerateEvent::EventCase kind) const {
    for (const auto& event : events)
      if (event.event_case() == kind) return &event;
    return nullptr;
  }
};

// Runs Generate to the end. on_event sees each event as it arrives (with the call's context, to cancel it);
// deadline, when set, is the call's deadline.
inline GenerateResult generate(v1::VideoGeneration::Stub& stub, const v1::GenerateRequest& request,
                               const std::function<void(const v1::GenerateEvent&, grpc::ClientContext&)>& on_event = {},
                               std::optional<std::chrono::system_clock::time_point> deadline = {}) {
  grpc::ClientContext context;
  if (deadline) context.set_deadline(*deadline);
  GenerateResult result;
  const auto reader = stub.Generate(&context, request);
  v1::GenerateEvent event;
  while (reader->Read(&event)) {
    result.events.push_back(event);
    if (on_event) on_event(event, context);
  }
  result.status = reader->Finish();
  return result;
}

// One unary call by method path with serialized request bytes, through the generic stub, so the tests need no
// generated code for the services gRPC brings (health, reflection). The call's deadline is 5 s.
struct RawReply {
  grpc::Status status;
  std::string bytes;
};

inline RawReply raw_unary_call(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                               const std::string& request_bytes) {
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice request_slice(request_bytes);
  const grpc::ByteBuffer request(&request_slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                    [&done](grpc::Status status) { done.set_value(std::move(status)); });
  RawReply reply{done.get_future().get(), {}};
  std::vector<grpc::Slice> slices;
  if (reply.status.ok() && response.Dump(&slices).ok())
    for (const auto& slice : slices) reply.bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return reply;
}

// The standard grpc.health.v1.Health/Check for the whole server ("" service). Returns the status enum:
// 1 SERVING, 2 NOT_SERVING; -1 on error.
inline int health_status(const std::shared_ptr<grpc::Channel>& channel) {
  const RawReply reply = raw_unary_call(channel, "/grpc.health.v1.Health/Check", "");  // service "": no bytes
  if (!reply.status.ok()) return -1;
  const std::string& bytes = reply.bytes;
  if (bytes.empty()) return 0;                         // UNKNOWN, the proto3 default
  if (bytes.size() != 2 || bytes[0] != 0x08) return -1;  // field 1, varint
  return bytes[1];
}

constexpr int kServing = 1, kNotServing = 2;

// sagevid_requests_total{outcome="..."} from the server's /metrics; 0 before the first such request, -1
// when the endpoint does not answer.
inline int requests_with_outcome(int metrics_port, const std::string& outcome) {
  const auto response = http_get(metrics_port, "/metrics");
  if (!response || response->status != 200) return -1;
  const std::string series = "sagevid_requests_total{outcome=\"" + outcome + "\"} ";
  const std::size_t at = response->body.find(series);
  return at == std::string::npos ? 0 : std::stoi(response->body.substr(at + series.size()));
}

}  // namespace sagevid::test
