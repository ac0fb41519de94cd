// CogVideoX VAE encoder: loading, diffusers' temporal frame batches and tiles, and the latent distribution.
#include "cogvideox_vae_layers.h"

#include "sagevid/kernels/shape_string.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/join.h"
#include "sagevid/models/weights.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/randn.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace sagevid {
namespace {

// The encoder's layer shapes: every causal convolution of the encoder has a 3x3x3 kernel.
struct EncoderLoader : vae::LayerLoader {
  vae::CausalConv3d causal_conv(const std::string& prefix, int64_t in, int64_t out) {
    return LayerLoader::causal_conv(prefix, in, out, 3);
  }
  vae::GroupNorm group_norm(const std::string& prefix, int64_t channels, int64_t groups, double eps) {
    return {get(prefix + ".weight", {channels}), get(prefix + ".bias", {channels}), groups, eps};
  }
  vae::EncoderResnetBlock resnet(const std::string& prefix, int64_t in, int64_t out, const CogVideoXVaeConfig& c) {
    vae::EncoderResnetBlock block;
    block.norm1 = group_norm(prefix + ".norm1", in, c.norm_num_groups, c.norm_eps);
    block.conv1 = causal_conv(prefix + ".conv1", in, out);
    block.norm2 = group_norm(prefix + ".norm2", out, c.norm_num_groups, c.norm_eps);
    block.conv2 = causal_conv(prefix + ".conv2", out, out);
    if (in != out) {
      block.shortcut_weight = get(prefix + ".conv_shortcut.weight", {out, in, 1, 1, 1});
      block.shortcut_bias = get(prefix + ".conv_shortcut.bias", {out});
    }
    return block;
  }
};

// Config keys only the encoder reads (CogVideoXVaeConfig::load ignores them); returns invert_scale_latents.
bool read_encoder_keys(const std::filesystem::path& config_json, const CogVideoXVaeConfig& c) {
  const nlohmann::json document = read_json_file(config_json);
  ConfigReader reader(document, config_json.string());
  if (reader.has("down_block_types")) {
    const nlohmann::json& types = document.at("down_block_types");
    if (!types.is_array() || types.size() != c.block_out_channels.size())
      reader.fail("down_block_types", "expected one entry per block_out_channels entry");
    for (const nlohmann::json& type : types)
      if (type != "CogVideoXDownBlock3D") reader.fail("down_block_types", "only CogVideoXDownBlock3D is supported");
  }
  return reader.get<bool>("invert_scale_latents", false);
}

// Time halvings the encoder really does: one per downsampler at most (diffusers' temporal_compress_level).
int64_t time_halvings(const CogVideoXVaeConfig& c) {
  int64_t halvings = 0;
  for (int64_t r = c.temporal_compression_ratio; r > 1; r /= 2) ++halvings;
  return std::min<int64_t>(halvings, int64_t(c.block_out_channels.size()) - 1);
}

void check_video(const CogVideoXVaeConfig& c, const at::Tensor& video, const VaeEncodeOptions& options) {
  const int64_t ratio = int64_t(1) << time_halvings(c), scale = c.spatial_compression();
  const auto fail = [&](const std::string& what) {
    throw std::invalid_argument("CogVideoX VAE encoder: " + what + " must fit [B, " + std::to_string(c.in_channels) +
                                ", T, H, W] with T = 1, " + std::to_string(ratio) + "k or " + std::to_string(ratio) +
                                "k + 1 and H, W multiples of " + std::to_string(scale) + "; got " +
                                kernels::shape_string(video.sizes()));
  };
  if (video.dim() != 5 || video.size(1) != c.in_channels) fail("video");
  const int64_t frames = video.size(2), height = video.size(3), width = video.size(4);
  if (frames < 1 || (frames % ratio != 0 && frames % ratio != 1)) fail("frame count");
  if (height < 1 || width < 1 || height % scale != 0 || width % scale != 0) fail("frame size");
  if (options.frame_batch_size < 1 || options.frame_batch_size % ratio != 0)
    throw std::invalid_argument("CogVideoX VAE encoder: frame_batch_size must be a positive multiple of " +
                                std::to_string(ratio) + ", got " + std::to_string(options.frame_batch_size));
}

// The encoder over all frame batches of x, one conv cache carried through them.
at::Tensor encode_frames(const CogVideoXVaeEncoder::Weights& weights, const at::Tensor& x, int64_t frame_batch_size) {
  vae::ConvCache cache{std::vector<at::Tensor>(size_t(weights.cache_slots))};
  std::vector<at::Tensor> parts;
  // Every batch but an odd first one is a whole number of latent frames.
  for (const auto& [begin, end] : vae::frame_batches(x.size(2), frame_batch_size))
    parts.push_back(vae::encode_batch(weights, x.narrow(2, begin, end - begin), cache));
  return parts.size() == 1 ? parts.front() : at::cat(parts, 2);
}

}  // namespace

CogVideoXVaeEncoder CogVideoXVaeEncoder::load(const std::filesystem::path& vae_dir, const at::TensorOptions& target) {
  CogVideoXVaeEncoder encoder;
  encoder.config_ = CogVideoXVaeConfig::load(vae_dir / "config.json");
  const CogVideoXVaeConfig& c = encoder.config_;
  encoder.invert_scale_latents_ = read_encoder_keys(vae_dir / "config.json", c);
  EncoderLoader loader{{WeightLoader(vae_dir, target)}};
  auto w = std::make_shared<Weights>();
  const std::vector<int64_t>& channels = c.block_out_channels;
  w->conv_in = loader.causal_conv("encoder.conv_in", c.in_channels, channels[0]);
  for (size_t i = 0; i < channels.size(); ++i) {
    const std::string prefix = "encoder.down_blocks." + std::to_string(i);
    vae::DownBlock block;
    for (int64_t j = 0; j < c.layers_per_block; ++j)
      block.resnets.push_back(loader.resnet(prefix + ".resnets." + std::to_string(j),
                                            j == 0 ? channels[i > 0 ? i - 1 : 0] : channels[i], channels[i], c));
    if (i + 1 < channels.size()) {
      vae::Downsample down;
      down.weight = loader.get(prefix + ".downsamplers.0.conv.weight", {channels[i], channels[i], 3, 3});
      down.bias = loader.get(prefix + ".downsamplers.0.conv.bias", {channels[i]});
      down.compress_time = int64_t(i) < time_halvings(c);  // the first blocks halve time too, the rest only space
      block.downsampler = down;
    }
    w->down.push_back(std::move(block));
  }
  for (int i = 0; i < 2; ++i)
    w->mid.push_back(
        loader.resnet("encoder.mid_block.resnets." + std::to_string(i), channels.back(), channels.back(), c));
  // norm_out keeps GroupNorm's eps 1e-6 whatever norm_eps says (as diffusers).
  w->norm_out = loader.group_norm("encoder.norm_out", channels.back(), c.norm_num_groups, 1e-6);
  w->conv_out = loader.causal_conv("encoder.conv_out", channels.back(), 2 * c.latent_channels);
  if (c.use_quant_conv) {
    // diffusers sizes quant_conv by 2 * out_channels, so it only runs where that equals the moments' channels.
    if (c.out_channels != c.latent_channels)
      throw ConfigError((vae_dir / "config.json").string() +
                        ": use_quant_conv needs out_channels == latent_channels (diffusers sizes quant_conv by "
                        "out_channels)");
    w->quant_weight = loader.get("quant_conv.weight", {2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 1});
    w->quant_bias = loader.get("quant_conv.bias", {2 * c.latent_channels});
  }
  w->cache_slots = loader.slots;
  // The checkpoint also holds the decoder: check the encoder's own tensors (an extra one means the config
  // describes a smaller encoder than the weights, or quant_conv weights the config does not use).
  const std::vector<std::string> extra = loader.weights.unused({"encoder.", "quant_conv."});
  if (!extra.empty())
    throw std::runtime_error(vae_dir.string() + ": the config has no place for " + std::to_string(extra.size()) +
                             " encoder tensor(s): " + join(extra, ", ", 5));
  encoder.weights_ = std::move(w);
  return encoder;
}

VaeLatentDistribution CogVideoXVaeEncoder::encode(const at::Tensor& video, const VaeEncodeOptions& options) const {
  check_video(config_, video, options);
  const at::Tensor& reference = weights_->conv_in.weight;
  const at::Tensor x = video.to(reference.device(), reference.scalar_type());
  at::Tensor moments;
  const std::optional<vae::EncodeTileGrid> grid = vae::plan_encode_tiles(config_, options, x.size(3), x.size(4));
  if (!grid) {
    moments = encode_frames(*weights_, x, options.frame_batch_size);
  } else {
    // Each tile goes through all frame batches with its own conv cache; blending is per latent frame.
    std::vector<std::vector<at::Tensor>> tiles(grid->row_starts.size());
    for (size_t i = 0; i < tiles.size(); ++i) {
      for (const int64_t left : grid->col_starts) {
        const int64_t top = grid->row_starts[i];
        const at::Tensor tile = x.narrow(3, top, std::min(grid->tile_height, x.size(3) - top))
                                    .narrow(4, left, std::min(grid->tile_width, x.size(4) - left));
        tiles[i].push_back(encode_frames(*weights_, tile, options.frame_batch_size));
      }
    }
    moments = vae::blend_tiles(grid->blending, tiles);
  }
  // diffusers' DiagonalGaussianDistribution: the first half of the channels is the mean, the second the
  // log-variance.
  const int64_t channels = config_.latent_channels;
  return {moments.narrow(1, 0, channels).contiguous(), moments.narrow(1, channels, channels).clamp(-30.0, 20.0)};
}

at::Tensor VaeLatentDistribution::stddev() const { return at::exp(logvar * 0.5); }

at::Tensor VaeLatentDistribution::sample(at::Generator generator) const {
  // Like diffusers' randn_tensor: drawn where the generator lives, so a CPU generator gives the same noise on
  // any device; an undefined generator draws from mean's device's default one.
  const at::Device device = generator.defined() ? generator.device() : mean.device();
  if (device != mean.device() && !device.is_cpu())
    throw std::invalid_argument("VaeLatentDistribution::sample: a " + device.str() +
                                " generator cannot draw noise for latents on " + mean.device().str());
  const at::Tensor noise =
      at::randn(mean.sizes(), generator.defined() ? std::optional<at::Generator>(generator) : std::nullopt,
                mean.options().device(device));
  return mean + stddev() * noise.to(mean.device());
}

}  // namespace sagevid
