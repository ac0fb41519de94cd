#pragma once
// What every subcommand shares about talking to the server: the channel, per-call deadlines, and turning a
// failed call into an error that names the status code.
#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace sagevid::client {

// A call that ended with a non-OK status; what() reads "RPC_NAME failed: STATUS_CODE: message".
struct RpcError : std::runtime_error {
  RpcError(const std::string& call, const grpc::Status& status);
  grpc::StatusCode code;
};

std::string status_code_name(grpc::StatusCode code);
void check_status(const std::string& call, const grpc::Status& status);  // throws RpcError unless ok

struct Connection {
  std::string server = "127.0.0.1:50051";
  double deadline_seconds = 0;  // 0: none
  bool tls = false;             // with the system's CAs unless tls_ca_file names one
  std::string tls_ca_file;
  std::string tls_cert_file;    // with tls_key_file: a client certificate, for servers that require one
  std::string tls_key_file;
  std::string token;            // sent as "authorization: Bearer <token>" on every call; needs tls
};

// The global flags --tls, --tls-ca, --tls-cert, --tls-key and --token-file (else $SAGEVID_TOKEN) into
// `connection`; throws UsageError naming the flag when they do not fit together or a file cannot be read.
class Flags;
void read_security_flags(const Flags& flags, Connection& connection);

std::shared_ptr<grpc::Channel> open_channel(const Connection& connection);
void set_deadline(grpc::ClientContext& context, const Connection& connection);

}  // namespace sagevid::client
