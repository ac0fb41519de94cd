// How the CogVideoX VAE splits its work, shared by the decoder and the encoder: diffusers' temporal frame
// batches and the starts of its spatial tiles.
#include "cogvideox_vae_layers.h"

#include <algorithm>

namespace sagevid::vae {

std::vector<std::pair<int64_t, int64_t>> frame_batches(int64_t frames, int64_t batch_size) {
  const int64_t count = std::max<int64_t>(frames / batch_size, 1), remainder = frames % batch_size;
  std::vector<std::pair<int64_t, int64_t>> batches;  // [begin, end)
  for (int64_t i = 0; i < count; ++i)
    batches.emplace_back(batch_size * i + (i == 0 ? 0 : remainder), std::min(batch_size * (i + 1) + remainder, frames));
  return batches;
}

std::vector<int64_t> tile_starts(int64_t size, int64_t stride) {
  std::vector<int64_t> values;
  for (int64_t start = 0; start < size; start += stride) values.push_back(start);
  return values;
}

}  // namespace sagevid::vae
