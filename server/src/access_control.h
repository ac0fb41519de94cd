#pragma once
// Who may talk to the server: TLS (server certificate, optionally verified client certificates) and bearer
// tokens. The same settings guard the gRPC API and the HTTP /metrics endpoint.
#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace grpc {
class ServerCredentials;
}

namespace sagevid {

// PEM files; all empty: plaintext. A client CA means client certificates are required and verified.
struct TlsFiles {
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  std::filesystem::path client_ca_file;
  bool enabled() const { return !cert_file.empty(); }
};

// Where the accepted tokens come from: a file (one per line; blank lines and lines starting with '#' are
// skipped) and/or an environment variable holding one token. Neither: no token check.
struct TokenSources {
  std::filesystem::path file;
  std::string env;
  bool enabled() const { return !file.empty() || !env.empty(); }
};

// The accepted bearer tokens, kept only as SHA-256 digests so that comparing them takes the same time
// whatever the presented token is, and the secrets themselves are not kept in memory.
class BearerTokens {
 public:
  // Throws std::runtime_error naming the file or variable when it cannot be read or holds no token.
  static std::shared_ptr<const BearerTokens> load(const TokenSources& sources);
  // `authorization` is the whole header value, "Bearer <token>".
  bool accepts(std::string_view authorization) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  static Digest digest(std::string_view text);
  std::vector<Digest> digests_;
};

std::string read_pem_file(const std::filesystem::path& file);  // throws std::runtime_error naming the file

// Plaintext, or TLS from `tls`; with `tokens`, every call but the health checks needs a valid
// "authorization: Bearer" header (else UNAUTHENTICATED).
std::shared_ptr<grpc::ServerCredentials> grpc_server_credentials(const TlsFiles& tls,
                                                                 std::shared_ptr<const BearerTokens> tokens);

}  // namespace sagevid
