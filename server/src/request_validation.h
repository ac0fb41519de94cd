#pragma once
// From a GenerateRequest (the wire form, 0 meaning "the default", an absent seed a random one) to a checked
// pipeline request: defaults filled in from the model, every field checked before the job is queued, each
// error naming the request field as the proto spells it.
#include "server_config.h"
#include "video_encoder.h"

#include "sagevid/models/pipeline.h"
#include "sagevid/v1/sagevid.pb.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sagevid {

// A fresh seed for a request that names none: below 2^53, so that it survives a round trip through JSON or
// Python floats unchanged.
uint64_t random_seed();

// A request's 0 fields take these; ListModels reports them.
struct ModelDefaults {
  int64_t frames = 49, height = 480, width = 720;
  int steps = 50;
  double guidance_scale = 6.0;
  int fps = 8;
};

// The size the transformer was trained at (its config's sample_*), as diffusers' pipeline defaults to.
ModelDefaults model_defaults(const std::filesystem::path& model_dir, const ModelLimits& limits);

constexpr std::size_t kMaxPromptBytes = 8192;  // the encoder reads max_text_tokens anyway; this bounds abuse
constexpr int kMaxFps = 120;

struct ResolvedRequest {
  GenerationRequest generation;  // seed drawn when the request named none
  std::string attention_backend;  // what the request runs with
  VideoEncoderOptions video;
};

// Throws InvalidRequest with the proto's field name ("frames", "steps", "attention_backend", ...).
ResolvedRequest resolve_request(const v1::GenerateRequest& request, const CogVideoXPipeline& pipeline,
                                const ModelDefaults& defaults, const ServerConfig& config, const ModelEntry& model);

// Backends a request may name on this server: all of them with allow_request_backend, else the configured one.
std::vector<std::string> allowed_backends(const ServerConfig& config);

}  // namespace sagevid
