#include "info_commands.h"

#include "command_line.h"

#include "grpc/health/v1/health.grpc.pb.h"
#include "sagevid/v1/sagevid.grpc.pb.h"

#include <cstdio>

namespace sagevid::client {

namespace {

// The short calls get a 10 s deadline unless --deadline says otherwise, so a dead server does not hang them.
Connection with_default_deadline(Connection connection) {
  if (connection.deadline_seconds <= 0) connection.deadline_seconds = 10;
  return connection;
}

std::string join(const google::protobuf::RepeatedPtrField<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

std::string gib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return text;
}

}  // namespace

int models_command(const Connection& connection, const std::vector<std::string>& args) {
  const Flags flags(args, {});
  const auto stub = sagevid::v1::VideoGeneration::NewStub(open_channel(connection));
  grpc::ClientContext context;
  set_deadline(context, with_default_deadline(connection));
  sagevid::v1::ListModelsResponse response;
  check_status("ListModels", stub->ListModels(&context, {}, &response));
  for (const auto& m : response.models()) {
    std::printf("%s\n  device %s, dtype %s\n", m.name().c_str(), m.device().c_str(), m.dtype().c_str());
    if (!m.parallel().empty()) std::printf("  parallel: %s\n", m.parallel().c_str());
    std::printf("  defaults: %d frames %dx%d, %d steps, guidance %.2f, %d fps\n", m.default_frames(), m.default_width(),
                m.default_height(), m.default_steps(), m.default_guidance_scale(), m.default_fps());
    std::printf("  height/width multiples of %d, frames = %d*k + 1\n", m.spatial_factor(), m.temporal_factor());
    if (m.takes_image()) std::printf("  image-to-video: takes an image (--image FILE, PNG or JPEG)\n");
  }
  if (response.models_size() == 0) std::printf("(no models)\n");
  return 0;
}

int status_command(const Connection& connection, const std::vector<std::string>& args) {
  const Flags flags(args, {});
  const auto stub = sagevid::v1::VideoGeneration::NewStub(open_channel(connection));
  grpc::ClientContext context;
  set_deadline(context, with_default_deadline(connection));
  sagevid::v1::ServerStatus status;
  check_status("GetStatus", stub->GetStatus(&context, {}, &status));
  std::printf("queue        %d / %d\n", status.queue_depth(), status.queue_capacity());
  std::printf("running      %s\n", status.running_job().empty() ? "(idle)" : status.running_job().c_str());
  std::printf("device       %s\n", status.device().c_str());
  std::printf("gpu memory   %s used of %s\n", gib(status.gpu_memory_used_bytes()).c_str(),
              gib(status.gpu_memory_total_bytes()).c_str());
  std::printf("attention    %s (allowed per request: %s)\n", status.attention_backend().c_str(),
              status.allowed_backends().empty() ? "none" : join(status.allowed_backends()).c_str());
  return 0;
}

int health_command(const Connection& connection, const std::vector<std::string>& args) {
  const Flags flags(args, {{"--service"}, {}, {}});
  const auto stub = grpc::health::v1::Health::NewStub(open_channel(connection));
  grpc::ClientContext context;
  set_deadline(context, with_default_deadline(connection));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(flags.text("--service", ""));
  grpc::health::v1::HealthCheckResponse response;
  check_status("Health.Check", stub->Check(&context, request, &response));
  std::printf("%s\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace sagevid::client
