#pragma once
// The server's JSON config (configs/*.json) as typed, validated structs. Command-line "--set key=value"
// overrides are applied to the document before validation, so they are checked like the file itself.
#include "access_control.h"
#include "image_decoding.h"
#include "sagevid/models/attention.h"
#include "sagevid/models/memory_config.h"
#include "sagevid/models/pipeline.h"

#include <c10/core/ScalarType.h>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid {

struct ModelEntry {
  std::string name;
  std::filesystem::path path;  // diffusers-format folder; relative paths are relative to the config file
  std::string device = "cuda"; // "cpu", "cuda" or "cuda:N"; with devices, their first
  // "devices": ["cuda:0", "cuda:1", ...] and "parallel": {"cfg": 1|2, "ulysses": n}: each request over all of them
  // (sagevid/models/parallel.h). Without "parallel", cfg 2 where the count is even, and ulysses the rest.
  std::vector<std::string> devices;
  ParallelPlan parallel;
  c10::ScalarType dtype = c10::kBFloat16;  // "dtype": float32, float16 or bfloat16
  std::optional<int64_t> max_latent_token_steps;  // work cap of one request; unset: the model's default
  LinearPrecision linear = LinearPrecision::native;  // "linear": "native" (the dtype) or "fp8"
  bool fp8_fast_accum = false;  // "fp8_fast_accum": the FP8 GEMMs with fast accumulation (linear fp8 only)
  MemoryConfig memory;  // "text_encoder" and "vae": where T5 stays, how the VAE decodes
};

// The OpenAI-style HTTP video API (server.http), beside gRPC on its own port; off while address is empty.
struct HttpApiConfig {
  std::string address;                              // host:port; empty: no HTTP API
  int64_t max_body_bytes = int64_t(8) << 20;        // a larger POST body is refused before it is read
  double retention_seconds = 3600;                  // a finished video is deleted this long after it ended
  int64_t max_stored_bytes = int64_t(1) << 30;      // videos kept on disk; past it the oldest finished go first
  std::filesystem::path storage_dir;                // where the videos' private folder goes; empty: the temp dir
  bool enabled() const { return !address.empty(); }
};

struct ServerConfig {
  std::string log_level = "info";
  std::string address = "127.0.0.1:50051";
  int64_t queue_size = 8;             // jobs waiting beyond the running one; more: RESOURCE_EXHAUSTED
  double drain_seconds = 30;          // on SIGTERM: how long running work may take before it is cancelled
  bool allow_request_backend = false; // may a request pick its own attention backend (A/B comparisons)
  std::string metrics_address;        // host:port of the Prometheus /metrics endpoint; empty: none
  bool reflection = false;            // gRPC server reflection (needs a token when tokens are configured)
  TlsFiles tls;                       // for gRPC and /metrics; none: plaintext
  TokenSources auth;                  // bearer tokens for gRPC (health excepted) and /metrics; needs tls
  int64_t max_streams = 32;           // Generate calls open at once; more: RESOURCE_EXHAUSTED
  double write_timeout_seconds = 30;  // a stream write the client leaves waiting longer ends the call (stalled)
  int64_t max_stream_buffer_bytes = int64_t(256) << 20;  // video bytes waiting for one client; more ends its call
  HttpApiConfig http;
  ImageLimits image;  // "max_image_bytes", "max_image_pixels": an image-to-video request's image
  AttentionConfig attention;
  std::vector<ModelEntry> models;
};

constexpr int64_t kMaxImageBytes = int64_t(1) << 30;  // server.max_image_bytes at most: a request must fit gRPC's

ServerConfig parse_server_config(const nlohmann::json& document, const std::filesystem::path& base_dir);
// How the pipeline of one model entry loads and runs under this config.
PipelineOptions pipeline_options(const ModelEntry& model, const ServerConfig& config);
// The device or the device group ("cuda:0+cuda:1") that runs a model's jobs.
std::string placement(const ModelEntry& model);
// The job queue, and its worker, that run a model's jobs, named by the devices it serves: models that share a device,
// directly or through other models, share one queue, so that one generation at a time runs on any device (a model on
// cuda:0 beside one on cuda:0 and cuda:1: both on "cuda:0+cuda:1"). "cuda" counts as cuda:0.
std::string queue_placement(const ServerConfig& config, const ModelEntry& model);
// The position in config.models of the model called `name`, or nullopt; what an empty name means is the
// caller's choice. model_names lists them all ("a, b") for the error that follows a miss.
std::optional<std::size_t> find_model(const ServerConfig& config, std::string_view name);
std::string model_names(const ServerConfig& config);

ServerConfig load_server_config(const std::filesystem::path& file, const std::vector<std::string>& overrides);
nlohmann::json to_json(const ServerConfig& config);

}  // namespace sagevid
