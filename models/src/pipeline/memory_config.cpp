#include "sagevid/models/memory_config.h"

#include "sagevid/models/config_reader.h"

namespace sagevid {
namespace {

TextEncoderPlacement read_placement(ConfigReader& reader) {
  const std::string name = reader.get<std::string>("text_encoder", "device");
  if (name == "device") return TextEncoderPlacement::device;
  if (name == "offload") return TextEncoderPlacement::offload;
  reader.fail("text_encoder", "'" + name + "': expected device or offload");
}

int64_t read_tile_side(ConfigReader& reader, const std::string& key) {
  const int64_t pixels = reader.get<int64_t>(key, 0);
  if (pixels < 0) reader.fail(key, "must not be negative (0: half the VAE's sample size)");
  return pixels;
}

double read_overlap(ConfigReader& reader, const std::string& key, double default_value) {
  const double overlap = reader.get<double>(key, default_value);
  if (!(overlap >= 0 && overlap < 1)) reader.fail(key, "must be in [0, 1) (a fraction of the tile)");
  return overlap;
}

VaeDecodeOptions read_vae(ConfigReader reader) {
  VaeDecodeOptions vae;
  vae.tiling = reader.get<bool>("tiling", vae.tiling);
  vae.tile_sample_min_height = read_tile_side(reader, "tile_height");
  vae.tile_sample_min_width = read_tile_side(reader, "tile_width");
  vae.tile_overlap_factor_height = read_overlap(reader, "tile_overlap_height", vae.tile_overlap_factor_height);
  vae.tile_overlap_factor_width = read_overlap(reader, "tile_overlap_width", vae.tile_overlap_factor_width);
  vae.frame_batch_size = reader.get<int64_t>("frame_batch_size", vae.frame_batch_size);
  if (vae.frame_batch_size < 1) reader.fail("frame_batch_size", "must be at least 1");
  reader.finish();
  return vae;
}

}  // namespace

MemoryConfig read_memory_config(ConfigReader& model_entry) {
  MemoryConfig config;
  config.text_encoder = read_placement(model_entry);
  config.vae = read_vae(model_entry.object("vae"));
  return config;
}

nlohmann::json to_json(const MemoryConfig& config) {
  const VaeDecodeOptions& vae = config.vae;
  return {{"text_encoder", config.text_encoder == TextEncoderPlacement::offload ? "offload" : "device"},
          {"vae",
           {{"tiling", vae.tiling},
            {"tile_height", vae.tile_sample_min_height},
            {"tile_width", vae.tile_sample_min_width},
            {"tile_overlap_height", vae.tile_overlap_factor_height},
            {"tile_overlap_width", vae.tile_overlap_factor_width},
            {"frame_batch_size", vae.frame_batch_size}}}};
}

}  // namespace sagevid
