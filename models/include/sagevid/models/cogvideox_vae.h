#pragma once
// The decoder half of CogVideoX's 3D VAE (diffusers' AutoencoderKLCogVideoX): latents [B, C, F, h, w] to video
// [B, 3, T, 8h, 8w] with T = 4F - 3 for odd F (13 -> 49: the 4x temporal compression keeps the first frame
// alone) and 4F for even F.
// Causal 3D convolutions (past-side temporal padding), spatial norms conditioned on the latent, nearest
// upsampling. Latent frames are decoded in small temporal batches, each convolution carrying the last frames
// of its input (the conv cache) into the next batch, so memory stays bounded and frames can be streamed.
// Optional spatial tiling with overlap blending (diffusers' tiled_decode) bounds memory at large sizes.
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
  void decode_batches(const at::Tensor& latents, const std::function<void(const at::Tensor& frames)>& on_frames,
                      const VaeDecodeOptions& options = {}) const;

  float scaling_factor() const { return float(config_.scaling_factor); }
  const CogVideoXVaeConfig& config() const { return config_; }

  struct Weights;  // the decoder's layers, defined in cogvideox_vae_layers.h
  struct ConvCache;

 private:
  CogVideoXVaeConfig config_;
  std::shared_ptr<const Weights> weights_;
};

}  // namespace sagevid
