// vae/config.json -> CogVideoXVaeConfig, with diffusers' class defaults and checks for what we cannot run.
// The encoder reads its own extra keys (cogvideox_vae_encoder.cpp); both share this loader.
#include "sagevid/models/cogvideox_vae.h"

#include "sagevid/models/config_reader.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sagevid {
namespace {

std::vector<int64_t> read_int_list(const nlohmann::json& document, ConfigReader& reader, const std::string& key,
                                   std::vector<int64_t> default_value) {
  if (!reader.has(key)) return default_value;
  const nlohmann::json& value = document.at(key);
  if (!value.is_array() || value.empty()) reader.fail(key, "expected a non-empty list of integers");
  std::vector<int64_t> items;
  for (const nlohmann::json& item : value) {
    if (!item.is_number_integer() || item.get<int64_t>() <= 0) reader.fail(key, "expected positive integers");
    items.push_back(item.get<int64_t>());
  }
  return items;
}

}  // namespace

CogVideoXVaeConfig CogVideoXVaeConfig::load(const std::filesystem::path& config_json) {
  const nlohmann::json document = read_json_file(config_json);
  ConfigReader reader(document, config_json.string());
  CogVideoXVaeConfig c;
  c.in_channels = reader.get<int64_t>("in_channels", c.in_channels);
  c.out_channels = reader.get<int64_t>("out_channels", c.out_channels);
  c.latent_channels = reader.get<int64_t>("latent_channels", c.latent_channels);
  c.block_out_channels = read_int_list(document, reader, "block_out_channels", c.block_out_channels);
  c.layers_per_block = reader.get<int64_t>("layers_per_block", c.layers_per_block);
  c.norm_num_groups = reader.get<int64_t>("norm_num_groups", c.norm_num_groups);
  c.norm_eps = reader.get<double>("norm_eps", c.norm_eps);
  // A float in diffusers' signature; only powers of two make sense (one time-doubling upsampler per factor 2).
  const double ratio = reader.get<double>("temporal_compression_ratio", double(c.temporal_compression_ratio));
  c.temporal_compression_ratio = int64_t(ratio);
  if (double(c.temporal_compression_ratio) != ratio || ratio < 1 ||
      (c.temporal_compression_ratio & (c.temporal_compression_ratio - 1)) != 0)
    reader.fail("temporal_compression_ratio", "expected a power of two");
  c.sample_height = reader.get<int64_t>("sample_height", c.sample_height);
  c.sample_width = reader.get<int64_t>("sample_width", c.sample_width);
  c.scaling_factor = reader.get<double>("scaling_factor", c.scaling_factor);
  c.use_quant_conv = reader.get<bool>("use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = reader.get<bool>("use_post_quant_conv", c.use_post_quant_conv);
  // diffusers sizes post_quant_conv by out_channels (3), which cannot apply to 16-channel latents; no CogVideoX
  // checkpoint sets it.
  if (c.use_post_quant_conv) reader.fail("use_post_quant_conv", "not supported (no CogVideoX checkpoint uses it)");
  const std::string act = reader.get<std::string>("act_fn", "silu");
  if (act != "silu") reader.fail("act_fn", "'" + act + "': only silu is supported");
  if (c.latent_channels < 1 || c.layers_per_block < 0 || c.norm_num_groups < 1)
    reader.fail("latent_channels", "latent_channels, layers_per_block and norm_num_groups must be positive");
  for (int64_t channels : c.block_out_channels)
    if (channels % c.norm_num_groups != 0)
      reader.fail("block_out_channels", "every entry must be a multiple of norm_num_groups");
  return c;
}

}  // namespace sagevid
