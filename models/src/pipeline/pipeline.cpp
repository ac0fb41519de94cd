// Loading a CogVideoX model folder into a pipeline, what it accepts (ModelLimits) and request validation.
// The run itself is in pipeline_generate.cpp.
#include "pipeline_parts.h"
#include "pipeline_ranks.h"

#include "vae/cogvideox_vae_layers.h"

#include "sagevid/kernels/shape_string.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/image_preprocess.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

namespace sagevid {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTextToVideo = "CogVideoXPipeline";
constexpr const char* kImageToVideo = "CogVideoXImageToVideoPipeline";

// model_index.json, checked to name a pipeline we serve: text-to-video or image-to-video.
nlohmann::json read_model_index(const fs::path& model_dir) {
  const fs::path index = model_dir / "model_index.json";
  if (!fs::exists(index))
    throw std::runtime_error(model_dir.string() + ": not a diffusers model folder (no model_index.json)");
  nlohmann::json document = read_json_file(index);
  const auto name = document.find("_class_name");
  if (name == document.end() || !name->is_string())
    throw std::runtime_error(index.string() + ": _class_name missing (expected " + kTextToVideo + " or " +
                             kImageToVideo + ")");
  if (*name != kTextToVideo && *name != kImageToVideo)
    throw std::runtime_error(index.string() + ": _class_name " + name->get<std::string>() + " is not served (only " +
                             kTextToVideo + " and " + kImageToVideo + ")");
  return document;
}

bool is_image_to_video(const nlohmann::json& model_index) { return model_index.at("_class_name") == kImageToVideo; }

// diffusers builds the scheduler class model_index.json names from scheduler_config.json's values; the config's
// own _class_name decides only when the index names no scheduler.
SchedulerConfig load_scheduler(const fs::path& model_dir, const nlohmann::json& model_index) {
  const fs::path config_file = model_dir / "scheduler" / "scheduler_config.json";
  nlohmann::json config = read_json_file(config_file);
  const auto entry = model_index.find("scheduler");
  if (entry == model_index.end()) return SchedulerConfig::from_json(config, config_file.string());
  if (!entry->is_array() || entry->size() != 2 || !entry->at(1).is_string())
    throw std::runtime_error((model_dir / "model_index.json").string() +
                             ": scheduler must be [library, class name], got " + entry->dump());
  config["_class_name"] = entry->at(1);
  return SchedulerConfig::from_json(config, config_file.string() + " (class from model_index.json)");
}

void check_options(const PipelineOptions& options) {
  const c10::ScalarType dtype = options.dtype;
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16)
    throw std::invalid_argument(std::string("pipeline dtype ") + c10::toString(dtype) +
                                " is not served (float32, float16 or bfloat16)");
  if (options.max_work && *options.max_work < 1)
    throw std::invalid_argument("pipeline max_work " + std::to_string(*options.max_work) + " is not positive");
  if (options.fp8_fast_accum && options.linear != LinearPrecision::fp8)
    throw std::invalid_argument("pipeline fp8_fast_accum needs FP8 linears (linear fp8)");
}

// The parts must fit together as the model model_index.json names: image-to-video transformers take the image
// latents beside the noisy ones (2x the VAE's latent channels); the ofs embedding and learned positions exist only
// in image-to-video checkpoints.
void check_compatible(const fs::path& model_dir, const T5Config& text, const CogVideoXConfig& transformer,
                      const CogVideoXVaeConfig& vae, bool image_to_video) {
  const std::string where = model_dir.string() + ": ";
  const std::string kind = image_to_video ? "an image-to-video" : "a text-to-video";
  const int64_t in_channels = (image_to_video ? 2 : 1) * vae.latent_channels;
  if (transformer.in_channels != in_channels || transformer.out_channels != vae.latent_channels)
    throw std::runtime_error(where + "transformer in/out channels " + std::to_string(transformer.in_channels) + "/" +
                             std::to_string(transformer.out_channels) + " do not fit " + kind +
                             " model with the VAE's " + std::to_string(vae.latent_channels) +
                             " latent channels (expected " + std::to_string(in_channels) + "/" +
                             std::to_string(vae.latent_channels) + "; model_index.json names the pipeline)");
  if (!image_to_video && transformer.has_ofs())
    throw std::runtime_error(where +
                             "the transformer has an ofs embedding (image-to-video) but model_index.json "
                             "names the text-to-video pipeline");
  if (!image_to_video && transformer.use_learned_positional_embeddings)
    throw std::runtime_error(where +
                             "learned positional embeddings (image-to-video) but model_index.json names the "
                             "text-to-video pipeline");
  if (text.d_model != transformer.text_embed_dim)
    throw std::runtime_error(where + "text encoder width " + std::to_string(text.d_model) +
                             " differs from the transformer's text_embed_dim " +
                             std::to_string(transformer.text_embed_dim));
}

// The work of the transformer's sample size at the default steps, times the default factor.
int64_t default_max_work(const CogVideoXConfig& transformer, const CogVideoXVaeConfig& vae) {
  GenerationRequest sample;
  sample.num_frames = 1 + (transformer.latent_sample_frames() - 1) * vae.temporal_compression_ratio;
  sample.height = transformer.sample_height * vae.spatial_compression();
  sample.width = transformer.sample_width * vae.spatial_compression();
  return ModelLimits::kDefaultWorkFactor * latent_tokens(transformer, latent_shape(transformer, vae, sample)) *
         sample.num_inference_steps;
}

ModelLimits make_limits(const CogVideoXConfig& transformer, const CogVideoXVaeConfig& vae,
                        const SchedulerConfig& scheduler, std::optional<int64_t> max_work, bool image_to_video) {
  ModelLimits limits;
  limits.takes_image = image_to_video;
  if (transformer.use_learned_positional_embeddings) {
    limits.only_height = transformer.sample_height * vae.spatial_compression();
    limits.only_width = transformer.sample_width * vae.spatial_compression();
  }
  limits.spatial_factor = vae.spatial_compression() * transformer.patch_size;
  limits.temporal_compression = vae.temporal_compression_ratio;
  limits.frame_step = 2 * vae.temporal_compression_ratio;
  limits.max_text_tokens = transformer.max_text_seq_length;
  limits.min_size = limits.spatial_factor;
  const int64_t sample_side = std::max(transformer.sample_height, transformer.sample_width) * vae.spatial_compression();
  limits.max_size = std::max(limits.min_size, 2 * sample_side / limits.spatial_factor * limits.spatial_factor);
  const int64_t frame_span = 2 * (transformer.sample_frames - 1);
  limits.max_frames = 1 + std::max(limits.frame_step, frame_span / limits.frame_step * limits.frame_step);
  limits.max_steps = int(scheduler.num_train_timesteps);
  limits.max_work = max_work.value_or(default_max_work(transformer, vae));
  return limits;
}

void check_size(const char* field, int64_t value, const ModelLimits& limits) {
  if (value % limits.spatial_factor != 0)
    throw InvalidRequest(field,
                         std::to_string(value) + " is not a multiple of " + std::to_string(limits.spatial_factor));
  if (value < limits.min_size || value > limits.max_size)
    throw InvalidRequest(field, std::to_string(value) + " is outside " + std::to_string(limits.min_size) + ".." +
                                    std::to_string(limits.max_size));
}

// A model with learned positional embeddings serves the size they were learned at, and no other.
void check_only_size(const char* field, int64_t value, int64_t only) {
  if (only != 0 && value != only)
    throw InvalidRequest(field, std::to_string(value) +
                                    " is not served: this model's learned positional embeddings "
                                    "exist for " +
                                    std::to_string(only) + " only");
}

void check_frames(int64_t frames, const ModelLimits& limits) {
  const int64_t step = limits.frame_step;
  if (frames < 1 + step || (frames - 1) % step != 0)
    throw InvalidRequest("num_frames", std::to_string(frames) + " is not 1 + k * " + std::to_string(step) +
                                           " (k >= 1: 9, 17, ..., 49, ...)");
  if (frames > limits.max_frames)
    throw InvalidRequest("num_frames", std::to_string(frames) + " is more than " + std::to_string(limits.max_frames));
}

std::string number_text(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

void check_latents(const at::Tensor& latents, const LatentShape& shape) {
  if (!latents.defined()) throw InvalidRequest("latents", "undefined tensor");
  if (!at::isFloatingType(latents.scalar_type()))
    throw InvalidRequest("latents",
                         std::string("dtype ") + c10::toString(latents.scalar_type()) + " is not a float type");
  if (latents.sizes() != at::IntArrayRef(shape.sizes()))
    throw InvalidRequest("latents", "shape " + kernels::shape_string(latents.sizes()) + ", expected " +
                                        kernels::shape_string(shape.sizes()));
}

void check_image(const std::optional<at::Tensor>& image, bool takes_image) {
  if (!takes_image && image) throw InvalidRequest("image", "this model is text-to-video and takes no image");
  if (takes_image && !image) throw InvalidRequest("image", "this image-to-video model needs an image");
  if (!image) return;
  if (const std::string problem = rgb_image_problem(*image); !problem.empty()) throw InvalidRequest("image", problem);
}

}  // namespace

LatentShape latent_shape(const CogVideoXConfig& transformer, const CogVideoXVaeConfig& vae,
                         const GenerationRequest& request) {
  LatentShape shape;
  shape.frames = (request.num_frames - 1) / vae.temporal_compression_ratio + 1;
  const int64_t patch_t = transformer.patch_size_t.value_or(1);
  shape.padding = shape.frames % patch_t == 0 ? 0 : patch_t - shape.frames % patch_t;
  shape.channels = vae.latent_channels;  // the noisy latents; image-to-video joins as many image channels
  shape.height = request.height / vae.spatial_compression();
  shape.width = request.width / vae.spatial_compression();
  return shape;
}

int decode_ranks(const CogVideoXVaeDecoder& vae, const PipelineOptions& options, int64_t latent_height,
                 int64_t latent_width) {
  const int ranks = options.parallel.world();
  return ranks > 1 && vae.tiles(latent_height, latent_width, options.vae) > 1 ? ranks : 1;
}

bool is_blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); });
}

const char* phase_name(GenerationPhase phase) {
  switch (phase) {
    case GenerationPhase::text_encode: return "text_encode";
    case GenerationPhase::denoise: return "denoise";
    case GenerationPhase::decode: return "decode";
  }
  return "unknown";
}

namespace {

// One device's parts of the model in model_dir; without the T5 encoder's weights where with_text_encoder is false.
std::shared_ptr<const CogVideoXPipeline::Parts> load_parts(const fs::path& model_dir, const PipelineOptions& options,
                                                           bool with_text_encoder) {
  const nlohmann::json model_index = read_model_index(model_dir);
  const bool image_to_video = is_image_to_video(model_index);
  SchedulerConfig scheduler = load_scheduler(model_dir, model_index);  // before the weights: a bad one fails fast
  vae::check_tiling(CogVideoXVaeConfig::load(model_dir / "vae" / "config.json"), options.vae);  // so do bad tiles
  const auto target = at::TensorOptions().device(options.device).dtype(options.dtype);
  T5Tokenizer tokenizer(model_dir / "tokenizer" / "spiece.model");
  const bool offload = options.text_encoder == TextEncoderPlacement::offload;
  std::optional<T5Encoder> text_encoder;
  if (with_text_encoder)
    text_encoder = T5Encoder::load(model_dir / "text_encoder", offload ? target.device(at::kCPU) : target);
  T5Config text_config =
      text_encoder ? text_encoder->config() : T5Config::load(model_dir / "text_encoder" / "config.json");
  CogVideoXTransformer transformer = CogVideoXTransformer::load(model_dir / "transformer", target);
  if (options.linear == LinearPrecision::fp8) transformer = transformer.with_fp8_linears(options.fp8_fast_accum);
  CogVideoXVaeDecoder vae = CogVideoXVaeDecoder::load(model_dir / "vae", target);
  check_compatible(model_dir, text_config, transformer.config(), vae.config(), image_to_video);
  std::optional<CogVideoXVaeEncoder> image_encoder;
  if (image_to_video) image_encoder = CogVideoXVaeEncoder::load(model_dir / "vae", target);
  const ModelLimits limits =
      make_limits(transformer.config(), vae.config(), scheduler, options.max_work, image_to_video);
  return std::make_shared<const CogVideoXPipeline::Parts>(
      options, limits, std::move(tokenizer), std::move(text_config), std::move(text_encoder), std::move(transformer),
      std::move(vae), std::move(image_encoder), std::move(scheduler));
}

}  // namespace

CogVideoXPipeline CogVideoXPipeline::load(const fs::path& model_dir, const PipelineOptions& options) {
  read_model_index(model_dir);  // a folder that is no model fails first
  check_options(options);
  CogVideoXPipeline pipeline;
  if (options.devices.empty() && options.parallel.world() != 1)
    throw std::invalid_argument("parallel plan: cfg " + std::to_string(options.parallel.cfg) + " x ulysses " +
                                std::to_string(options.parallel.ulysses) + " needs a list of devices");
  if (!options.devices.empty() && options.device != options.devices[0])
    throw std::invalid_argument("pipeline device " + options.device.str() + " is not the first of its devices, " +
                                options.devices[0].str());
  if (options.devices.size() <= 1) {
    check_parallel_plan(options.parallel, options.devices.empty() ? std::vector{options.device} : options.devices);
    pipeline.parts_ = load_parts(model_dir, options, true);  // one device: no groups
    return pipeline;
  }
  check_parallel_plan(options.parallel, options.devices);
  check_ulysses_heads(options.parallel,
                      CogVideoXConfig::load(model_dir / "transformer" / "config.json").num_attention_heads);
  pipeline.ranks_ = std::make_shared<Ranks>(options, [&](const PipelineOptions& rank_options, int rank) {
    return load_parts(model_dir, rank_options, /*with_text_encoder=*/rank == 0);
  });
  pipeline.parts_ = pipeline.ranks_->first_parts();
  return pipeline;
}

const ModelLimits& CogVideoXPipeline::limits() const { return parts_->limits; }
const PipelineOptions& CogVideoXPipeline::options() const { return parts_->options; }
const Attention& CogVideoXPipeline::attention(std::optional<AttentionBackend> backend) const {
  return parts_->attention_for(backend);
}

void CogVideoXPipeline::validate(const GenerationRequest& request) const {
  const ModelLimits& limits = parts_->limits;
  if (is_blank(request.prompt)) throw InvalidRequest("prompt", "must not be empty or only whitespace");
  check_size("height", request.height, limits);
  check_size("width", request.width, limits);
  check_only_size("height", request.height, limits.only_height);
  check_only_size("width", request.width, limits.only_width);
  check_frames(request.num_frames, limits);
  if (request.num_inference_steps < 1 || request.num_inference_steps > limits.max_steps)
    throw InvalidRequest("num_inference_steps", std::to_string(request.num_inference_steps) + " is outside 1.." +
                                                    std::to_string(limits.max_steps));
  const double guidance = request.guidance_scale;
  if (!std::isfinite(guidance) || guidance < 0 || guidance > limits.max_guidance_scale)
    throw InvalidRequest("guidance_scale",
                         number_text(guidance) + " is outside 0.." + number_text(limits.max_guidance_scale));
  if (request.preview_every < 0)
    throw InvalidRequest("preview_every", std::to_string(request.preview_every) + " is negative (0: no previews)");
  check_image(request.image, limits.takes_image);
  if (request.latents)
    check_latents(*request.latents, latent_shape(parts_->transformer.config(), parts_->vae.config(), request));
  const int64_t request_work = work(request);
  if (request_work > limits.max_work)
    throw RequestTooLarge("the request's work, " + std::to_string(request_work / request.num_inference_steps) +
                          " latent tokens x " + std::to_string(request.num_inference_steps) +
                          " steps = " + std::to_string(request_work) + ", is over this model's limit of " +
                          std::to_string(limits.max_work) + " (fewer frames, a smaller size or fewer steps)");
}

}  // namespace sagevid
