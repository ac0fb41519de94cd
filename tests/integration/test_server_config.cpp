// The server's config files as shipped, overrides on top, and the errors a broken config gives.
#include "catch.h"

#include "build_info.h"
#include "sagevid/models/config_reader.h"
#include "server_config.h"

#include <filesystem>

using sagevid::ConfigError;
using sagevid::load_server_config;

namespace {
const std::filesystem::path kConfigs = std::filesystem::path(SAGEVID_SOURCE_DIR) / "configs";

sagevid::ServerConfig parse(const char* text) {
  return sagevid::parse_server_config(nlohmann::json::parse(text), "/base");
}
}  // namespace

TEST_CASE("every shipped config is valid", "[integration][config]") {
  for (const auto& entry : std::filesystem::directory_iterator(kConfigs)) {
    CAPTURE(entry.path().string());
    const auto config = load_server_config(entry.path(), {});
    CHECK_FALSE(config.models.empty());
    // The printed form parses back to the same config.
    CHECK(sagevid::to_json(sagevid::parse_server_config(sagevid::to_json(config), "/")) == sagevid::to_json(config));
  }
}

TEST_CASE("the tiny config resolves its model folder next to the config", "[integration][config]") {
  const auto config = load_server_config(kConfigs / "tiny.json", {});
  REQUIRE(config.models.size() == 1);
  CHECK(config.models[0].path == (std::filesystem::absolute(kConfigs) / "../assets/tiny-cogvideox").lexically_normal());
  CHECK(config.attention.backend == sagevid::AttentionBackend::math);
}

TEST_CASE("command-line overrides win and are validated like the file", "[integration][config]") {
  const auto config = load_server_config(kConfigs / "cogvideox-2b.json",
                                         {"attention.backend=cudnn", "server.queue_size=3",
                                          "models.0.path=/data/CogVideoX-2b", "log_level=warn"});
  CHECK(config.attention.backend == sagevid::AttentionBackend::cudnn);
  CHECK(config.queue_size == 3);
  CHECK(config.models[0].path == "/data/CogVideoX-2b");
  CHECK(config.log_level == "warn");
  REQUIRE_THROWS_WITH(load_server_config(kConfigs / "tiny.json", {"server.queue_size=\"many\""}),
                      ContainsSubstring("tiny.json: server.queue_size: expected an integer, got string"));
  REQUIRE_THROWS_WITH(load_server_config(kConfigs / "tiny.json", {"server.queue=3"}),
                      ContainsSubstring("server.queue: unknown key"));
}

TEST_CASE("invalid server configs name the key", "[integration][config]") {
  REQUIRE_THROWS_WITH(parse(R"({"server": {"queue_size": 0}})"), ContainsSubstring("server.queue_size: must be in"));
  REQUIRE_THROWS_WITH(parse(R"({"server": {"drain_seconds": -1}})"), ContainsSubstring("server.drain_seconds"));
  REQUIRE_THROWS_WITH(parse(R"({"log_level": "loud"})"), ContainsSubstring("log_level: log level 'loud'"));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "device": "gpu"}]})"),
                      ContainsSubstring("models[0].device: 'gpu': expected cpu, cuda or cuda:N"));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "dtype": "fp8"}]})"),
                      ContainsSubstring("models[0].dtype"));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"path": "p"}]})"), ContainsSubstring("models[0].name: missing"));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p"}, {"name": "a", "path": "q"}]})"),
                      ContainsSubstring("duplicate model name 'a'"));
  REQUIRE_THROWS_WITH(parse(R"({"attention": {"backend": "sage9"}})"), ContainsSubstring("attention.backend"));
  REQUIRE_THROWS_WITH(parse(R"({"modles": []})"), ContainsSubstring("modles: unknown key"));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "max_latent_token_steps": 0}]})"),
                      ContainsSubstring("models[0].max_latent_token_steps: must be positive"));
  REQUIRE_THROWS_WITH(parse(R"({"server": {"queue_size": 1e20}})"),
                      ContainsSubstring("server.queue_size: 1e+20 is too large for an integer"));
  CHECK(parse(R"({"models": [{"name": "a", "path": "p", "max_latent_token_steps": 5000}]})").models[0].max_latent_token_steps == 5000);
  CHECK_FALSE(parse(R"({"models": [{"name": "a", "path": "p"}]})").models[0].max_latent_token_steps.has_value());
  CHECK(parse(R"({"models": [{"name": "a", "path": "rel/dir", "device": "cuda:1"}]})").models[0].path == "/base/rel/dir");
}

TEST_CASE("build info names the libraries the binary runs on", "[integration]") {
  const nlohmann::json info = sagevid::build_info();
  for (const char* key : {"sagevid", "libtorch", "grpc", "protobuf", "libavcodec", "ffmpeg", "cuda_devices"})
    CHECK(info.contains(key));
  CHECK(info["libtorch"].get<std::string>().starts_with("2.11"));
}
