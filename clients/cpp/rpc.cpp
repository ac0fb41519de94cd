#include "rpc.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>

namespace sagevid::client {

std::string status_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "STATUS_" + std::to_string(static_cast<int>(code));
  }
}

RpcError::RpcError(const std::string& call, const grpc::Status& status)
    : std::runtime_error(call + " failed: " + status_code_name(status.error_code()) + ": " + status.error_message()),
      code(status.error_code()) {}

void check_status(const std::string& call, const grpc::Status& status) {
  if (!status.ok()) throw RpcError(call, status);
}

std::shared_ptr<grpc::Channel> open_channel(const Connection& connection) {
  return grpc::CreateChannel(connection.server, grpc::InsecureChannelCredentials());
}

void set_deadline(grpc::ClientContext& context, const Connection& connection) {
  if (connection.deadline_seconds <= 0) return;
  const auto span = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(connection.deadline_seconds));
  context.set_deadline(std::chrono::system_clock::now() + span);
}

}  // namespace sagevid::client
