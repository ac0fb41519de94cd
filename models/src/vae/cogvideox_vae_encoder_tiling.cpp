// Spatial tiling for the CogVideoX VAE encoder, with diffusers' tiled_encode geometry (blending: blend_tiles).
#include "cogvideox_vae_layers.h"

#include <stdexcept>
#include <string>

namespace sagevid::vae {

std::optional<EncodeTileGrid> plan_encode_tiles(const CogVideoXVaeConfig& config, const VaeEncodeOptions& options,
                                                int64_t height, int64_t width) {
  if (!options.tiling) return std::nullopt;
  EncodeTileGrid grid;
  grid.tile_height = options.tile_sample_min_height > 0 ? options.tile_sample_min_height : config.sample_height / 2;
  grid.tile_width = options.tile_sample_min_width > 0 ? options.tile_sample_min_width : config.sample_width / 2;
  if (height <= grid.tile_height && width <= grid.tile_width) return std::nullopt;
  // The same double arithmetic and truncation as diffusers' int(...), so the grid matches to the pixel. Unlike
  // tiled_decode, the stride is in pixels and the blend and crop in latents.
  const int64_t stride_height = int64_t(double(grid.tile_height) * (1 - options.tile_overlap_factor_height));
  const int64_t stride_width = int64_t(double(grid.tile_width) * (1 - options.tile_overlap_factor_width));
  if (stride_height < 1 || stride_width < 1 || grid.tile_height < config.spatial_compression() ||
      grid.tile_width < config.spatial_compression())
    throw std::invalid_argument("CogVideoX VAE tiling: tiles of " + std::to_string(grid.tile_height) + "x" +
                                std::to_string(grid.tile_width) +
                                " pixels are smaller than a latent or leave no stride at these overlap factors; "
                                "use larger tiles");
  grid.row_starts = tile_starts(height, stride_height);
  grid.col_starts = tile_starts(width, stride_width);
  TileGrid& blending = grid.blending;
  blending.tile_latent_height = grid.tile_height / config.spatial_compression();
  blending.tile_latent_width = grid.tile_width / config.spatial_compression();
  blending.blend_height = int64_t(double(blending.tile_latent_height) * options.tile_overlap_factor_height);
  blending.blend_width = int64_t(double(blending.tile_latent_width) * options.tile_overlap_factor_width);
  blending.limit_height = blending.tile_latent_height - blending.blend_height;
  blending.limit_width = blending.tile_latent_width - blending.blend_width;
  return grid;
}

}  // namespace sagevid::vae
