// What one request costs before it runs: its work (latent tokens x steps) and an upper estimate of the device
// memory it needs on top of the resident weights, phase by phase, from the shapes each phase holds at its peak.
// The counts follow the code of each phase (which tensors are alive at once); tests/integration/test_pipeline
// compares the estimate with the peak the CPU allocator sees on the tiny model.
#include "attention/attention_backends.h"
#include "vae/cogvideox_vae_layers.h"
#include "pipeline_parts.h"
#include "sagevid/kernels/device_info.h"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <vector>

namespace sagevid {
namespace {

constexpr int64_t kFloatBytes = 4;

// Joint-sequence tensors of one transformer block alive at once, in units of batch x length x inner_dim: while
// attention runs, the residual streams (1), the fused QKV output (3), the normed q and k (2) and the output (1);
// in the feed-forward, the streams, its 4x hidden (GELU in place) and its output. Everything else a block makes
// (modulated inputs, the reshaped attention output, the projections) comes and goes below these.
constexpr int64_t kAttentionActivations = 7, kFeedForwardActivations = 6;
// RoPE rotates the video part of q, then of k, through two fp32 copies of it, while all but the output are alive.
constexpr int64_t kRopeFloatCopies = 2;
// The latents, the guided input, the fp32 prediction, its halves and the scheduler's fp32 state, rounded up.
constexpr int64_t kLatentCopies = 8;
// Ulysses' exchange before an attention call, in units of batch x (text + tokens) x the rank's heads x head_dim: the
// q, k, v sent (the rank's tokens of every head) and received (every token of the rank's heads), then the received
// and the call's inputs, 3 units each, two at a time. After it, only the inputs and the output stay (4 units).
constexpr int64_t kUlyssesExchange = 6;
// The math backend holds q, k, v and its output in fp32, and each chunk's scores and their softmax.
constexpr int64_t kMathAttentionCopies = 4, kScoreCopies = 2;
// A decoder resnet at full resolution holds its input, the normed/activated copy, the causally padded input,
// the conv output and a spatial-norm factor; counted in units of the largest activation (channels x frames x
// height x width), one more for a convolution's workspace on CUDA (cuDNN's implicit GEMMs need little).
constexpr int64_t kDecoderActivations = 6, kCudaConvWorkspace = 1;
// On the CPU a 3x3x3 convolution unfolds its input into columns, 27 per input channel and output position.
constexpr int64_t kConvColumnsPerChannel = 27;
// safe_conv3d splits inputs over this many elements (diffusers' 2 GiB at 2 bytes an element) by output frames.
constexpr double kConvSplitElements = double(int64_t(1) << 30);
// T5: the hidden states, their norm, q/k/v/out and the gated feed-forward (two d_ff projections and GELU).
constexpr int64_t kTextModelActivations = 8, kTextFeedForwardActivations = 4;
// Building T5's relative position bias holds int64 positions, distances and buckets and fp32 log ratios of
// every query/key pair at once (bytes per pair), before the per-head lookup (fp32 per head and pair).
constexpr int64_t kPositionBucketBytesPerPair = 56;
// The math backend adds the bias to each chunk's scores through a contiguous copy: scores, bias copy, softmax.
constexpr int64_t kBiasedScoreCopies = 3;

bool uses_math_attention(const AttentionConfig& config, std::optional<AttentionBackend> request_backend) {
  const AttentionBackend backend = request_backend.value_or(config.backend);
  return backend == AttentionBackend::math || config.fallback == AttentionBackend::math;
}

// The sage2 options a request's transformer attention resolves to on the pipeline's device, or nullopt where
// sage2 does not run it (another backend, no CUDA device, an architecture without the kernels).
std::optional<kernels::sage2::Options> sage2_options(const PipelineOptions& options,
                                                     std::optional<AttentionBackend> request_backend) {
  if (request_backend.value_or(options.attention.backend) != AttentionBackend::sage2) return std::nullopt;
  if (!options.device.is_cuda()) return std::nullopt;
  try {
    const int index = options.device.has_index() ? options.device.index() : 0;
    return kernels::sage2::resolve(options.attention.sage2, kernels::compute_capability(index));
  } catch (const std::invalid_argument&) {
    return std::nullopt;  // sage2 refuses these options here: the fallback runs the calls
  }
}

// fp32 scores of a [B, H, L, L] attention, processed in query chunks of at most the math budget, copies of
// each chunk held at once.
int64_t score_bytes(int64_t batch, int64_t heads, int64_t length, int64_t copies) {
  const int64_t row_bytes = batch * heads * length * kFloatBytes;
  const int64_t rows = std::min(length, std::max<int64_t>(1, detail::kMathScoreBudgetBytes / row_bytes));
  return copies * rows * row_bytes;
}

int64_t text_encode_bytes(const T5Config& t5, int64_t prompts, int64_t tokens, bool math) {
  const int64_t hidden = prompts * tokens * kFloatBytes;  // T5 runs its norms and residuals in fp32
  const int64_t activations = hidden * (kTextModelActivations * t5.d_model + kTextFeedForwardActivations * t5.d_ff);
  const int64_t pairs = tokens * tokens, bias = t5.num_heads * pairs * kFloatBytes;  // shared by the prompts
  const int64_t building_bias = kPositionBucketBytesPerPair * pairs + bias;
  const int64_t scores = math ? score_bytes(prompts, t5.num_heads, tokens, kBiasedScoreCopies)
                              : prompts * t5.num_heads * pairs * kFloatBytes;  // the bias expanded for the kernel
  return activations + std::max(building_bias, bias + scores);
}

// An offloaded T5 holds one block's weights on the device while it runs (they are not among the resident
// weights); a CPU pipeline's "copy" of them is the host tensor itself.
int64_t streamed_text_block_bytes(const T5Config& t5, const PipelineOptions& options) {
  if (options.text_encoder != TextEncoderPlacement::offload || options.device.is_cpu()) return 0;
  const int64_t inner = t5.num_heads * t5.d_kv;
  const int64_t elements = 4 * inner * t5.d_model + 3 * t5.d_ff * t5.d_model + 2 * t5.d_model;
  return elements * int64_t(c10::elementSize(options.dtype));
}

// What the attention backend holds beyond q, k, v and its output, for a call on `heads` of the model's heads: the
// math backend's fp32 copies and score chunks, or the sage2 preprocessing's buffers (none for flash and cuDNN); the
// larger where math is the fallback.
int64_t attention_workspace_bytes(const CogVideoXConfig& c, int64_t batch, int64_t length, int64_t heads, bool math,
                                  const std::optional<kernels::sage2::Options>& sage2) {
  const int64_t row = batch * length * heads * c.attention_head_dim;
  const int64_t math_bytes =
      math ? kMathAttentionCopies * row * kFloatBytes + score_bytes(batch, heads, length, kScoreCopies) : 0;
  const int64_t sage2_bytes =
      sage2 ? kernels::sage2::workspace_bytes(*sage2, batch, heads, length, length, c.attention_head_dim) : 0;
  return std::max(math_bytes, sage2_bytes);
}

// One device's peak in a denoising step; under a parallel plan, one rank's: its half of a guided batch (cfg 2), the
// largest share of the video tokens between attention calls, and the whole sequence for heads / ulysses heads in them.
int64_t denoise_bytes(const CogVideoXConfig& c, const LatentShape& shape, int64_t batch, int64_t element, bool math,
                      const std::optional<kernels::sage2::Options>& sage2, const ParallelPlan& plan) {
  const int64_t tokens = latent_tokens(c, shape), text = c.max_text_seq_length, u = plan.ulysses;
  const int64_t rank_batch = plan.cfg == 2 && batch == 2 ? 1 : batch;
  const int64_t share = (tokens + u - 1) / u, rank_heads = (c.num_attention_heads + u - 1) / u;
  const int64_t row = rank_batch * (text + share) * c.inner_dim();
  const int64_t exchange =
      u > 1 ? kUlyssesExchange * rank_batch * (text + tokens) * rank_heads * c.attention_head_dim * element : 0;
  const int64_t attention = kAttentionActivations * row * element + exchange +
                            attention_workspace_bytes(c, rank_batch, text + tokens, rank_heads, math, sage2);
  const int64_t rope = c.use_rotary_positional_embeddings
                           ? (kAttentionActivations - 1) * row * element +
                                 kRopeFloatCopies * rank_batch * share * c.inner_dim() * kFloatBytes
                           : 0;
  const int64_t feed_forward = kFeedForwardActivations * row * element;
  const int64_t latents = kLatentCopies * batch * (shape.frames + shape.padding) * shape.channels * shape.height *
                          shape.width * kFloatBytes;
  return std::max({attention, rope, feed_forward}) + latents;
}

// Pixel frames of the largest temporal batch the VAE decodes (the first takes the remainder).
int64_t largest_frame_batch(const CogVideoXVaeConfig& vae, int64_t latent_frames, int64_t batch_size) {
  const int64_t first = std::min(latent_frames, batch_size + latent_frames % batch_size);
  const int64_t rest = latent_frames > first ? batch_size : 0;
  return std::max(1 + (first - 1) * vae.temporal_compression_ratio, rest * vae.temporal_compression_ratio);
}

// The decoder's causal 3x3x3 convolutions each keep the last two frames of their input between temporal batches
// (every tile its own): their elements per latent pixel of a tile, summed over the decoder's levels (each up
// block's resnets at 4x the pixels of the one before).
int64_t conv_cache_elements_per_latent_pixel(const CogVideoXVaeConfig& vae) {
  constexpr int64_t kCachedFrames = 2;
  const std::vector<int64_t> channels(vae.block_out_channels.rbegin(), vae.block_out_channels.rend());
  int64_t elements = vae.latent_channels + 4 * channels[0];  // conv_in, and the mid block's two resnets
  int64_t pixels = 1;
  for (size_t i = 0; i < channels.size(); ++i, pixels *= 4) {
    for (int64_t j = 0; j <= vae.layers_per_block; ++j) {
      const int64_t in = j == 0 ? channels[i > 0 ? i - 1 : 0] : channels[i];
      elements += pixels * (in + channels[i]);  // conv1 reads the resnet's input, conv2 its own channels
    }
  }
  elements += pixels / 4 * channels.back();  // conv_out, at full resolution
  return kCachedFrames * elements;
}

// The CPU's unfolded columns of the widest full-resolution convolution, over the frames of one split.
int64_t conv_columns_bytes(int64_t channels, int64_t frames, int64_t frame_pixels, int64_t element) {
  const double input_elements = double(channels) * double(frames + 2) * double(frame_pixels);
  const int64_t parts = input_elements <= kConvSplitElements ? 1 : int64_t(input_elements / kConvSplitElements) + 1;
  const int64_t split_frames = (frames + parts - 1) / parts;
  return kConvColumnsPerChannel * channels * split_frames * frame_pixels * element;
}

// ranks: the ranks that share the decode's tiles (1: one device decodes).
int64_t decode_bytes(const CogVideoXVaeConfig& vae, const VaeDecodeOptions& options, const LatentShape& shape,
                     int64_t element, bool cpu, size_t ranks) {
  const int64_t frames = largest_frame_batch(vae, shape.frames, options.frame_batch_size);
  const int64_t factor = vae.spatial_compression();
  const int64_t full_pixels = frames * shape.height * shape.width * factor * factor;
  // The largest tile's latent pixels, and all tiles' together (edge tiles are cut at the latent's border).
  int64_t tile_latent_pixels = shape.height * shape.width, all_tiles_latent_pixels = tile_latent_pixels;
  int64_t tiles_kept = 0;
  if (const std::optional<vae::TileGrid> grid = vae::plan_tiles(vae, options, shape.height, shape.width)) {
    const auto covered = [](const std::vector<int64_t>& starts, int64_t tile, int64_t size) {
      int64_t sum = 0;
      for (int64_t start : starts) sum += std::min(tile, size - start);
      return sum;
    };
    tile_latent_pixels =
        std::min(grid->tile_latent_height, shape.height) * std::min(grid->tile_latent_width, shape.width);
    all_tiles_latent_pixels = covered(grid->row_starts, grid->tile_latent_height, shape.height) *
                              covered(grid->col_starts, grid->tile_latent_width, shape.width);
    // Every decoded tile of the batch is kept (overlapping: up to twice the frame), then blended into one. Shared,
    // each rank also holds the batch's tiles all-gathered from every rank: as many pieces as ranks, each the
    // busiest rank's tiles.
    tiles_kept = 3 * vae.out_channels * full_pixels * element;
    if (ranks > 1) {
      const std::vector<int64_t> area = vae::share_tiles(grid, shape.height, shape.width, ranks).area;
      const int64_t busiest = *std::max_element(area.begin(), area.end());
      tiles_kept += int64_t(ranks) * busiest * factor * factor * frames * vae.out_channels * element;
    }
  }
  const int64_t tile_frame_pixels = tile_latent_pixels * factor * factor;
  const int64_t caches = conv_cache_elements_per_latent_pixel(vae) * all_tiles_latent_pixels * element;
  // Full resolution holds the last up block's channels and, upsampled into it, the block before's.
  const std::vector<int64_t>& channels = vae.block_out_channels;
  const int64_t widest = std::max(channels[0], channels[std::min<size_t>(1, channels.size() - 1)]);
  // The frames handed out: the decoder's output, and its fp32 and uint8 conversions.
  const int64_t delivered = vae.out_channels * full_pixels * (element + 3 * kFloatBytes + 1);
  const int64_t activation = widest * frames * tile_frame_pixels * element;
  const int64_t workspace =
      cpu ? conv_columns_bytes(widest, frames, tile_frame_pixels, element) : kCudaConvWorkspace * activation;
  return kDecoderActivations * activation + workspace + caches + tiles_kept + delivered;
}

// The image's VAE encode (image-to-video): one frame through the encoder. Its full-resolution resnets hold as many
// activations of the first block's channels as the decoder's do, plus the causal padding's two extra frames of
// a convolution's input and the two frames each full-resolution convolution caches for a next batch, and a
// convolution's workspace; before it, the preprocessing's fp32 copies of the image (resized, scaled, permuted).
int64_t image_encode_bytes(const CogVideoXVaeConfig& vae, int64_t height, int64_t width, int64_t element, bool cpu) {
  constexpr int64_t kPaddingFrames = 2, kCachedFrames = 2, kImageCopies = 4;
  const int64_t pixels = height * width, channels = vae.block_out_channels.front();
  const int64_t activation = channels * pixels * element;
  const int64_t convolutions = 2 * vae.layers_per_block;  // two per resnet of the first block
  const int64_t activations = kDecoderActivations + kPaddingFrames + kCachedFrames * convolutions;
  const int64_t workspace = cpu ? conv_columns_bytes(channels, 1, pixels, element) : kCudaConvWorkspace * activation;
  return activations * activation + workspace + kImageCopies * vae.in_channels * pixels * kFloatBytes;
}

}  // namespace

int64_t latent_tokens(const CogVideoXConfig& transformer, const LatentShape& shape) {
  const int64_t p = transformer.patch_size;
  return (shape.frames + shape.padding) / transformer.patch_size_t.value_or(1) * (shape.height / p) * (shape.width / p);
}

const char* MemoryEstimate::peak_phase() const {
  const int64_t most = peak();
  return most == denoise ? "denoise" : most == decode ? "decode" : "text_encode";
}

int64_t CogVideoXPipeline::work(const GenerationRequest& request) const {
  const LatentShape shape = latent_shape(parts_->transformer.config(), parts_->vae.config(), request);
  return latent_tokens(parts_->transformer.config(), shape) * request.num_inference_steps;
}

MemoryEstimate CogVideoXPipeline::estimate_memory(const GenerationRequest& request, int rank) const {
  const Parts& parts = *parts_;
  const CogVideoXConfig& transformer = parts.transformer.config();
  const LatentShape shape = latent_shape(transformer, parts.vae.config(), request);
  const int64_t prompts = request.guidance_scale > 1.0 ? 2 : 1;
  const int64_t element = int64_t(c10::elementSize(parts.options.dtype));
  const bool math = uses_math_attention(parts.options.attention, request.attention_backend);
  MemoryEstimate estimate;
  const T5Config& t5 = parts.text_config;
  const bool first = rank == 0, cpu = parts.options.device.is_cpu();
  if (first)
    estimate.text_encode = text_encode_bytes(t5, prompts, transformer.max_text_seq_length, math) +
                           streamed_text_block_bytes(t5, parts.options);
  if (parts.image_encoder)  // after the text encode, in the same phase
    estimate.text_encode = std::max(
        estimate.text_encode, image_encode_bytes(parts.vae.config(), request.height, request.width, element, cpu));
  estimate.denoise = denoise_bytes(transformer, shape, prompts, element, math,
                                   sage2_options(parts.options, request.attention_backend), parts.options.parallel);
  const int decoders = decode_ranks(parts.vae, parts.options, shape.height, shape.width);
  if (first || decoders > 1)
    estimate.decode = decode_bytes(parts.vae.config(), parts.options.vae, shape, element, cpu, size_t(decoders));
  return estimate;
}

}  // namespace sagevid
