#pragma once
// Internals of the CogVideoX transformer shared by its source files (and white-box tests): the position and
// timestep tables. Each mirrors one diffusers function; the comments name it.
#include "sagevid/models/cogvideox_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>

namespace sagevid::cogvideox {

// get_timestep_embedding: [B] timesteps (any numeric dtype) -> [B, channels] fp32 sinusoids, cos first when
// flip_sin_to_cos, on the timesteps' device.
at::Tensor timestep_projection(const at::Tensor& timesteps, int64_t channels, bool flip_sin_to_cos, double freq_shift);

// CogVideoXPatchEmbed's sin-cos table for a grid of frames x height x width patches: [T*H*W, embed_dim] fp64
// on `device`, tokens in (t, h, w) order. A quarter of the width encodes time, the rest space.
at::Tensor sincos_positions_3d(int64_t embed_dim, int64_t frames, int64_t height, int64_t width,
                               double spatial_interpolation_scale, double temporal_interpolation_scale,
                               const at::Device& device);

// The pipeline's resize-and-center-crop of a patch grid onto the base grid (get_resize_crop_region_for_grid),
// Python's round-half-to-even included.
struct CropRegion {
  int64_t top = 0, left = 0, bottom = 0, right = 0;
};
CropRegion resize_crop_region(int64_t grid_height, int64_t grid_width, int64_t base_width, int64_t base_height);

// The rotary tables the pipeline passes for latents of frames x height x width (latent pixels):
// cos, sin [N_video, attention_head_dim] fp32 on `device`, computed there as the pipeline does
// (get_3d_rotary_pos_embed; 1.0 "linspace" grid over the crop region, 1.5 "slice" grid of integer positions).
std::pair<at::Tensor, at::Tensor> rotary_tables(const CogVideoXConfig& config, int64_t frames, int64_t height,
                                                int64_t width, const at::Device& device);

}  // namespace sagevid::cogvideox
