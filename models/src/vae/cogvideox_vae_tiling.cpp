// Spatial tiling for the CogVideoX VAE decoder, with diffusers' tiled_decode geometry and blending.
#include "cogvideox_vae_layers.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace sagevid::vae {
namespace {

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

namespace {

// One side of the tile layout, with diffusers' double arithmetic and int(...) truncation so the grid matches to the
// pixel: the tile and its stride in latents, the blend ramp and the part of each tile kept, in pixels.
struct TileSide {
  int64_t latent = 0, stride = 0, blend = 0, limit = 0;
};

// requested: pixels, 0 for the default (half the VAE's sample size). The stride must be the kept part, or the
// blended frame comes out larger or smaller than the video (diffusers' tiled_decode does not check).
TileSide tile_side(int64_t requested, int64_t sample_size, double overlap, int64_t factor, const char* what) {
  const int64_t pixels = requested > 0 ? requested : sample_size / 2;
  TileSide side;
  side.latent = pixels / factor;
  side.stride = int64_t(double(side.latent) * (1 - overlap));
  side.blend = int64_t(double(pixels) * overlap);
  side.limit = pixels - side.blend;
  const std::string tile =
      std::string("a tile ") + what + " of " + std::to_string(pixels) + " px at overlap " + std::to_string(overlap);
  if (side.stride < 1)
    throw std::invalid_argument("CogVideoX VAE tiling: " + tile + " leaves no stride; use larger tiles");
  if (side.stride * factor != side.limit)
    throw std::invalid_argument("CogVideoX VAE tiling: " + tile + " steps " + std::to_string(side.stride * factor) +
                                " px but keeps " + std::to_string(side.limit) +
                                " px of each tile, so the tiles would not fit together (the default tiles do)");
  return side;
}

TileSide height_side(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options) {
  return tile_side(options.tile_sample_min_height, config.sample_height, options.tile_overlap_factor_height,
                   config.spatial_compression(), "height");
}

TileSide width_side(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options) {
  return tile_side(options.tile_sample_min_width, config.sample_width, options.tile_overlap_factor_width,
                   config.spatial_compression(), "width");
}

}  // namespace

void check_tiling(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options) {
  if (!options.tiling) return;
  height_side(config, options);
  width_side(config, options);
}

std::optional<TileGrid> plan_tiles(const CogVideoXVaeConfig& config, const VaeDecodeOptions& options,
                                   int64_t latent_height, int64_t latent_width) {
  if (!options.tiling) return std::nullopt;
  const TileSide height = height_side(config, options), width = width_side(config, options);
  if (latent_height <= height.latent && latent_width <= width.latent) return std::nullopt;
  TileGrid grid;
  grid.tile_latent_height = height.latent;
  grid.tile_latent_width = width.latent;
  grid.row_starts = tile_starts(latent_height, height.stride);
  grid.col_starts = tile_starts(latent_width, width.stride);
  grid.blend_height = height.blend;
  grid.blend_width = width.blend;
  grid.limit_height = height.limit;
  grid.limit_width = width.limit;
  return grid;
}

TileOwners share_tiles(const std::optional<TileGrid>& grid, int64_t latent_height, int64_t latent_width, size_t ranks) {
  const size_t cols = grid ? grid->col_starts.size() : 1, count = grid ? grid->row_starts.size() * cols : 1;
  std::vector<int64_t> area(count, latent_height * latent_width);
  for (size_t t = 0; grid && t < count; ++t)
    area[t] = std::min(grid->tile_latent_height, latent_height - grid->row_starts[t / cols]) *
              std::min(grid->tile_latent_width, latent_width - grid->col_starts[t % cols]);
  std::vector<size_t> order(count);
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return area[a] > area[b]; });
  TileOwners owners{std::vector<size_t>(count), std::vector<size_t>(count), std::vector<int64_t>(ranks, 0), 0};
  for (size_t t : order) {
    const size_t rank = size_t(std::min_element(owners.area.begin(), owners.area.end()) - owners.area.begin());
    owners.owner[t] = rank;
    owners.area[rank] += area[t];
  }
  std::vector<int64_t> held(ranks, 0);
  for (size_t t = 0; t < count; ++t) {
    owners.place[t] = size_t(held[owners.owner[t]]++);
    owners.most = std::max(owners.most, held[owners.owner[t]]);
  }
  return owners;
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
