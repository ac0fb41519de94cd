#pragma once
// The decoder half of CogVideoX's 3D VAE (diffusers' AutoencoderKLCogVideoX): latents [B, C, F, h, w] to video
// [B, 3, T, 8h, 8w] with T = 4F - 3 for odd F (13 -> 49: the 4x temporal compression keeps the first frame
// alone) and 4F for even F.
// Causal 3D convolutions (past-side temporal padding), spatial norms conditioned on the latent, nearest
// upsampling. Latent frames are decoded in small temporal batches, each convolution carrying the last frames
// of its input (the conv cache) into the next batch, so memory stays bounded and frames can be streamed.
// Optional spatial tiling with overlap blending (diffusers' tiled_decode) bounds memory at large sizes.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

namespace sagevid {

struct CogVideoXVaeConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 16;
  std::vector<int64_t> block_out_channels{128, 256, 256, 512};
  int64_t layers_per_block = 3;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-6;  // only the encoder's plain group norms use it; the decoder's spatial norms fix 1e-6
  int64_t temporal_compression_ratio = 4;
  int64_t sample_height = 480;  // the default tile size is half of these
  int64_t sample_width = 720;
  double scaling_factor = 1.15258426;
  bool use_quant_conv = false;
  bool use_post_quant_conv = false;

  // Reads vae/config.json with diffusers' class defaults; unknown keys are ignored.
  static CogVideoXVaeConfig load(const std::filesystem::path& config_json);
  int64_t spatial_compression() const { return int64_t(1) << (block_out_channels.size() - 1); }
};

struct VaeDecodeOptions {
  // Spatial tiling (diffusers' enable_tiling): used only where the latent is larger than one tile.
  bool tiling = false;
  int64_t tile_sample_min_height = 0;  // pixels; 0: sample_height / 2 as diffusers
  int64_t tile_sample_min_width = 0;   // pixels; 0: sample_width / 2
  double tile_overlap_factor_height = 1.0 / 6;
  double tile_overlap_factor_width = 1.0 / 5;
  // Latent frames per temporal batch. diffusers fixes 2: the VAE was trained on that context, other values
  // change the result.
  int64_t frame_batch_size = 2;
};

// A tiled decode shared by a parallel plan's ranks. The tiles are shared out by area (largest first, each to the
// rank with the least area so far), the same on every rank. `gather` takes this rank's decoded tiles of a batch (in
// tile order) and the most tiles any rank decodes, and returns, on rank 0, every rank's tiles, rank by rank (on the
// other ranks its result is not used). Every rank calls it once a batch (a collective); rank 0 alone blends and
// delivers the frames.
struct VaeTileShare {
  int rank = 0, ranks = 1;
  std::function<std::vector<std::vector<at::Tensor>>(const std::vector<at::Tensor>& mine, int64_t most)> gather;
};

class CogVideoXVaeDecoder {
 public:
  // vae_dir: the vae/ folder (config.json and the safetensors checkpoint, which may also hold the encoder's
  // tensors; decoder tensors the config has no place for are an error).
  static CogVideoXVaeDecoder load(const std::filesystem::path& vae_dir, const at::TensorOptions& target);

  // latents [B, C, F, h, w], already divided by scaling_factor (any device/dtype; run in the weights').
  // Returns the whole video [B, 3, T, 8h, 8w] in the weights' dtype, nominally in [-1, 1] but not clamped,
  // exactly as diffusers' vae.decode(z).sample.
  at::Tensor decode(const at::Tensor& latents, const VaeDecodeOptions& options = {}) const;
  // The same frames delivered temporal batch by temporal batch (with frame_batch_size 2: 9 frames first for odd
  // F, then 8 per batch), so a server can encode/stream while the rest decodes. Concatenated along dim 2 they
  // equal decode(). With tiling each batch is decoded tile by tile and blended before it is delivered.
  // With `share`, the tiles are shared out as VaeTileShare says, and on_frames runs on rank 0 alone.
  void decode_batches(const at::Tensor& latents, const std::function<void(const at::Tensor& frames)>& on_frames,
                      const VaeDecodeOptions& options = {}, const VaeTileShare* share = nullptr) const;
  // The tiles a decode of latents [.., h, w] makes under `options`: 1 where tiling is off or one tile covers them.
  size_t tiles(int64_t latent_height, int64_t latent_width, const VaeDecodeOptions& options) const;

  float scaling_factor() const { return float(config_.scaling_factor); }
  const CogVideoXVaeConfig& config() const { return config_; }
  at::TensorOptions options() const;  // the device and dtype it decodes in: its weights'

  struct Weights;  // the decoder's layers, defined in cogvideox_vae_layers.h
  struct ConvCache;

 private:
  CogVideoXVaeConfig config_;
  std::shared_ptr<const Weights> weights_;
};

// The encoder half (diffusers' AutoencoderKLCogVideoX.encode): video [B, 3, T, H, W] to the latent distribution
// [B, C, F, H/8, W/8] with F = 1 + (T - 1)/4 for T = 1 + 4k (49 -> 13) and T/4 for T = 4k. Causal 3D
// convolutions, plain group norms, downsamplers that halve space and (in the first blocks) time, a lone first
// frame kept alone. Input frames are encoded in temporal batches of 8 (the first takes the remainder: 49 ->
// 9, 8, 8, ...) with the conv cache carried between batches; optional spatial tiling with overlap blending.
struct VaeEncodeOptions {
  // Spatial tiling (diffusers' enable_tiling + tiled_encode): used only where the video is larger than one tile.
  bool tiling = false;
  int64_t tile_sample_min_height = 0;  // pixels; 0: sample_height / 2 as diffusers
  int64_t tile_sample_min_width = 0;   // pixels; 0: sample_width / 2
  double tile_overlap_factor_height = 1.0 / 6;
  double tile_overlap_factor_width = 1.0 / 5;
  // Input frames per temporal batch. diffusers fixes 8 (num_sample_frames_batch_size).
  int64_t frame_batch_size = 8;
};

// diffusers' DiagonalGaussianDistribution over the unscaled latents: the encoder's 2C output channels split into
// mean and log-variance (clamped to [-30, 20]).
struct VaeLatentDistribution {
  at::Tensor mean;    // [B, C, F, h, w], the mode
  at::Tensor logvar;  // same shape

  const at::Tensor& mode() const { return mean; }
  at::Tensor stddev() const;
  // mean + std * noise, the noise drawn as diffusers' randn_tensor does: N(0, 1) in mean's dtype on the
  // generator's device (a CPU generator gives torch.randn's numbers for the same seed), then moved to mean's
  // device. A CUDA generator for CPU latents is an error.
  at::Tensor sample(at::Generator generator) const;
};

class CogVideoXVaeEncoder {
 public:
  // vae_dir: the vae/ folder; the encoder's tensors are checked like the decoder's (a config/weights mismatch
  // names the tensor).
  static CogVideoXVaeEncoder load(const std::filesystem::path& vae_dir, const at::TensorOptions& target);

  // video [B, in_channels, T, H, W] in [-1, 1] (any device/dtype; run in the weights'), T = 1 + 4k or 4k
  // (k >= 1; 1 for an image) for the usual temporal_compression_ratio 4, H and W multiples of 8. The latents are
  // NOT multiplied by scaling_factor: diffusers' image-to-video and video-to-video pipelines take
  // latent_dist.sample(generator) (not the mode) and multiply it by scaling_factor() themselves; where the vae
  // config sets invert_scale_latents, the image-to-video pipeline divides the image latents by it instead.
  VaeLatentDistribution encode(const at::Tensor& video, const VaeEncodeOptions& options = {}) const;

  float scaling_factor() const { return float(config_.scaling_factor); }
  bool invert_scale_latents() const { return invert_scale_latents_; }
  const CogVideoXVaeConfig& config() const { return config_; }

  struct Weights;  // the encoder's layers, defined in cogvideox_vae_layers.h

 private:
  CogVideoXVaeConfig config_;
  bool invert_scale_latents_ = false;
  std::shared_ptr<const Weights> weights_;
};

}  // namespace sagevid
