// CogVideoX's position and timestep tables: sinusoidal timestep projection, 3D sin-cos positions (2b) and the
// 3D rotary tables (5b, 1.5). Each follows diffusers' arithmetic step for step (same dtypes, same op order),
// so fp32 results agree to the last bits where the ops are the same kernels.
#include "cogvideox_transformer_parts.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/outer.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/reciprocal.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/sin.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace sagevid::cogvideox {
namespace {

// get_1d_sincos_pos_embed_from_grid: [M] positions -> [M, dim] = [sin | cos], frequencies in fp64.
at::Tensor sincos_1d(int64_t dim, const at::Tensor& positions) {
  at::Tensor omega = at::arange(dim / 2, positions.options().dtype(at::kDouble)) / (double(dim) / 2.0);
  omega = at::reciprocal(at::pow(10000.0, omega));
  const at::Tensor angles = at::outer(positions.reshape({-1}).to(at::kDouble), omega);
  return at::cat({at::sin(angles), at::cos(angles)}, 1);
}

// get_1d_rotary_pos_embed(use_real, repeat_interleave_real): [S] positions -> cos, sin [S, dim], each frequency
// repeated for the two halves of its pair. fp32 throughout, as diffusers.
std::pair<at::Tensor, at::Tensor> rotary_1d(int64_t dim, const at::Tensor& positions) {
  const at::Tensor freqs = at::reciprocal(at::pow(10000.0, at::arange(0, dim, 2, positions.options()) / double(dim)));
  const at::Tensor angles = at::outer(positions, freqs);
  return {at::repeat_interleave(at::cos(angles), 2, 1), at::repeat_interleave(at::sin(angles), 2, 1)};
}

// Python's round(): halves go to the even neighbour.
int64_t round_half_even(double x) { return int64_t(std::nearbyint(x)); }

}  // namespace

at::Tensor timestep_projection(const at::Tensor& timesteps, int64_t channels, bool flip_sin_to_cos, double freq_shift) {
  if (timesteps.dim() != 1) throw std::invalid_argument("timesteps must be 1-D, one per batch row");
  const int64_t half = channels / 2;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(timesteps.device());
  const at::Tensor exponent = at::arange(half, options) * -std::log(10000.0) / (double(half) - freq_shift);
  const at::Tensor angles = timesteps.unsqueeze(1).to(at::kFloat) * at::exp(exponent).unsqueeze(0);
  at::Tensor embedding = flip_sin_to_cos ? at::cat({at::cos(angles), at::sin(angles)}, -1)
                                         : at::cat({at::sin(angles), at::cos(angles)}, -1);
  if (channels % 2 == 1) embedding = at::constant_pad_nd(embedding, {0, 1});
  return embedding;
}

at::Tensor sincos_positions_3d(int64_t embed_dim, int64_t frames, int64_t height, int64_t width,
                               double spatial_interpolation_scale, double temporal_interpolation_scale,
                               const at::Device& device) {
  const auto fp32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const int64_t spatial_dim = 3 * embed_dim / 4, temporal_dim = embed_dim / 4;
  // Spatial: half the spatial width encodes the column (w), the other half the row (h); tokens row-major.
  const at::Tensor w = at::arange(width, fp32) / spatial_interpolation_scale;
  const at::Tensor h = at::arange(height, fp32) / spatial_interpolation_scale;
  const at::Tensor column = w.unsqueeze(0).expand({height, width});
  const at::Tensor row = h.unsqueeze(1).expand({height, width});
  const at::Tensor spatial = at::cat({sincos_1d(spatial_dim / 2, column), sincos_1d(spatial_dim / 2, row)}, 1);
  // Temporal: one row per frame.
  const at::Tensor temporal = sincos_1d(temporal_dim, at::arange(frames, fp32) / temporal_interpolation_scale);
  // [T, H*W, D] = [time | space], flattened to (t, h, w) token order.
  const at::Tensor table = at::cat({temporal.unsqueeze(1).expand({frames, height * width, temporal_dim}),
                                    spatial.unsqueeze(0).expand({frames, height * width, spatial_dim})},
                                   -1);
  return table.reshape({frames * height * width, embed_dim});
}

CropRegion resize_crop_region(int64_t grid_height, int64_t grid_width, int64_t base_width, int64_t base_height) {
  // Fit the grid's aspect ratio inside the base grid, then center it.
  int64_t resize_height = base_height, resize_width = base_width;
  if (double(grid_height) / double(grid_width) > double(base_height) / double(base_width))
    resize_width = round_half_even(double(base_height) / double(grid_height) * double(grid_width));
  else resize_height = round_half_even(double(base_width) / double(grid_width) * double(grid_height));
  CropRegion crop;
  crop.top = round_half_even(double(base_height - resize_height) / 2.0);
  crop.left = round_half_even(double(base_width - resize_width) / 2.0);
  crop.bottom = crop.top + resize_height;
  crop.right = crop.left + resize_width;
  return crop;
}

std::pair<at::Tensor, at::Tensor> rotary_tables(const CogVideoXConfig& config, int64_t frames, int64_t height,
                                                int64_t width, const at::Device& device) {
  const auto fp32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const int64_t p = config.patch_size;
  const int64_t grid_h = height / p, grid_w = width / p;
  at::Tensor positions_t, positions_h, positions_w;
  int64_t token_frames = frames;
  if (!config.patch_size_t) {
    // 1.0: positions spread over the crop region of the base grid (sample size / patch), so a grid of another
    // aspect ratio still spans the positions the model was trained on. Python's int/float arithmetic kept.
    const CropRegion crop = resize_crop_region(grid_h, grid_w, config.sample_width / p, config.sample_height / p);
    positions_h = at::linspace(double(crop.top), double(crop.bottom * (grid_h - 1)) / double(grid_h), grid_h, fp32);
    positions_w = at::linspace(double(crop.left), double(crop.right * (grid_w - 1)) / double(grid_w), grid_w, fp32);
    positions_t = at::linspace(0.0, double(frames * (frames - 1)) / double(frames), frames, fp32);
  } else {
    // 1.5: plain integer positions; frames are patched in groups of patch_size_t. (diffusers slices a table
    // of the base grid's size, so it fails beyond it; integer positions extend it instead.)
    token_frames = (frames + *config.patch_size_t - 1) / *config.patch_size_t;
    positions_h = at::arange(grid_h, fp32);
    positions_w = at::arange(grid_w, fp32);
    positions_t = at::arange(token_frames, fp32);
  }
  const int64_t head_dim = config.attention_head_dim;
  const int64_t dim_t = head_dim / 4, dim_hw = head_dim / 8 * 3;
  const auto [cos_t, sin_t] = rotary_1d(dim_t, positions_t);
  const auto [cos_h, sin_h] = rotary_1d(dim_hw, positions_h);
  const auto [cos_w, sin_w] = rotary_1d(dim_hw, positions_w);
  // Each head is [time | row | column] frequencies; tokens in (t, h, w) order.
  const auto combine = [&](const at::Tensor& t, const at::Tensor& h, const at::Tensor& w) {
    return at::cat({t.view({token_frames, 1, 1, dim_t}).expand({token_frames, grid_h, grid_w, dim_t}),
                    h.view({1, grid_h, 1, dim_hw}).expand({token_frames, grid_h, grid_w, dim_hw}),
                    w.view({1, 1, grid_w, dim_hw}).expand({token_frames, grid_h, grid_w, dim_hw})},
                   -1)
        .reshape({token_frames * grid_h * grid_w, head_dim});
  };
  return {combine(cos_t, cos_h, cos_w), combine(sin_t, sin_h, sin_w)};
}

}  // namespace sagevid::cogvideox
