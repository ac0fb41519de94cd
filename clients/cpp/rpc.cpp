#include "rpc.h"

#include "command_line.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace sagevid::client {

namespace {

std::string read_flag_file(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  if (!(in && text << in.rdbuf())) throw UsageError(flag + ": cannot read " + path);
  return text.str();
}

std::string trimmed(const std::string& text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  return begin == std::string::npos ? "" : text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

std::string read_token(const Flags& flags) {
  if (!flags.has("--token-file")) {
    const char* from_env = std::getenv("SAGEVID_TOKEN");
    return from_env ? trimmed(from_env) : "";
  }
  const std::string path = flags.text("--token-file", "");
  const std::string token = trimmed(read_flag_file("--token-file", path));
  if (token.empty() || token.find_first_of("\r\n") != std::string::npos)
    throw UsageError("--token-file: " + path + " must hold exactly one token");
  return token;
}

std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const Connection& connection) {
  if (!connection.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  if (!connection.tls_ca_file.empty()) options.pem_root_certs = read_flag_file("--tls-ca", connection.tls_ca_file);
  if (!connection.tls_cert_file.empty()) {
    options.pem_cert_chain = read_flag_file("--tls-cert", connection.tls_cert_file);
    options.pem_private_key = read_flag_file("--tls-key", connection.tls_key_file);
  }
  auto credentials = grpc::SslCredentials(options);
  if (connection.token.empty()) return credentials;
  return grpc::CompositeChannelCredentials(credentials, grpc::AccessTokenCredentials(connection.token));
}

}  // namespace

void read_security_flags(const Flags& flags, Connection& connection) {
  connection.tls_ca_file = flags.text("--tls-ca", "");
  connection.tls_cert_file = flags.text("--tls-cert", "");
  connection.tls_key_file = flags.text("--tls-key", "");
  if (connection.tls_cert_file.empty() != connection.tls_key_file.empty())
    throw UsageError("--tls-cert and --tls-key go together");
  connection.tls = flags.has("--tls") || !connection.tls_ca_file.empty() || !connection.tls_cert_file.empty();
  connection.token = read_token(flags);
  if (!connection.token.empty() && !connection.tls)
    throw UsageError(
        "a token (--token-file or $SAGEVID_TOKEN) needs TLS (--tls or --tls-ca): it must not travel "
        "in clear text");
}

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
  return grpc::CreateChannel(connection.server, channel_credentials(connection));
}

void set_deadline(grpc::ClientContext& context, const Connection& connection) {
  if (connection.deadline_seconds <= 0) return;
  const auto span = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::duration<double>(connection.deadline_seconds));
  context.set_deadline(std::chrono::system_clock::now() + span);
}

}  // namespace sagevid::client
