#include "cogvideox_vae_layers.h"

#include "sagevid/models/join.h"
#include "sagevid/models/weights.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/silu.h>

#include <stdexcept>
#include <string>

namespace sagevid {
namespace {

// The decoder's layer shapes.
struct DecoderLoader : vae::LayerLoader {
  vae::SpatialNorm spatial_norm(const std::string& prefix, int64_t channels, int64_t latent, int64_t groups) {
    vae::SpatialNorm norm;
    norm.groups = groups;
    norm.norm_weight = get(prefix + ".norm_layer.weight", {channels});
    norm.norm_bias = get(prefix + ".norm_layer.bias", {channels});
    norm.y_weight = get(prefix + ".conv_y.conv.weight", {channels, latent, 1, 1, 1});
    norm.y_bias = get(prefix + ".conv_y.conv.bias", {channels});
    norm.b_weight = get(prefix + ".conv_b.conv.weight", {channels, latent, 1, 1, 1});
    norm.b_bias = get(prefix + ".conv_b.conv.bias", {channels});
    return norm;
  }
  vae::ResnetBlock resnet(const std::string& prefix, int64_t in, int64_t out, const CogVideoXVaeConfig& c) {
    vae::ResnetBlock block;
    block.norm1 = spatial_norm(prefix + ".norm1", in, c.latent_channels, c.norm_num_groups);
    block.conv1 = causal_conv(prefix + ".conv1", in, out, 3);
    block.norm2 = spatial_norm(prefix + ".norm2", out, c.latent_channels, c.norm_num_groups);
    block.conv2 = causal_conv(prefix + ".conv2", out, out, 3);
    if (in != out) {
      block.shortcut_weight = get(prefix + ".conv_shortcut.weight", {out, in, 1, 1, 1});
      block.shortcut_bias = get(prefix + ".conv_shortcut.bias", {out});
    }
    return block;
  }
};

void check_latents(const CogVideoXVaeConfig& c, const at::Tensor& latents) {
  if (latents.dim() != 5 || latents.size(1) != c.latent_channels || latents.size(2) < 1)
    throw std::invalid_argument("CogVideoX VAE decoder: latents must be [B, " + std::to_string(c.latent_channels) +
                                ", F, h, w] with F >= 1");
}

}  // namespace

CogVideoXVaeDecoder CogVideoXVaeDecoder::load(const std::filesystem::path& vae_dir, const at::TensorOptions& target) {
  CogVideoXVaeDecoder decoder;
  decoder.config_ = CogVideoXVaeConfig::load(vae_dir / "config.json");
  const CogVideoXVaeConfig& c = decoder.config_;
  DecoderLoader loader{{WeightLoader(vae_dir, target)}};
  auto w = std::make_shared<Weights>();
  const std::vector<int64_t> channels(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  w->conv_in = loader.causal_conv("decoder.conv_in", c.latent_channels, channels[0], 3);
  for (int i = 0; i < 2; ++i)
    w->mid.push_back(loader.resnet("decoder.mid_block.resnets." + std::to_string(i), channels[0], channels[0], c));
  int64_t time_doublings = 0;
  for (int64_t r = c.temporal_compression_ratio; r > 1; r /= 2) ++time_doublings;
  for (size_t i = 0; i < channels.size(); ++i) {
    const std::string prefix = "decoder.up_blocks." + std::to_string(i);
    vae::UpBlock block;
    for (int64_t j = 0; j <= c.layers_per_block; ++j)
      block.resnets.push_back(loader.resnet(prefix + ".resnets." + std::to_string(j),
                                            j == 0 ? channels[i > 0 ? i - 1 : 0] : channels[i], channels[i], c));
    if (i + 1 < channels.size()) {
      vae::Upsample up;
      up.weight = loader.get(prefix + ".upsamplers.0.conv.weight", {channels[i], channels[i], 3, 3});
      up.bias = loader.get(prefix + ".upsamplers.0.conv.bias", {channels[i]});
      up.compress_time = int64_t(i) < time_doublings;  // the first blocks double time, the rest only space
      block.upsampler = up;
    }
    w->up.push_back(std::move(block));
  }
  w->norm_out = loader.spatial_norm("decoder.norm_out", channels.back(), c.latent_channels, c.norm_num_groups);
  w->conv_out = loader.causal_conv("decoder.conv_out", channels.back(), c.out_channels, 3);
  w->cache_slots = loader.slots;
  // The checkpoint also holds the encoder, so WeightLoader::check_all_used does not apply: check the decoder's
  // own tensors instead (an extra one means the config describes a smaller decoder than the weights).
  const std::vector<std::string> extra = loader.weights.unused({"decoder."});
  if (!extra.empty())
    throw std::runtime_error(vae_dir.string() + ": the config has no place for " + std::to_string(extra.size()) +
                             " decoder tensor(s): " + join(extra, ", ", 5));
  decoder.weights_ = std::move(w);
  return decoder;
}

at::Tensor vae::decode_batch(const CogVideoXVaeDecoder::Weights& w, const at::Tensor& z, ConvCache& cache) {
  // Every norm is conditioned on this batch's latent frames z.
  at::Tensor x = causal_conv3d(w.conv_in, z, cache);
  for (const ResnetBlock& block : w.mid) x = resnet_block(block, x, z, cache);
  for (const UpBlock& up : w.up) {
    for (const ResnetBlock& block : up.resnets) x = resnet_block(block, x, z, cache);
    if (up.upsampler) x = upsample(*up.upsampler, x);
  }
  x = spatial_norm(w.norm_out, x, z);
  at::silu_(x);
  return causal_conv3d(w.conv_out, x, cache);
}

void CogVideoXVaeDecoder::decode_batches(const at::Tensor& latents,
                                         const std::function<void(const at::Tensor& frames)>& on_frames,
                                         const VaeDecodeOptions& options, const VaeTileShare* share) const {
  check_latents(config_, latents);
  const at::Tensor& reference = weights_->conv_in.weight;
  const at::Tensor z = latents.to(reference.device(), reference.scalar_type());
  // The first batch takes the remainder of the latent frames, so it decodes to 1 + 4k frames.
  if (options.frame_batch_size < 1) throw std::invalid_argument("CogVideoX VAE decoder: frame_batch_size must be >= 1");
  const auto batches = vae::frame_batches(z.size(2), options.frame_batch_size);
  // Tiled, every tile keeps its own conv cache, and each temporal batch is blended on its own (blending is per
  // frame), so tiled decoding streams too, giving diffusers' tiled_decode frames batch by batch. Untiled, the one
  // tile is the whole latent.
  const std::optional<vae::TileGrid> grid = vae::plan_tiles(config_, options, z.size(3), z.size(4));
  const size_t rows = grid ? grid->row_starts.size() : 1, cols = grid ? grid->col_starts.size() : 1;
  const size_t rank = share ? size_t(share->rank) : 0, ranks = share ? size_t(share->ranks) : 1;
  const vae::TileOwners owners = vae::share_tiles(grid, z.size(3), z.size(4), ranks);
  const std::vector<size_t>& owner = owners.owner;
  std::vector<ConvCache> caches(rows * cols, ConvCache{std::vector<at::Tensor>(size_t(weights_->cache_slots))});
  for (const auto& [begin, end] : batches) {
    const at::Tensor frames = z.narrow(2, begin, end - begin);
    std::vector<at::Tensor> decoded;  // this rank's tiles, in tile order
    for (size_t t = 0; t < owner.size(); ++t) {
      if (owner[t] != rank) continue;
      at::Tensor tile = frames;
      if (grid) {
        const int64_t top = grid->row_starts[t / cols], left = grid->col_starts[t % cols];
        tile = frames.narrow(3, top, std::min(grid->tile_latent_height, z.size(3) - top))
                   .narrow(4, left, std::min(grid->tile_latent_width, z.size(4) - left));
      }
      decoded.push_back(vae::decode_batch(*weights_, tile, caches[t]));
    }
    if (share) {
      const std::vector<std::vector<at::Tensor>> by_rank = share->gather(decoded, owners.most);
      if (rank != 0) continue;
      decoded.assign(owner.size(), at::Tensor());
      for (size_t t = 0; t < owner.size(); ++t) {
        const size_t place = owners.place[t];
        if (owner[t] >= by_rank.size() || place >= by_rank[owner[t]].size())
          throw std::logic_error("CogVideoX VAE decoder: a shared decode did not gather tile " + std::to_string(t));
        decoded[t] = by_rank[owner[t]][place];
      }
    }
    if (!grid) {
      on_frames(decoded.front());
      continue;
    }
    std::vector<std::vector<at::Tensor>> tiles(rows);
    for (size_t t = 0; t < rows * cols; ++t) tiles[t / cols].push_back(std::move(decoded[t]));
    on_frames(vae::blend_tiles(*grid, tiles));
  }
}

at::TensorOptions CogVideoXVaeDecoder::options() const { return weights_->conv_in.weight.options(); }

size_t CogVideoXVaeDecoder::tiles(int64_t latent_height, int64_t latent_width, const VaeDecodeOptions& options) const {
  const std::optional<vae::TileGrid> grid = vae::plan_tiles(config_, options, latent_height, latent_width);
  return grid ? grid->row_starts.size() * grid->col_starts.size() : 1;
}

at::Tensor CogVideoXVaeDecoder::decode(const at::Tensor& latents, const VaeDecodeOptions& options) const {
  std::vector<at::Tensor> parts;
  decode_batches(latents, [&](const at::Tensor& frames) { parts.push_back(frames); }, options);
  return parts.size() == 1 ? parts.front() : at::cat(parts, 2);
}

}  // namespace sagevid
