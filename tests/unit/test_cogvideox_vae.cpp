// CogVideoX VAE decoder against diffusers' AutoencoderKLCogVideoX (tests/fixtures/make_vae_fixtures.py wrote
// the fixtures: a tiny random-weight VAE with the real block layout, latents and diffusers' decode output).
#include "catch.h"

#include "cogvideox_vae_layers.h"  // white-box: the chunked convolution
#include "test_random.h"

#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/conv3d.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace {

const std::filesystem::path kVae = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "vae";

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  REQUIRE(got.sizes() == want.sizes());
  return ((got.to(at::kDouble) - want.to(at::kDouble)).abs().max() / want.to(at::kDouble).abs().max()).item<double>();
}

sagevid::CogVideoXVaeDecoder load_fixture() {
  return sagevid::CogVideoXVaeDecoder::load(kVae / "vae", at::TensorOptions().dtype(at::kFloat));
}

// The tile sizes the fixture script gave diffusers' enable_tiling.
sagevid::VaeDecodeOptions fixture_tiling() {
  const nlohmann::json tiling = nlohmann::json::parse(std::ifstream(kVae / "tiling.json"));
  sagevid::VaeDecodeOptions options;
  options.tiling = true;
  options.tile_sample_min_height = tiling["tile_sample_min_height"];
  options.tile_sample_min_width = tiling["tile_sample_min_width"];
  options.tile_overlap_factor_height = tiling["tile_overlap_factor_height"];
  options.tile_overlap_factor_width = tiling["tile_overlap_factor_width"];
  return options;
}

}  // namespace

TEST_CASE("the VAE decoder matches diffusers' AutoencoderKLCogVideoX.decode in fp32", "[vae]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "io.safetensors");
  const sagevid::CogVideoXVaeDecoder decoder = load_fixture();
  CHECK(decoder.scaling_factor() == 0.7f);
  CHECK(decoder.config().spatial_compression() == 8);
  double worst = 0;
  // 5 latent frames: two temporal batches (3 -> 9 frames, 2 -> 8); 1 frame: one batch; 4 frames: 2 + 2.
  for (const std::string suffix : {"", "_one", "_even"}) {
    CAPTURE(suffix);
    const at::Tensor sample = decoder.decode(io.view("latents" + suffix));
    const double error = max_relative_error(sample, io.view("sample" + suffix));
    CHECK(error <= 1e-4);
    worst = std::max(worst, error);
  }
  WARN("VAE decoder max relative error vs diffusers: " << worst);
}

TEST_CASE("decode_batches delivers decode's frames batch by batch", "[vae]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "io.safetensors");
  const sagevid::CogVideoXVaeDecoder decoder = load_fixture();
  for (const bool tiled : {false, true}) {
    CAPTURE(tiled);
    const sagevid::VaeDecodeOptions options = tiled ? fixture_tiling() : sagevid::VaeDecodeOptions{};
    std::vector<at::Tensor> parts;
    decoder.decode_batches(io.view("latents"), [&](const at::Tensor& frames) { parts.push_back(frames.clone()); },
                           options);
    REQUIRE(parts.size() == 2);
    CHECK(parts[0].size(2) == 9);
    CHECK(parts[1].size(2) == 8);
    CHECK(at::equal(at::cat(parts, 2), decoder.decode(io.view("latents"), options)));
  }
}

TEST_CASE("tiled decoding matches diffusers' tiled_decode", "[vae]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "io.safetensors");
  const sagevid::CogVideoXVaeDecoder decoder = load_fixture();
  const at::Tensor tiled = decoder.decode(io.view("latents"), fixture_tiling());
  const double error = max_relative_error(tiled, io.view("tiled"));
  WARN("VAE tiled decode max relative error vs diffusers: " << error);
  CHECK(error <= 1e-4);
  // Tiling on but the latent fits in one tile: the plain decode.
  sagevid::VaeDecodeOptions big_tiles = fixture_tiling();
  big_tiles.tile_sample_min_height = big_tiles.tile_sample_min_width = 64;
  CHECK(at::equal(decoder.decode(io.view("latents_one"), big_tiles), decoder.decode(io.view("latents_one"))));
}

TEST_CASE("a VAE config that does not fit the weights names the tensor", "[vae]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sagevid_vae_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kVae / "vae" / "diffusion_pytorch_model.safetensors", dir / "diffusion_pytorch_model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  const nlohmann::json original = nlohmann::json::parse(std::ifstream(kVae / "vae" / "config.json"));
  const auto load_with = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json config = original;
    config[key] = value;
    std::ofstream(dir / "config.json") << config.dump();
    return sagevid::CogVideoXVaeDecoder::load(dir, at::TensorOptions());
  };
  REQUIRE_THROWS_WITH(load_with("latent_channels", 8),
                      ContainsSubstring("tensor 'decoder.conv_in.conv.weight' has shape [16, 4, 3, 3, 3], "
                                        "the config expects [16, 8, 3, 3, 3]"));
  REQUIRE_THROWS_WITH(load_with("layers_per_block", 2),
                      ContainsSubstring("missing tensor 'decoder.up_blocks.0.resnets.2.norm1.norm_layer.weight'"));
  REQUIRE_THROWS_WITH(load_with("layers_per_block", 0),
                      ContainsSubstring("has no place for 64 decoder tensor(s): decoder.up_blocks.0.resnets.1."));
  REQUIRE_THROWS_WITH(load_with("temporal_compression_ratio", 3), ContainsSubstring("temporal_compression_ratio"));
  REQUIRE_THROWS_WITH(load_with("use_post_quant_conv", true), ContainsSubstring("use_post_quant_conv"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("the VAE decoder rejects latents of the wrong shape", "[vae]") {
  const sagevid::CogVideoXVaeDecoder decoder = load_fixture();
  REQUIRE_THROWS_WITH(decoder.decode(at::zeros({1, 5, 1, 2, 2})), ContainsSubstring("latents must be [B, 4, F, h, w]"));
  REQUIRE_THROWS_WITH(decoder.decode(at::zeros({4, 1, 2, 2})), ContainsSubstring("latents must be"));
}

TEST_CASE("large convolution inputs run in overlapping time chunks with the same result", "[vae]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor x = rng.normal({1, 3, 11, 5, 6}), weight = rng.normal({4, 3, 3, 3, 3}), bias = rng.normal({4});
  const at::Tensor whole = at::conv3d(x, weight, bias, 1, {0, 1, 1});
  // A tiny limit forces the chunked path: 4 parts asked, 9 output frames -> chunks of 3, overlapping by 2 inputs.
  const double limit_gib = double(x.numel()) * 2 / double(int64_t(1) << 30) / 3.5;
  CHECK(at::allclose(sagevid::vae::safe_conv3d(x, weight, bias, 1, limit_gib), whole, 1e-5, 1e-5));
  CHECK(at::allclose(sagevid::vae::safe_conv3d(x, weight.narrow(2, 0, 1).narrow(3, 0, 1).narrow(4, 0, 1), bias, 0,
                                               limit_gib),
                     at::conv3d(x, weight.narrow(2, 0, 1).narrow(3, 0, 1).narrow(4, 0, 1), bias), 1e-5, 1e-5));
}
