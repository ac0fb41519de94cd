// Spatial tiling for the CogVideoX VAE decoder, with diffusers' tiled_decode geometry and blending.
#include "cogvideox_vae_layers.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>

#include <algorithm>
#include <stdexcept>

namespace sagevid::vae {
namespace {

std::vector<int64_t> starts(int64_t size, int64_t stride) {
  std::vector<int64_t> values;
  for (int64_t start = 0; start < size; start += stride) values.push_back(start);
  return values;
}

// b's first `extent` rows/columns along dim become a linear ramp from a's last ones (weight 1 - k/extent on a,
// k/extent on b for k = 0..extent-1), written into b in place.
void blend(const at::Tensor& a, at::Tensor& b, int64_t dim, int64_t extent) {
  extent = std::min({a.size(dim), b.size(dim), extent});
  if (extent <= 0) return;
  // The ramp in fp32 (the precision diffusers' Python-float weights get), shaped to broadcast along dim.
  at::Tensor ramp = at::arange(extent, at::TensorOptions().dtype(at::kDouble).device(b.device())) / double(extent);
  if (dim == 3) ramp = ramp.unsqueeze(1);
  const at::Tensor to_b = ramp.to(at::kFloat), to_a = (1.0 - ramp).to(at::kFloat);
  at::Tensor head = b.narrow(dim, 0, extent);
  head.copy_(a.narrow(dim, a.size(dim) - extent, extent) * to_a + head * to_b);
}

}  // namespace

std::optional<TileGrid> plan_tiles(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options,
                                   int64_t latent_height, int64_t latent_width) {
  if (!options.tiling) return std::nullopt;
  const int64_t sample_height = options.tile_sample_min_height > 0 ? options.tile_sample_min_height : config.sample_height / 2;
  const int64_t sample_width = options.tile_sample_min_width > 0 ? options.tile_sample_min_width : config.sample_width / 2;
  TileGrid grid;
  grid.tile_latent_height = sample_height / config.spatial_compression();
  grid.tile_latent_width = sample_width / config.spatial_compression();
  if (latent_height <= grid.tile_latent_height && latent_width <= grid.tile_latent_width) return std::nullopt;
  // Same double arithmetic and truncation as diffusers' int(...), so the grid matches to the pixel.
  const int64_t stride_height = int64_t(double(grid.tile_latent_height) * (1 - options.tile_overlap_factor_height));
  const int64_t stride_width = int64_t(double(grid.tile_latent_width) * (1 - options.tile_overlap_factor_width));
  if (stride_height < 1 || stride_width < 1)
    throw std::invalid_argument("CogVideoX VAE tiling: tiles of " + std::to_string(grid.tile_latent_height) + "x" +
                                std::to_string(grid.tile_latent_width) +
                                " latents leave no stride at these overlap factors; use larger tiles");
  grid.row_starts = starts(latent_height, stride_height);
  grid.col_starts = starts(latent_width, stride_width);
  grid.blend_height = int64_t(double(sample_height) * options.tile_overlap_factor_height);
  grid.blend_width = int64_t(double(sample_width) * options.tile_overlap_factor_width);
  grid.limit_height = sample_height - grid.blend_height;
  grid.limit_width = sample_width - grid.blend_width;
  return grid;
}

at::Tensor blend_tiles(const TileGrid& grid, std::vector<std::vector<at::Tensor>>& tiles) {
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < tiles.size(); ++i) {
    std::vector<at::Tensor> row;
    for (size_t j = 0; j < tiles[i].size(); ++j) {
      at::Tensor& tile = tiles[i][j];
      if (i > 0) blend(tiles[i - 1][j], tile, 3, grid.blend_height);
      if (j > 0) blend(tiles[i][j - 1], tile, 4, grid.blend_width);
      row.push_back(tile.narrow(3, 0, std::min(grid.limit_height, tile.size(3)))
                        .narrow(4, 0, std::min(grid.limit_width, tile.size(4))));
    }
    rows.push_back(at::cat(row, 4));
  }
  return at::cat(rows, 3);
}

}  // namespace sagevid::vae
