// A model entry's memory keys (sagevid/models/memory_config.h): defaults, every key, the errors naming the key.
#include "catch.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/memory_config.h"

#include <string>

using sagevid::ConfigReader;
using sagevid::MemoryConfig;
using sagevid::TextEncoderPlacement;
using json = nlohmann::json;

namespace {

// Reads the memory keys of one model entry, as the server config does (unknown keys fail at finish()).
MemoryConfig read(const std::string& entry) {
  const json document = json::parse(entry);
  ConfigReader reader(document, "models[0]");
  const MemoryConfig config = sagevid::read_memory_config(reader);
  reader.finish();
  return config;
}

}  // namespace

TEST_CASE("memory keys default to T5 on the device and diffusers' untiled decode", "[config]") {
  const MemoryConfig config = read("{}");
  CHECK(config.text_encoder == TextEncoderPlacement::device);
  CHECK_FALSE(config.vae.tiling);
  CHECK(config.vae.tile_sample_min_height == 0);
  CHECK(config.vae.tile_overlap_factor_height == sagevid::VaeDecodeOptions{}.tile_overlap_factor_height);
  CHECK(config.vae.frame_batch_size == 2);
}

TEST_CASE("memory keys set the text encoder placement and the VAE's tiles and batches", "[config]") {
  const std::string entry = R"({"text_encoder": "offload", "vae": {"tiling": true, "tile_height": 320,
      "tile_width": 400, "tile_overlap_height": 0.25, "tile_overlap_width": 0.125, "frame_batch_size": 1}})";
  const MemoryConfig config = read(entry);
  CHECK(config.text_encoder == TextEncoderPlacement::offload);
  CHECK(config.vae.tiling);
  CHECK(config.vae.tile_sample_min_height == 320);
  CHECK(config.vae.tile_sample_min_width == 400);
  CHECK(config.vae.tile_overlap_factor_height == 0.25);
  CHECK(config.vae.tile_overlap_factor_width == 0.125);
  CHECK(config.vae.frame_batch_size == 1);
  CHECK(sagevid::to_json(config) == json::parse(entry));  // printed as read

  sagevid::PipelineOptions options;
  config.apply_to(options);
  CHECK(options.text_encoder == TextEncoderPlacement::offload);
  CHECK(options.vae.tile_sample_min_width == 400);
}

TEST_CASE("bad memory keys name the key", "[config]") {
  CHECK_THROWS_WITH(read(R"({"text_encoder": "cpu"})"),
                    ContainsSubstring("models[0].text_encoder: 'cpu': expected device or offload"));
  CHECK_THROWS_WITH(read(R"({"text_encoder": true})"), ContainsSubstring("models[0].text_encoder: expected a string"));
  CHECK_THROWS_WITH(read(R"({"vae": {"tile_height": -8}})"),
                    ContainsSubstring("models[0].vae.tile_height: must not be negative"));
  CHECK_THROWS_WITH(read(R"({"vae": {"tile_overlap_width": 1.0}})"),
                    ContainsSubstring("models[0].vae.tile_overlap_width: must be in [0, 1)"));
  CHECK_THROWS_WITH(read(R"({"vae": {"frame_batch_size": 0}})"),
                    ContainsSubstring("models[0].vae.frame_batch_size: must be at least 1"));
  CHECK_THROWS_WITH(read(R"({"vae": {"tilling": true}})"), ContainsSubstring("models[0].vae.tilling: unknown key"));
  CHECK_THROWS_WITH(read(R"({"vae": true})"), ContainsSubstring("models[0].vae: expected an object"));
  CHECK_THROWS_WITH(read(R"({"text_encoders": "offload"})"), ContainsSubstring("models[0].text_encoders: unknown key"));
}
