// The server's config files as shipped, overrides on top, and the errors a broken config gives.
#include "catch.h"

#include "build_info.h"
#include "sagevid/models/config_reader.h"
#include "server_config.h"
#include "test_pki.h"

#include <filesystem>
#include <random>

using sagevid::ConfigError;
using sagevid::load_server_config;

namespace {
const std::filesystem::path kConfigs = std::filesystem::path(SAGEVID_SOURCE_DIR) / "configs";

sagevid::ServerConfig parse(const std::string& text, const std::filesystem::path& base_dir = "/base") {
  return sagevid::parse_server_config(nlohmann::json::parse(text), base_dir);
}

// A valid config's "server" object around `server_keys`, with one model.
std::string with_server(const std::string& server_keys) {
  return R"({"server": {)" + server_keys + R"(}, "models": [{"name": "a", "path": "p"}]})";
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
  const auto config = load_server_config(
      kConfigs / "cogvideox-2b.json",
      {"attention.backend=cudnn", "server.queue_size=3", "models.0.path=/data/CogVideoX-2b", "log_level=warn"});
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
  REQUIRE_THROWS_WITH(parse(R"({"server": {"max_streams": 0}})"), ContainsSubstring("server.max_streams: must be in"));
  REQUIRE_THROWS_WITH(parse(R"({"server": {"write_timeout_seconds": 0}})"),
                      ContainsSubstring("server.write_timeout_seconds: must be positive"));
  REQUIRE_THROWS_WITH(parse(R"({"server": {"max_stream_buffer_bytes": 65536}})"),
                      ContainsSubstring("server.max_stream_buffer_bytes: must be at least 1048576"));
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
  CHECK(parse(R"({"models": [{"name": "a", "path": "p", "max_latent_token_steps": 5000}]})")
            .models[0]
            .max_latent_token_steps == 5000);
  CHECK_FALSE(parse(R"({"models": [{"name": "a", "path": "p"}]})").models[0].max_latent_token_steps.has_value());
  CHECK(parse(R"({"models": [{"name": "a", "path": "rel/dir", "device": "cuda:1"}]})").models[0].path ==
        "/base/rel/dir");
}

TEST_CASE("the shipped GPU config serves only this host, plaintext callers cannot pick backends",
          "[integration][config]") {
  const auto config = load_server_config(kConfigs / "cogvideox-2b.json", {});
  CHECK(config.address.starts_with("127.0.0.1:"));
  CHECK(config.metrics_address.starts_with("127.0.0.1:"));
  CHECK_FALSE(config.allow_request_backend);
  CHECK_FALSE(config.reflection);
}

TEST_CASE("model entries take the memory keys, checked like the rest", "[integration][config]") {
  const auto config = parse(R"({"models": [{"name": "a", "path": "p", "text_encoder": "offload",
                                             "vae": {"tiling": true, "tile_height": 320}}]})");
  CHECK(config.models[0].memory.text_encoder == sagevid::TextEncoderPlacement::offload);
  CHECK(config.models[0].memory.vae.tiling);
  CHECK(config.models[0].memory.vae.tile_sample_min_height == 320);
  CHECK(sagevid::to_json(config)["models"][0]["vae"]["tile_height"] == 320);
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "vae": {"frame_batch_size": 0}}]})"),
                      ContainsSubstring("models[0].vae.frame_batch_size: must be at least 1"));
  CHECK(load_server_config(kConfigs / "cogvideox-2b.json", {"models.0.text_encoder=offload"})
            .models[0]
            .memory.text_encoder == sagevid::TextEncoderPlacement::offload);
}

TEST_CASE("model entries take the FP8 linear keys, fast accumulation only with FP8 linears", "[integration][config]") {
  const auto config = parse(R"({"models": [{"name": "a", "path": "p", "linear": "fp8", "fp8_fast_accum": true}]})");
  CHECK(config.models[0].linear == sagevid::LinearPrecision::fp8);
  CHECK(config.models[0].fp8_fast_accum);
  CHECK(sagevid::to_json(config)["models"][0]["fp8_fast_accum"] == true);
  CHECK(sagevid::to_json(sagevid::parse_server_config(sagevid::to_json(config), "/")) == sagevid::to_json(config));
  const sagevid::PipelineOptions options = sagevid::pipeline_options(config.models[0], config);
  CHECK(options.linear == sagevid::LinearPrecision::fp8);
  CHECK(options.fp8_fast_accum);
  const auto plain = parse(R"({"models": [{"name": "a", "path": "p", "linear": "fp8"}]})");
  CHECK_FALSE(plain.models[0].fp8_fast_accum);
  CHECK_FALSE(sagevid::pipeline_options(plain.models[0], plain).fp8_fast_accum);
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "fp8_fast_accum": true}]})"),
                      ContainsSubstring("models[0].fp8_fast_accum: needs \"linear\": \"fp8\""));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "linear": "fp8", "fp8_fast_accum": 1}]})"),
                      ContainsSubstring("models[0].fp8_fast_accum: expected true or false"));
  REQUIRE_THROWS_WITH(parse(R"({"models": [{"name": "a", "path": "p", "linear": "fp16"}]})"),
                      ContainsSubstring("models[0].linear: must be \"native\" or \"fp8\""));
}

TEST_CASE("a model entry may name a device group and its parallel plan, checked before loading",
          "[integration][config]") {
  const auto config =
      parse(R"({"models": [{"name": "a", "path": "p", "devices": ["cuda:0", "cuda:1", "cuda:2", "cuda:3"],
                                             "parallel": {"cfg": 2, "ulysses": 2}}]})");
  const sagevid::ModelEntry& model = config.models[0];
  CHECK(model.device == "cuda:0");
  CHECK(model.parallel.cfg == 2);
  CHECK(model.parallel.ulysses == 2);
  CHECK(sagevid::placement(model) == "cuda:0+cuda:1+cuda:2+cuda:3");
  const sagevid::PipelineOptions options = sagevid::pipeline_options(model, config);
  CHECK(options.device == c10::Device("cuda:0"));
  CHECK(options.devices.size() == 4);
  CHECK(options.devices[3] == c10::Device("cuda:3"));
  CHECK(options.parallel.world() == 4);
  CHECK(sagevid::to_json(sagevid::parse_server_config(sagevid::to_json(config), "/")) == sagevid::to_json(config));
  CHECK(sagevid::placement(parse(R"({"models": [{"name": "a", "path": "p", "device": "cuda:1"}]})").models[0]) ==
        "cuda:1");

  // Models that share a device, directly or through another model, share a queue: one generation a device.
  const auto shared = parse(R"({"models": [{"name": "a", "path": "p", "device": "cuda:0"},
                                           {"name": "b", "path": "p", "devices": ["cuda:1", "cuda:0"]},
                                           {"name": "c", "path": "p", "device": "cuda:2"},
                                           {"name": "d", "path": "p", "device": "cuda"},
                                           {"name": "e", "path": "p", "devices": ["cuda:4", "cuda:3"]},
                                           {"name": "f", "path": "p", "devices": ["cuda:3", "cuda:5"]},
                                           {"name": "g", "path": "p", "device": "cpu"}]})");
  std::vector<std::string> queues;
  for (const sagevid::ModelEntry& entry : shared.models) queues.push_back(sagevid::queue_placement(shared, entry));
  CHECK(queues == std::vector<std::string>{"cuda:0+cuda:1", "cuda:0+cuda:1", "cuda:2", "cuda:0+cuda:1",
                                           "cuda:3+cuda:4+cuda:5", "cuda:3+cuda:4+cuda:5", "cpu"});

  // Without "parallel": cfg 2 where the count is even, Ulysses over the rest.
  const auto plan_of = [](const std::string& devices) {
    return parse(R"({"models": [{"name": "a", "path": "p", "devices": )" + devices + "}]}").models[0].parallel;
  };
  CHECK(plan_of(R"(["cuda:0", "cuda:1"])").cfg == 2);
  CHECK(plan_of(R"(["cuda:0", "cuda:1"])").ulysses == 1);
  CHECK(plan_of(R"(["cuda:0", "cuda:1", "cuda:2"])").cfg == 1);
  CHECK(plan_of(R"(["cuda:0", "cuda:1", "cuda:2"])").ulysses == 3);
  CHECK(plan_of(R"(["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4", "cuda:5", "cuda:6", "cuda:7"])").ulysses == 4);

  const auto refused = [](const std::string& model_keys) {
    return parse(R"({"models": [{"name": "a", "path": "p", )" + model_keys + "}]}");
  };
  REQUIRE_THROWS_WITH(refused(R"("device": "cuda:0", "devices": ["cuda:0"])"),
                      ContainsSubstring("models[0].devices: give \"device\" or \"devices\", not both"));
  REQUIRE_THROWS_WITH(refused(R"("parallel": {"cfg": 2})"), ContainsSubstring("models[0].parallel: needs \"devices\""));
  REQUIRE_THROWS_WITH(refused(R"("devices": [])"), ContainsSubstring("models[0].devices: must list at least one"));
  REQUIRE_THROWS_WITH(refused(R"("devices": "cuda:0")"), ContainsSubstring("models[0].devices: expected an array"));
  REQUIRE_THROWS_WITH(refused(R"("devices": ["cuda:0", "gpu1"])"), ContainsSubstring("'gpu1': expected cpu, cuda"));
  REQUIRE_THROWS_WITH(refused(R"("devices": ["cuda:0", "cuda:1"], "parallel": {"cfg": 1, "ulysses": 4})"),
                      ContainsSubstring("models[0].parallel: parallel plan: cfg 1 x ulysses 4 needs 4 devices, got 2"));
  REQUIRE_THROWS_WITH(refused(R"("devices": ["cuda:0", "cuda:0"])"), ContainsSubstring("cuda:0 is listed twice"));
  REQUIRE_THROWS_WITH(refused(R"("devices": ["cuda:0", "cuda:1"], "parallel": {"pipeline": 2})"),
                      ContainsSubstring("models[0].parallel.pipeline"));
}

TEST_CASE("the RTX 4090 configs run the sm_89 sage2 path with a tiled decode, CogVideoX-5B with T5 offloaded",
          "[integration][config]") {
  namespace sage2 = sagevid::kernels::sage2;
  for (const char* name : {"cogvideox-2b-rtx4090.json", "cogvideox-5b-rtx4090.json"}) {
    CAPTURE(name);
    const auto config = load_server_config(kConfigs / name, {});
    // Set explicitly (a 4090 resolves "auto" to the same), so the H200 runs the 4090's path under a memory cap.
    CHECK(config.attention.backend == sagevid::AttentionBackend::sage2);
    CHECK(config.attention.sage2.kernel == sage2::KernelFamily::mma_sync);
    CHECK(config.attention.sage2.qk == sage2::QkType::int4);
    CHECK(config.attention.sage2.pv == sage2::PvType::fp8);
    const sage2::Options on_4090 = sage2::resolve(config.attention.sage2, 89), defaults = sage2::resolve({}, 89);
    CHECK(on_4090.kernel == defaults.kernel);
    CHECK(on_4090.qk == defaults.qk);
    CHECK(on_4090.pv == defaults.pv);
    CHECK(on_4090.granularity == defaults.granularity);
    CHECK(on_4090.smooth_q == defaults.smooth_q);
    CHECK(config.models[0].memory.vae.tiling);
    CHECK(config.address.starts_with("127.0.0.1:"));
  }
  CHECK(load_server_config(kConfigs / "cogvideox-5b-rtx4090.json", {}).models[0].memory.text_encoder ==
        sagevid::TextEncoderPlacement::offload);
}

TEST_CASE("the GPU bench config serves bf16 on CUDA to this host only, the backend chosen per request",
          "[integration][config]") {
  const auto config = load_server_config(kConfigs / "cogvideox-2b-bench.json", {});
  CHECK(config.allow_request_backend);  // so loopback only, as it has no TLS or tokens
  CHECK(config.address.starts_with("127.0.0.1:"));
  CHECK(config.metrics_address.starts_with("127.0.0.1:"));
  REQUIRE(config.models.size() == 1);
  CHECK(config.models[0].device == "cuda");
  CHECK(config.models[0].dtype == c10::kBFloat16);
}

TEST_CASE("a port out of range is rejected at load, naming the key", "[integration][config]") {
  std::mt19937_64 draw(std::random_device{}());
  const std::string port = std::to_string(65536 + draw() % 1'000'000);
  CAPTURE(port);
  for (const char* key : {"address", "metrics_address"}) {
    const std::string address = "127.0.0.1:" + port;
    REQUIRE_THROWS_WITH(load_server_config(kConfigs / "tiny.json", {"server." + std::string(key) + "=" + address}),
                        ContainsSubstring("tiny.json: server." + std::string(key) + ": '" + address + "': port " +
                                          port + " is out of range (0..65535)"));
    REQUIRE_THROWS_WITH(parse(with_server("\"" + std::string(key) + R"(": "localhost")")),
                        ContainsSubstring("server." + std::string(key) + ": 'localhost': expected host:port"));
  }
  const auto config = parse(with_server(R"("address": "[::1]:65535", "metrics_address": "127.0.0.1:0")"));
  CHECK(config.address == "[::1]:65535");
  CHECK(config.metrics_address == "127.0.0.1:0");  // 0: any free port
  CHECK(parse(with_server(R"("address": "unix:/run/sagevid.sock")")).address == "unix:/run/sagevid.sock");
}

TEST_CASE("a config must name at least one model", "[integration][config]") {
  REQUIRE_THROWS_WITH(load_server_config(kConfigs / "tiny.json", {"models=[]"}),
                      ContainsSubstring("tiny.json: models: at least one model is required"));
  REQUIRE_THROWS_WITH(parse(R"({"server": {}})"), ContainsSubstring("models: at least one model is required"));
}

TEST_CASE("TLS and token keys: files must exist, cert and key go together, tokens need TLS", "[integration][config]") {
  const sagevid::test::TestPki pki;
  const auto config = parse(with_server(R"("reflection": true,
      "tls": {"cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "ca.pem"},
      "auth": {"token_file": "tokens", "token_env": "SAGEVID_TEST_TOKEN"})"),
                            pki.dir);
  CHECK(config.reflection);
  CHECK(config.tls.cert_file == pki.file("server.pem"));
  CHECK(config.tls.client_ca_file == pki.file("ca.pem"));
  CHECK(config.auth.file == pki.token_file);
  CHECK(config.auth.env == "SAGEVID_TEST_TOKEN");
  CHECK(parse(sagevid::to_json(config).dump(), "/").tls.key_file == pki.file("server.key"));
  CHECK(sagevid::to_json(config).dump().find(pki.tokens[0]) == std::string::npos);  // names, never secrets

  REQUIRE_THROWS_WITH(parse(with_server(R"("tls": {"cert_file": "server.pem", "key_file": "nope.key"})"), pki.dir),
                      ContainsSubstring("server.tls.key_file: " + pki.file("nope.key").string() + ": no such file"));
  REQUIRE_THROWS_WITH(parse(with_server(R"("tls": {"cert_file": "server.pem"})"), pki.dir),
                      ContainsSubstring("server.tls.key_file: cert_file and key_file go together"));
  REQUIRE_THROWS_WITH(parse(with_server(R"("tls": {"client_ca_file": "ca.pem"})"), pki.dir),
                      ContainsSubstring("server.tls.client_ca_file: needs cert_file and key_file"));
  REQUIRE_THROWS_WITH(parse(with_server(R"("auth": {"token_env": "T"})"), pki.dir),
                      ContainsSubstring("server.auth: bearer tokens need server.tls"));
  REQUIRE_THROWS_WITH(parse(with_server(R"("tls": {"cert": "server.pem"})"), pki.dir),
                      ContainsSubstring("server.tls.cert: unknown key"));
}

TEST_CASE("build info names the libraries the binary runs on", "[integration]") {
  const nlohmann::json info = sagevid::build_info();
  for (const char* key : {"sagevid", "libtorch", "grpc", "protobuf", "libavcodec", "ffmpeg", "cuda_devices"})
    CHECK(info.contains(key));
  CHECK(info["libtorch"].get<std::string>().starts_with("2.11"));
}
