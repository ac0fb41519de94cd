#include "request_validation.h"

#include "image_decoding.h"

#include "sagevid/models/cogvideox_config.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/dtype.h"

#include <cmath>
#include <random>

namespace sagevid {
namespace {

// The pipeline names fields as GenerationRequest does; clients know the proto's names.
std::string proto_field(const std::string& pipeline_field) {
  if (pipeline_field == "num_frames") return "frames";
  if (pipeline_field == "num_inference_steps") return "steps";
  return pipeline_field;
}

std::string_view without_field(const InvalidRequest& e) {
  std::string_view text = e.what();
  const std::string prefix = e.field + ": ";
  return text.starts_with(prefix) ? text.substr(prefix.size()) : text;
}

// 0 takes the default; negative values are an error rather than a silent default.
int64_t or_default(const char* field, int64_t value, int64_t fallback) {
  if (value < 0) throw InvalidRequest(field, std::to_string(value) + " is negative (0 takes the model's default)");
  return value == 0 ? fallback : value;
}

void check_prompt(const char* field, const std::string& text, bool required) {
  if (required && is_blank(text)) throw InvalidRequest(field, "must not be empty or only whitespace");
  if (text.size() > kMaxPromptBytes)
    throw InvalidRequest(
        field, std::to_string(text.size()) + " bytes is over the limit of " + std::to_string(kMaxPromptBytes));
}

VideoFormat video_format(v1::OutputFormat output) {
  switch (output) {
    case v1::OUTPUT_FORMAT_UNSPECIFIED:
    case v1::OUTPUT_FORMAT_MP4_H264: return VideoFormat::mp4_h264;
    case v1::OUTPUT_FORMAT_MP4_H264_LOSSLESS: return VideoFormat::mp4_h264_lossless;
    case v1::OUTPUT_FORMAT_RGB_FRAMES: return VideoFormat::rgb_frames;
    default: throw InvalidRequest("output", "unknown output format " + std::to_string(int(output)));
  }
}

// The attention layer says which backends run on the model's device and dtype; a backend that cannot is
// refused unless the configured fallback can, as it would fail mid-run otherwise.
void check_backend_runs(AttentionBackend backend, const std::string& name, const ServerConfig& config,
                        const ModelEntry& model, const PipelineOptions& options) {
  const auto reason = attention_unsupported_on(backend, options.device, options.dtype);
  if (!reason) return;
  const auto& fallback = config.attention.fallback;
  if (fallback && !attention_unsupported_on(*fallback, options.device, options.dtype)) return;
  throw InvalidRequest("attention_backend", "'" + name + "' cannot run model '" + model.name + "' on " + model.device +
                                                " in " + std::string(dtype_name(model.dtype)) + " (" + *reason + ")");
}

AttentionBackend request_backend(const std::string& name, const ServerConfig& config, const ModelEntry& model,
                                 const PipelineOptions& options) {
  if (name.empty()) return config.attention.backend;
  AttentionBackend backend;
  try {
    backend = parse_attention_backend(name);
  } catch (const ConfigError& e) {
    throw InvalidRequest("attention_backend", e.what());
  }
  if (backend != config.attention.backend && !config.allow_request_backend)
    throw InvalidRequest("attention_backend", "'" + name + "' not allowed: this server runs " +
                                                  std::string(backend_name(config.attention.backend)) +
                                                  " only (server.allow_request_backend is off)");
  check_backend_runs(backend, name, config, model, options);
  return backend;
}

// The request's image decoded, for models that take one; a text-to-video model is told off before any decoding.
std::optional<at::Tensor> request_image(const std::string& bytes, const ModelLimits& limits,
                                        const ImageLimits& image_limits, const ModelEntry& model) {
  if (bytes.empty()) return std::nullopt;  // the pipeline says whether the model needs one
  if (!limits.takes_image)
    throw InvalidRequest("image", "model '" + model.name +
                                      "' is text-to-video and takes no image (ListModels: "
                                      "takes_image)");
  try {
    return decode_image(bytes, image_limits);
  } catch (const ImageError& e) {
    throw InvalidRequest("image", e.what());
  }
}

}  // namespace

uint64_t random_seed() {
  std::random_device entropy;
  const uint64_t bits = (uint64_t(entropy()) << 32) | entropy();
  return bits & ((uint64_t(1) << 53) - 1);
}

ModelDefaults model_defaults(const std::filesystem::path& model_dir, const ModelLimits& limits) {
  const CogVideoXConfig transformer = CogVideoXConfig::load(model_dir / "transformer" / "config.json");
  const int64_t vae_factor = limits.spatial_factor / transformer.patch_size;
  ModelDefaults defaults;
  defaults.height = transformer.sample_height * vae_factor;
  defaults.width = transformer.sample_width * vae_factor;
  const bool frames_valid = (transformer.sample_frames - 1) % limits.frame_step == 0 && transformer.sample_frames > 1 &&
                            transformer.sample_frames <= limits.max_frames;
  defaults.frames = frames_valid ? transformer.sample_frames : 1 + limits.frame_step;
  return defaults;
}

ResolvedRequest resolve_request(const v1::GenerateRequest& request, const CogVideoXPipeline& pipeline,
                                const ModelDefaults& defaults, const ServerConfig& config, const ModelEntry& model) {
  check_prompt("prompt", request.prompt(), true);
  check_prompt("negative_prompt", request.negative_prompt(), false);
  ResolvedRequest resolved;
  GenerationRequest& generation = resolved.generation;
  generation.prompt = request.prompt();
  generation.negative_prompt = request.negative_prompt();
  generation.num_frames = or_default("frames", request.frames(), defaults.frames);
  generation.height = or_default("height", request.height(), defaults.height);
  generation.width = or_default("width", request.width(), defaults.width);
  generation.num_inference_steps = int(or_default("steps", request.steps(), defaults.steps));
  const float guidance = request.guidance_scale();
  if (!std::isfinite(guidance) || guidance < 0)
    throw InvalidRequest("guidance_scale", std::to_string(guidance) + " is not a finite value >= 0");
  generation.guidance_scale = guidance == 0 ? defaults.guidance_scale : guidance;
  generation.dynamic_cfg = request.dynamic_cfg();
  generation.seed = request.has_seed() ? request.seed() : random_seed();
  generation.preview_every = request.preview_every();
  const AttentionBackend backend = request_backend(request.attention_backend(), config, model, pipeline.options());
  if (backend != config.attention.backend) generation.attention_backend = backend;
  resolved.attention_backend = backend_name(backend);

  generation.image = request_image(request.image(), pipeline.limits(), config.image, model);

  const int fps = int(or_default("fps", request.fps(), defaults.fps));
  if (fps > kMaxFps) throw InvalidRequest("fps", std::to_string(fps) + " is over " + std::to_string(kMaxFps));
  resolved.video = {.width = int(generation.width),
                    .height = int(generation.height),
                    .fps = fps,
                    .format = video_format(request.output())};
  try {
    pipeline.validate(generation);
  } catch (const InvalidRequest& e) {
    throw InvalidRequest(proto_field(e.field), std::string(without_field(e)));
  }
  return resolved;
}

std::vector<std::string> allowed_backends(const ServerConfig& config) {
  if (!config.allow_request_backend) return {std::string(backend_name(config.attention.backend))};
  std::vector<std::string> names;
  for (AttentionBackend backend : kAllBackends) names.emplace_back(backend_name(backend));
  return names;
}

}  // namespace sagevid
