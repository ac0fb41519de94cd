#pragma once
// The CogVideoX pipeline, text-to-video (diffusers' CogVideoXPipeline) or image-to-video
// (CogVideoXImageToVideoPipeline, as model_index.json says): prompt -> T5 embeddings (with the negative prompt
// for classifier-free guidance) -> seeded latents (joined on the channels by the image's VAE latents for
// image-to-video) -> denoising loop -> VAE decode -> uint8 RGB frames, handed out batch by batch as the VAE
// decodes them (the server streams them).
//
//   auto pipeline = CogVideoXPipeline::load("assets/tiny-cogvideox", {.device = at::kCPU, .dtype = at::kFloat});
//   GenerationResult result = pipeline.generate(request, {.on_frames = write_frames});
#include "sagevid/models/attention.h"
#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/parallel.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid {

struct GenerationRequest {
  std::string prompt;
  std::string negative_prompt;  // used when guidance_scale > 1
  int64_t num_frames = 49;      // pixel frames; see CogVideoXPipeline::validate for the allowed counts
  int64_t height = 480;
  int64_t width = 720;
  int num_inference_steps = 50;
  double guidance_scale = 6.0;
  bool dynamic_cfg = false;  // diffusers' use_dynamic_cfg: cosine-ramped guidance over the steps
  // Used as given (the server draws one for "random"). The noise is diffusers' with torch.Generator("cpu")
  // .manual_seed(seed): drawn on the CPU in the pipeline's dtype (bf16 draws are not a cast of fp32 ones), and
  // the DPM scheduler's per-step noise continues from the same generator.
  uint64_t seed = 0;
  // Fixed initial latents instead of drawing them from the seed (tests), shaped as diffusers' prepare_latents:
  // [1, F_latent (+1 padding frame where patch_size_t needs it), C, H/8, W/8], any float dtype and device.
  // They are scaled by the scheduler's init_noise_sigma like drawn ones.
  std::optional<at::Tensor> latents;
  // Another attention backend for this request only (A/B comparisons); the pipeline's fallback still applies.
  std::optional<AttentionBackend> attention_backend;
  // Every this many denoising steps a preview goes to on_preview (0: none).
  int preview_every = 0;
  // Image-to-video models only (required there): the first frame's image as decoded, uint8 RGB [H, W, 3] on the
  // CPU, any size; the pipeline resizes it to height x width as diffusers does (image_preprocess.h).
  std::optional<at::Tensor> image;
};

// Empty or only ASCII whitespace: nothing to generate from (a prompt must have some text).
bool is_blank(std::string_view text);

// A request field the model cannot serve; field is the request's name for it ("height", "num_frames", ...).
struct InvalidRequest : std::invalid_argument {
  InvalidRequest(std::string field_name, const std::string& message)
      : std::invalid_argument(field_name + ": " + message), field(std::move(field_name)) {}
  std::string field;
};

// A well-formed request that is more than this server takes: over the work cap, or more memory than is free.
struct RequestTooLarge : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown out of generate() when the cancel callback says so; nothing of the request is kept.
struct GenerationCancelled : std::runtime_error {
  GenerationCancelled() : std::runtime_error("generation cancelled") {}
};

// Thrown out of generate() when a denoising step leaves NaN or infinite latents (damaged weights, an
// overflow): the message names the step and is meant for the caller.
struct NonFiniteLatents : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class GenerationPhase { text_encode, denoise, decode };
const char* phase_name(GenerationPhase phase);

// Reported after each denoising step and after each decoded temporal batch (not during text encoding).
struct GenerationProgress {
  GenerationPhase phase = GenerationPhase::text_encode;
  int step = 0;          // denoise: steps done (1..total); decode: frames decoded so far
  int total = 0;         // denoise: number of steps; decode: number of frames
  double elapsed_s = 0;  // since generate() started
};

// Where the denoising is heading after `step` of `total` steps: the first frame of the current estimate of
// the clean latents (the scheduler's x0), decoded by the VAE from latents pooled down so that the picture's
// longer side is at most kPreviewLongSide pixels. uint8 RGB [height, width, 3], contiguous, on the CPU.
struct GenerationPreview {
  int step = 0, total = 0;
  at::Tensor rgb;
};
constexpr int64_t kPreviewLongSide = 256;

struct GenerationCallbacks {
  std::function<void(const GenerationProgress&)> on_progress;
  // Called as each phase begins (text_encode, denoise, decode), for measuring phases (the benchmarks).
  std::function<void(GenerationPhase phase)> on_phase;
  // Each decoded temporal batch as uint8 RGB [frames, height, width, 3], contiguous, on the CPU.
  std::function<void(const at::Tensor& frames)> on_frames;
  // Every request.preview_every steps, after the step's progress.
  std::function<void(const GenerationPreview&)> on_preview;
  // Polled before each denoising step and each decoded batch; true stops with GenerationCancelled.
  std::function<bool()> cancelled;
};

struct PhaseTimings {
  double text_encode_s = 0, denoise_s = 0, decode_s = 0;
  double step_s_median = 0;  // median denoising-step time
  double preview_s = 0;      // all previews together (part of denoise_s, not of any step's time)
  int previews = 0;
  int decode_ranks = 1;  // the ranks that shared the decode's tiles (a parallel plan's tiled decode); else 1
};

struct GenerationResult {
  int64_t num_frames = 0, height = 0, width = 0;
  uint64_t seed = 0;
  std::string attention_backend;  // what ran the attention calls (before fallbacks)
  PhaseTimings timings;
};

// Where the T5 text encoder's weights stay between prompts.
enum class TextEncoderPlacement {
  device,   // on the pipeline's device with the other models (T5-XXL: ~9 GiB in bf16)
  offload,  // in host memory; each prompt encoding copies them to the device block by block (one block there
            // at a time), so the device holds T5 only while it runs: what lets CogVideoX-5B fit in 24 GB
};

// The precision of the transformer blocks' big linear layers (QKV, attention output, feed-forward).
enum class LinearPrecision {
  native,  // the pipeline's dtype
  fp8,     // FP8 E4M3 weights per output channel, activations per token (CogVideoXTransformer::with_fp8_linears)
};

struct PipelineOptions {
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;  // transformer and VAE; the T5 encoder too
  AttentionConfig attention;
  LinearPrecision linear = LinearPrecision::native;
  // FP8 GEMMs with cuBLASLt's fast accumulation (at::_scaled_mm's use_fast_accum: the tensor cores' FP8 partial
  // sums are not promoted to a full fp32 accumulator every few K steps): faster, less exact; linear fp8 only.
  bool fp8_fast_accum = false;
  VaeDecodeOptions vae;  // tiling / frame batches for the decode
  TextEncoderPlacement text_encoder = TextEncoderPlacement::device;
  // The most work (latent tokens x steps) a request may ask for; unset: ModelLimits' default.
  std::optional<int64_t> max_work;
  // One request over several devices (parallel.h): rank i runs on devices[i] with the whole model there, and
  // `device` is devices[0]. Empty: `device` alone, and `parallel` must be 1 x 1.
  std::vector<c10::Device> devices;
  ParallelPlan parallel;
  // How long a rank waits in a collective for the others before the request fails: far above the longest gap
  // between two of them (a preview's decode on rank 0), so that it ends only a run that lost a rank.
  std::chrono::milliseconds collective_timeout = std::chrono::minutes(5);
};

// Device memory a request needs on top of the resident weights, in bytes: an upper estimate of what each phase
// holds at its peak (activations, attention scores where the math backend runs, the VAE's full-resolution
// layers, its convolutions' caches and the frames it hands out).
struct MemoryEstimate {
  // text_encode: the larger of T5's and, for image-to-video, the image's VAE encode (they run one after the other)
  int64_t text_encode = 0, denoise = 0, decode = 0;
  int64_t peak() const { return std::max({text_encode, denoise, decode}); }
  const char* peak_phase() const;
};

// What a model folder accepts, for request validation before queueing. From the configs: spatial_factor =
// VAE factor x patch size; min_size = spatial_factor; max_size = twice the transformer's larger sample side
// (pixels); max_frames = twice the sample's frames, 1 + 2 (sample_frames - 1); max_steps = the scheduler's
// num_train_timesteps; max_work = PipelineOptions::max_work, by default kDefaultWorkFactor times the work of the
// sample size at 50 steps (the size caps alone admit 8x the sample's tokens at 1000 steps).
struct ModelLimits {
  int64_t spatial_factor = 16;        // height and width must be multiples (VAE factor x patch size)
  int64_t temporal_compression = 4;   // the VAE's: latent frames = (num_frames - 1) / temporal_compression + 1
  // num_frames = 1 + k * frame_step (k >= 1), frame_step = 2 x temporal_compression: an odd latent frame count,
  // which the VAE decodes back to exactly num_frames (for an even count diffusers returns 4 F frames).
  int64_t frame_step = 8;
  int64_t max_text_tokens = 226;      // longer prompts are truncated, as diffusers does
  int64_t min_size = 0, max_size = 0; // pixels, for height and width
  int64_t max_frames = 0;
  int max_steps = 1000;               // num_inference_steps in 1..max_steps
  double max_guidance_scale = 100;    // guidance_scale in [0, max_guidance_scale]
  int64_t max_work = 0;               // latent tokens x steps
  bool takes_image = false;           // image-to-video: a request must carry an image, else must not
  // Learned positional embeddings (CogVideoX-5B-I2V) exist for the sample size only: nonzero, the one height
  // and width served.
  int64_t only_height = 0, only_width = 0;
  static constexpr int64_t kDefaultWorkFactor = 4;
};

class CogVideoXPipeline {
 public:
  // model_dir: a diffusers folder with tokenizer/, text_encoder/, transformer/, vae/, scheduler/, whose
  // model_index.json names CogVideoXPipeline or CogVideoXImageToVideoPipeline.
  static CogVideoXPipeline load(const std::filesystem::path& model_dir, const PipelineOptions& options);

  const ModelLimits& limits() const;
  // Throws InvalidRequest naming the first bad field, RequestTooLarge over max_work.
  void validate(const GenerationRequest& request) const;
  // The request's latent tokens (the transformer's video sequence length) x its steps.
  int64_t work(const GenerationRequest& request) const;
  // What the request needs on rank `rank`'s device (0: the only one without a parallel plan). Under a plan every
  // rank encodes the image and denoises its share; rank 0 alone encodes the text, and decodes unless the decode
  // makes several tiles, which every rank shares.
  MemoryEstimate estimate_memory(const GenerationRequest& request, int rank = 0) const;
  // Runs the request; throws InvalidRequest, GenerationCancelled, NonFiniteLatents, or std::runtime_error
  // (c10::Error for OOM). Under a parallel plan every rank denoises, and rank 0 alone encodes the text (for all),
  // decodes (a tiled decode of several tiles: every rank decodes its share, rank 0 blends) and calls the callbacks;
  // one request at a time (a second call waits for the first).
  GenerationResult generate(const GenerationRequest& request, const GenerationCallbacks& callbacks = {}) const;

  const PipelineOptions& options() const;
  // The attention that runs a backend's calls (the configured one by default), for its fallback counts. A
  // request's attention_backend runs on the pipeline's Attention of that backend (same fallback and options).
  const Attention& attention(std::optional<AttentionBackend> backend = std::nullopt) const;

  // What the pipeline holds, private to sagevid_models: one device's models (pipeline/pipeline_parts.h), and a
  // parallel plan's ranks with their groups (pipeline/pipeline_ranks.h).
  struct Parts;
  class Ranks;

 private:
  std::shared_ptr<const Parts> parts_;  // rank 0's
  std::shared_ptr<Ranks> ranks_;        // null without a parallel plan
};

}  // namespace sagevid
