#pragma once
// The memory keys of a model entry in a server config: where the text encoder's weights stay and how the VAE
// decodes (spatial tiles, latent frames per batch). What a 24 GB card needs is set here (configs/*-rtx4090.json):
//
//   {"name": "cogvideox-5b", "path": "...", "text_encoder": "offload",
//    "vae": {"tiling": true, "tile_height": 240, "tile_width": 360}}
#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/pipeline.h"

#include <nlohmann/json.hpp>

namespace sagevid {

class ConfigReader;

struct MemoryConfig {
  TextEncoderPlacement text_encoder = TextEncoderPlacement::device;
  VaeDecodeOptions vae;

  void apply_to(PipelineOptions& options) const {
    options.text_encoder = text_encoder;
    options.vae = vae;
  }
};

// Reads "text_encoder" ("device" | "offload") and "vae" {"tiling": false, "tile_height": 0, "tile_width": 0
// (pixels; 0: half the VAE's sample size, as diffusers), "tile_overlap_height": 1/6, "tile_overlap_width": 1/5
// (fractions of a tile, in [0, 1)), "frame_batch_size": 2 (latent frames per decoded batch; diffusers' 2, others
// change the frames)} from a model entry; leaves the entry's other keys to its caller.
MemoryConfig read_memory_config(ConfigReader& model_entry);
// The keys as read_memory_config takes them: {"text_encoder": ..., "vae": {...}}.
nlohmann::json to_json(const MemoryConfig& config);

}  // namespace sagevid
