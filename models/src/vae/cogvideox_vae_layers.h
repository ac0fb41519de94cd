#pragma once
// The CogVideoX VAE decoder's layers as plain structs of weights plus free forward functions (private to
// sagevid_models; the public face is sagevid/models/cogvideox_vae.h).
#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/weights.h"

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sagevid {

// The last (kernel_t - 1) frames of each causal convolution's temporally padded input, carried from one
// temporal batch into the next. One slot per convolution with a temporal kernel > 1; undefined before the
// first batch (the convolution then repeats its first frame instead).
struct CogVideoXVaeDecoder::ConvCache {
  std::vector<at::Tensor> frames;
};

namespace vae {

using ConvCache = CogVideoXVaeDecoder::ConvCache;

// A 3D convolution, causal in time: padded on the past side only, spatially "same". Kernels are cubes.
struct CausalConv3d {
  at::Tensor weight, bias;  // [out, in, k, k, k], [out]
  int slot = -1;            // its ConvCache slot, -1 for k == 1
};
at::Tensor causal_conv3d(const CausalConv3d& conv, const at::Tensor& x, ConvCache& cache);

// WeightLoader plus the conv-cache slot numbering: what the decoder's and the encoder's loaders share.
struct LayerLoader {
  WeightLoader weights;
  int slots = 0;

  at::Tensor get(const std::string& name, at::IntArrayRef shape) { return weights.get(name, shape); }
  // A causal convolution's weights; one with a temporal kernel > 1 takes the next cache slot.
  CausalConv3d causal_conv(const std::string& prefix, int64_t in, int64_t out, int64_t kernel) {
    CausalConv3d conv;
    conv.weight = get(prefix + ".conv.weight", {out, in, kernel, kernel, kernel});
    conv.bias = get(prefix + ".conv.bias", {out});
    if (kernel > 1) conv.slot = slots++;
    return conv;
  }
};

// conv3d without padding in time, run in temporal chunks when the input is large (diffusers'
// CogVideoXSafeConv3d: same result, bounded workspace). limit_gib: its 2 GiB threshold, lowered by tests.
at::Tensor safe_conv3d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t spatial_padding,
                       double limit_gib = 2);

// Group norm of f scaled and shifted per position by 1x1x1 convolutions of the latent zq, resized (nearest)
// to f's size; the first frame is resized on its own when f's frame count is odd (1 + 4k layout).
struct SpatialNorm {
  at::Tensor norm_weight, norm_bias;  // [C]
  at::Tensor y_weight, y_bias;        // conv_y: [C, latent, 1, 1, 1], [C]
  at::Tensor b_weight, b_bias;        // conv_b
  int64_t groups = 32;
};
at::Tensor spatial_norm(const SpatialNorm& norm, const at::Tensor& f, const at::Tensor& zq);

struct ResnetBlock {
  SpatialNorm norm1, norm2;
  CausalConv3d conv1, conv2;
  at::Tensor shortcut_weight, shortcut_bias;  // 1x1x1, only when the channel count changes
};
at::Tensor resnet_block(const ResnetBlock& block, const at::Tensor& x, const at::Tensor& zq, ConvCache& cache);

// Nearest 2x upsampling, in time too when compress_time (keeping a lone first frame alone), then a per-frame
// 3x3 convolution.
struct Upsample {
  at::Tensor weight, bias;  // Conv2d [C, C, 3, 3], [C]
  bool compress_time = false;
};
at::Tensor upsample(const Upsample& up, const at::Tensor& x);

struct UpBlock {
  std::vector<ResnetBlock> resnets;
  std::optional<Upsample> upsampler;  // all blocks but the last
};

}  // namespace vae

struct CogVideoXVaeDecoder::Weights {
  vae::CausalConv3d conv_in;
  std::vector<vae::ResnetBlock> mid;
  std::vector<vae::UpBlock> up;
  vae::SpatialNorm norm_out;
  vae::CausalConv3d conv_out;
  int cache_slots = 0;
};

namespace vae {

// The decoder on one temporal batch of latent frames z [B, C, f, h, w], continuing from cache.
at::Tensor decode_batch(const CogVideoXVaeDecoder::Weights& weights, const at::Tensor& z, ConvCache& cache);

// diffusers' tiled_decode layout: overlapping latent tiles decoded separately, then each blended into its
// upper and left neighbours (linear ramps over blend pixels) and cropped to the row limit.
struct TileGrid {
  int64_t tile_latent_height = 0, tile_latent_width = 0;
  std::vector<int64_t> row_starts, col_starts;  // latent offsets of the tiles
  int64_t blend_height = 0, blend_width = 0;    // pixels
  int64_t limit_height = 0, limit_width = 0;    // pixels kept of each blended tile
};
// Throws std::invalid_argument when tiling is on with tiles that cannot work: no stride, or a stride that is not
// the part of each tile kept (frames of the wrong size). The defaults always work.
void check_tiling(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options);
// nullopt when tiling is off or the latent fits in one tile (diffusers then decodes it whole); throws as
// check_tiling.
std::optional<TileGrid> plan_tiles(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options,
                                   int64_t latent_height, int64_t latent_width);
// Which of `ranks` decodes each tile (row-major) of a latent h x w: by area, largest first (edge tiles are cut at the
// border), each to the rank with the least area so far, ties to the lower rank and the earlier tile. No grid: the
// one tile is rank 0's.
struct TileOwners {
  std::vector<size_t> owner;  // tile t's rank
  std::vector<size_t> place;  // tile t's place among its rank's tiles, which a rank takes in tile order
  std::vector<int64_t> area;  // each rank's latent pixels
  int64_t most = 0;           // the most tiles a rank holds
};
TileOwners share_tiles(const std::optional<TileGrid>& grid, int64_t latent_height, int64_t latent_width, size_t ranks);
// tiles[row][col]: decoded tiles of the same frames; blended in place (in diffusers' order, so each tile blends
// with its already-blended neighbours) and assembled into one frame batch.
at::Tensor blend_tiles(const TileGrid& grid, std::vector<std::vector<at::Tensor>>& tiles);

// ---- Encoder layers (CogVideoXEncoder3D); they share CausalConv3d, safe_conv3d and the ConvCache above. ----

struct GroupNorm {
  at::Tensor weight, bias;  // [C]
  int64_t groups = 32;
  double eps = 1e-6;
};

// Like ResnetBlock, with plain group norms (the encoder has no latent to condition on).
struct EncoderResnetBlock {
  GroupNorm norm1, norm2;
  CausalConv3d conv1, conv2;
  at::Tensor shortcut_weight, shortcut_bias;  // 1x1x1, only when the channel count changes
};
at::Tensor encoder_resnet_block(const EncoderResnetBlock& block, const at::Tensor& x, ConvCache& cache);

// Frame pairs averaged when compress_time (a lone first frame of an odd count kept alone: 1 + 2k -> 1 + k), then
// a per-frame 3x3 stride-2 convolution after zero padding one column right and one row below.
struct Downsample {
  at::Tensor weight, bias;  // Conv2d [C, C, 3, 3], [C]
  bool compress_time = false;
};
at::Tensor downsample(const Downsample& down, const at::Tensor& x);

struct DownBlock {
  std::vector<EncoderResnetBlock> resnets;
  std::optional<Downsample> downsampler;  // all blocks but the last
};

}  // namespace vae

struct CogVideoXVaeEncoder::Weights {
  vae::CausalConv3d conv_in;
  std::vector<vae::DownBlock> down;
  std::vector<vae::EncoderResnetBlock> mid;
  vae::GroupNorm norm_out;
  vae::CausalConv3d conv_out;                 // to 2 * latent_channels: mean and log-variance
  at::Tensor quant_weight, quant_bias;        // quant_conv (1x1x1), when the config asks for it
  int cache_slots = 0;
};

namespace vae {

// How the decoder and the encoder split their work as diffusers does (cogvideox_vae_work_split.cpp).
// Temporal batches of `frames` frames, batch_size each, the first taking the remainder too (13 latent frames
// by 2: 3, 2, 2, 2, 2, 2; 49 input frames by 8: 9, 8, 8, 8, 8, 8), as [begin, end) pairs; batch_size >= 1.
std::vector<std::pair<int64_t, int64_t>> frame_batches(int64_t frames, int64_t batch_size);
// Where the tiles along one axis of `size` start: 0, stride, 2·stride, ... below size.
std::vector<int64_t> tile_starts(int64_t size, int64_t stride);

// The encoder (and quant_conv) on one temporal batch of input frames x [B, 3, t, H, W], continuing from cache;
// returns the 2C moments of that batch's latent frames.
at::Tensor encode_batch(const CogVideoXVaeEncoder::Weights& weights, const at::Tensor& x, ConvCache& cache);

// diffusers' tiled_encode layout: overlapping pixel tiles (starts at the stride, which the overlap factors set in
// pixels) encoded separately, then blended and cropped by blend_tiles with extents counted in latents.
struct EncodeTileGrid {
  int64_t tile_height = 0, tile_width = 0;      // pixels
  std::vector<int64_t> row_starts, col_starts;  // pixel offsets of the tiles
  TileGrid blending;                            // only blend_* and limit_* are used, in latents
};
// nullopt when tiling is off or the video fits in one tile (diffusers then encodes it whole).
std::optional<EncodeTileGrid> plan_encode_tiles(const CogVideoXVaeConfig& config, const VaeEncodeOptions& options,
                                                int64_t height, int64_t width);

}  // namespace vae
}  // namespace sagevid
