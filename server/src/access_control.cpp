#include "access_control.h"

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace sagevid {
namespace {

std::string trimmed(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  return std::string(text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1));
}

std::vector<std::string> tokens_in_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("server.auth.token_file: cannot read " + file.string());
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    std::string token = trimmed(line);
    if (!token.empty() && token[0] != '#') tokens.push_back(std::move(token));
  }
  if (tokens.empty()) throw std::runtime_error("server.auth.token_file: " + file.string() + " holds no token");
  return tokens;
}

std::string token_in_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  std::string token = value ? trimmed(value) : "";
  if (token.empty())
    throw std::runtime_error("server.auth.token_env: environment variable " + name + " is unset or empty");
  return token;
}

// Health checks stay open so that load balancers and orchestrators can probe without a secret; they reveal
// only SERVING or NOT_SERVING. Everything else, reflection included, needs a token.
bool needs_no_token(std::string_view method_path) { return method_path.starts_with("/grpc.health.v1.Health/"); }

std::string_view view(const grpc::string_ref& text) { return {text.data(), text.size()}; }

class BearerTokenProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(std::shared_ptr<const BearerTokens> tokens) : tokens_(std::move(tokens)) {}
  bool IsBlocking() const override { return false; }  // a few hashes: no need for a thread hop

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext*, OutputMetadata* consumed,
                       OutputMetadata*) override {
    const auto path = metadata.find(":path");
    if (path != metadata.end() && needs_no_token(view(path->second))) return grpc::Status::OK;
    const auto authorization = metadata.find("authorization");
    if (authorization == metadata.end() || !tokens_->accepts(view(authorization->second)))
      return {grpc::StatusCode::UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' header is required"};
    consumed->emplace("authorization", std::string(view(authorization->second)));  // handlers never see it
    return grpc::Status::OK;
  }

 private:
  std::shared_ptr<const BearerTokens> tokens_;
};

}  // namespace

std::shared_ptr<const BearerTokens> BearerTokens::load(const TokenSources& sources) {
  std::vector<std::string> tokens;
  if (!sources.file.empty()) tokens = tokens_in_file(sources.file);
  if (!sources.env.empty()) tokens.push_back(token_in_env(sources.env));
  auto loaded = std::make_shared<BearerTokens>();
  for (const std::string& token : tokens) loaded->digests_.push_back(digest(token));
  return loaded;
}

bool BearerTokens::accepts(std::string_view authorization) const {
  constexpr std::string_view scheme = "Bearer ";
  if (!authorization.starts_with(scheme)) return false;
  const Digest presented = digest(trimmed(authorization.substr(scheme.size())));
  bool match = false;
  for (const Digest& accepted : digests_)  // every token compared, whatever matched before
    match |= CRYPTO_memcmp(presented.data(), accepted.data(), presented.size()) == 0;
  return match;
}

BearerTokens::Digest BearerTokens::digest(std::string_view text) {
  Digest out{};
  unsigned int length = 0;
  if (!EVP_Digest(text.data(), text.size(), out.data(), &length, EVP_sha256(), nullptr) || length != out.size())
    throw std::runtime_error("SHA-256 failed");
  return out;
}

std::string read_pem_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::ostringstream text;
  if (!(in && text << in.rdbuf())) throw std::runtime_error("cannot read " + file.string());
  return text.str();
}

std::shared_ptr<grpc::ServerCredentials> grpc_server_credentials(const TlsFiles& tls,
                                                                 std::shared_ptr<const BearerTokens> tokens) {
  if (!tls.enabled()) {
    if (tokens) throw std::logic_error("bearer tokens need TLS");  // the config refuses this combination
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions options(tls.client_ca_file.empty()
                                                ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!tls.client_ca_file.empty()) options.pem_root_certs = read_pem_file(tls.client_ca_file);
  options.pem_key_cert_pairs.push_back({read_pem_file(tls.key_file), read_pem_file(tls.cert_file)});
  auto credentials = grpc::SslServerCredentials(options);
  if (tokens) credentials->SetAuthMetadataProcessor(std::make_shared<BearerTokenProcessor>(std::move(tokens)));
  return credentials;
}

}  // namespace sagevid
