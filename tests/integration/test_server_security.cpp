// Who may talk to the server: TLS with the configured certificate (and, with a client CA, only clients with a
// certificate it signed), bearer tokens on every call but the health checks, reflection only when configured.
#include "catch.h"
#include "test_pki.h"
#include "test_server_support.h"

#include <grpcpp/security/credentials.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

using namespace sagevid::test;

namespace {

struct ClientSide {
  std::string ca = "ca.pem";    // the CA the client trusts
  bool client_cert = false;     // present client.pem
  std::string token;            // empty: none
};

std::shared_ptr<grpc::Channel> tls_channel(int port, const TestPki& pki, const ClientSide& client) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pki.text(client.ca);
  if (client.client_cert) {
    options.pem_private_key = pki.text("client.key");
    options.pem_cert_chain = pki.text("client.pem");
  }
  auto credentials = grpc::SslCredentials(options);
  if (!client.token.empty())
    credentials = grpc::CompositeChannelCredentials(credentials, grpc::AccessTokenCredentials(client.token));
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), credentials);
}

grpc::Status get_status(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ServerStatus status;
  return v1::VideoGeneration::NewStub(channel)->GetStatus(&context, {}, &status);
}

// grpc.reflection.v1alpha list_services (field 7, empty string): a unary call works on the bidirectional
// stream, one request and one reply, in which the service names appear as strings.
RawReply list_services(const std::shared_ptr<grpc::Channel>& channel) {
  return raw_unary_call(channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                        std::string("\x3a\x00", 2));
}

}  // namespace

TEST_CASE("over TLS a client trusting the CA is served, plaintext and untrusting clients are not",
          "[integration][server][security]") {
  const TestPki pki;
  TestServer server(tiny_config(pki.server_overrides(false, false)), false);
  const int port = server.server().port();
  CHECK(get_status(tls_channel(port, pki, {})).ok());
  CHECK(get_status(tls_channel(port, pki, {.client_cert = true})).ok());  // offered, not needed
  CHECK(get_status(server.channel()).error_code() == grpc::StatusCode::UNAVAILABLE);  // plaintext
  CHECK(get_status(tls_channel(port, pki, {.ca = "other-ca.pem"})).error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(health_status(server.channel()) == -1);
  CHECK(health_status(tls_channel(port, pki, {})) == kNotServing);
}

TEST_CASE("with a client CA only clients with a certificate it signed are served", "[integration][server][security]") {
  const TestPki pki;
  TestServer server(tiny_config(pki.server_overrides(true, false)), false);
  const int port = server.server().port();
  CHECK(get_status(tls_channel(port, pki, {.client_cert = true})).ok());
  CHECK(get_status(tls_channel(port, pki, {})).error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(health_status(tls_channel(port, pki, {})) == -1);
}

TEST_CASE("bearer tokens: missing or wrong is UNAUTHENTICATED, a listed one is served, health stays open",
          "[integration][server][security]") {
  const TestPki pki;
  TestServer server(tiny_config([&] {
                      auto overrides = pki.server_overrides(false, true);
                      overrides.push_back("server.reflection=true");
                      return overrides;
                    }()),
                    false);
  const int port = server.server().port();
  for (const std::string& token : pki.tokens) {
    CAPTURE(token);
    CHECK(get_status(tls_channel(port, pki, {.token = token})).ok());
    const RawReply reflection = list_services(tls_channel(port, pki, {.token = token}));
    CHECK(reflection.status.ok());
    CHECK(reflection.bytes.find("sagevid.v1.VideoGeneration") != std::string::npos);
  }
  for (const std::string& wrong : {std::string(), pki.tokens[0] + "x", pki.tokens[1].substr(1), std::string("tok-")}) {
    CAPTURE(wrong);
    const grpc::Status status = get_status(tls_channel(port, pki, {.token = wrong}));
    CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
    CHECK(status.error_message().find("Bearer") != std::string::npos);
    CHECK(list_services(tls_channel(port, pki, {.token = wrong})).status.error_code() ==
          grpc::StatusCode::UNAUTHENTICATED);
  }
  CHECK(health_status(tls_channel(port, pki, {})) == kNotServing);  // open: probes carry no secret
}

TEST_CASE("server reflection is off unless configured, and on it lists the generation and health services",
          "[integration][server][security]") {
  TestServer plain(tiny_config(), false);
  CHECK(list_services(plain.channel()).status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  TestServer reflecting(tiny_config({"server.reflection=true"}), false);
  const RawReply reply = list_services(reflecting.channel());
  REQUIRE(reply.status.ok());
  CHECK_THAT(reply.bytes, ContainsSubstring("sagevid.v1.VideoGeneration"));
  CHECK_THAT(reply.bytes, ContainsSubstring("grpc.health.v1.Health"));
}

TEST_CASE("tokens come from a file and an environment variable, unreadable or empty sources are errors",
          "[integration][server][security]") {
  const TestPki pki;
  const std::string variable = "SAGEVID_TEST_TOKEN_" + std::to_string(getpid());
  const std::string from_env = pki.tokens[0] + "-env";
  REQUIRE(setenv(variable.c_str(), (" " + from_env + "\n").c_str(), 1) == 0);
  const auto tokens = sagevid::BearerTokens::load({pki.token_file, variable});
  for (const std::string& token : {pki.tokens[0], pki.tokens[1], from_env}) CHECK(tokens->accepts("Bearer " + token));
  CHECK_FALSE(tokens->accepts("Bearer # accepted tokens"));  // the file's comment line
  CHECK_FALSE(tokens->accepts("Bearer "));
  CHECK_FALSE(tokens->accepts("bearer " + from_env));
  unsetenv(variable.c_str());
  REQUIRE_THROWS_WITH(
      sagevid::BearerTokens::load({{}, variable}),
      ContainsSubstring("server.auth.token_env: environment variable " + variable + " is unset or empty"));
  std::ofstream(pki.file("no-tokens")) << "# none yet\n\n";
  REQUIRE_THROWS_WITH(sagevid::BearerTokens::load({pki.file("no-tokens"), ""}),
                      ContainsSubstring(pki.file("no-tokens").string() + " holds no token"));
}
