// CogVideoX VAE decoder and encoder against diffusers' AutoencoderKLCogVideoX (tests/fixtures/make_vae_fixtures.py
// wrote the fixtures: a tiny random-weight VAE with the real block layout, latents and diffusers' decode output,
// videos and diffusers' encode output).
#include "catch.h"

#include "vae/cogvideox_vae_layers.h"  // white-box: the chunked convolution
#include "test_random.h"

#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/conv3d.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/rand.h>
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
    decoder.decode_batches(
        io.view("latents"), [&](const at::Tensor& frames) { parts.push_back(frames.clone()); }, options);
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
  big_tiles.tile_overlap_factor_height = big_tiles.tile_overlap_factor_width = 0.25;  // tiles that fit together
  CHECK(at::equal(decoder.decode(io.view("latents_one"), big_tiles), decoder.decode(io.view("latents_one"))));
  big_tiles.tile_overlap_factor_height = 1.0 / 3;  // 8 latents step 5 (40 px) but keep 43 px: refused
  CHECK_THROWS_WITH(decoder.decode(io.view("latents_one"), big_tiles), ContainsSubstring("would not fit together"));
}

TEST_CASE("a VAE config that does not fit the weights names the tensor", "[vae]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sagevid_vae_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kVae / "vae" / "diffusion_pytorch_model.safetensors",
                             dir / "diffusion_pytorch_model.safetensors",
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
  CHECK(at::allclose(
      sagevid::vae::safe_conv3d(x, weight.narrow(2, 0, 1).narrow(3, 0, 1).narrow(4, 0, 1), bias, 0, limit_gib),
      at::conv3d(x, weight.narrow(2, 0, 1).narrow(3, 0, 1).narrow(4, 0, 1), bias), 1e-5, 1e-5));
}

// ---- Encoder ----

namespace {

sagevid::CogVideoXVaeEncoder load_encoder_fixture(const char* folder = "vae") {
  return sagevid::CogVideoXVaeEncoder::load(kVae / folder, at::TensorOptions().dtype(at::kFloat));
}

sagevid::VaeEncodeOptions fixture_encode_tiling() {
  const sagevid::VaeDecodeOptions decode = fixture_tiling();  // diffusers' enable_tiling took the same sizes
  sagevid::VaeEncodeOptions options;
  options.tiling = true;
  options.tile_sample_min_height = decode.tile_sample_min_height;
  options.tile_sample_min_width = decode.tile_sample_min_width;
  options.tile_overlap_factor_height = decode.tile_overlap_factor_height;
  options.tile_overlap_factor_width = decode.tile_overlap_factor_width;
  return options;
}

// Loads the encoder of a fixture folder whose config.json has one key changed (the weights stay).
sagevid::CogVideoXVaeEncoder load_encoder_with(const char* folder, const char* key, const nlohmann::json& value) {
  const auto dir = std::filesystem::temp_directory_path() / ("sagevid_vae_encoder_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kVae / folder / "diffusion_pytorch_model.safetensors",
                             dir / "diffusion_pytorch_model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(kVae / folder / "config.json"));
  config[key] = value;
  std::ofstream(dir / "config.json") << config.dump();
  return sagevid::CogVideoXVaeEncoder::load(dir, at::TensorOptions());
}

}  // namespace

TEST_CASE("the VAE encoder matches diffusers' AutoencoderKLCogVideoX.encode in fp32", "[vae][vae_encoder]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "encoder_io.safetensors");
  const sagevid::CogVideoXVaeEncoder encoder = load_encoder_fixture();
  CHECK(encoder.scaling_factor() == 0.7f);
  CHECK_FALSE(encoder.invert_scale_latents());
  double worst = 0;
  // 17 frames: two temporal batches (9 + 8 frames), 25: three (9 + 8 + 8), 16: two of 8, 1: the image case.
  for (const std::string suffix : {"", "_long", "_even", "_one"}) {
    CAPTURE(suffix);
    const sagevid::VaeLatentDistribution latents = encoder.encode(io.view("video" + suffix));
    const double error = max_relative_error(latents.mean, io.view("mean" + suffix));
    CHECK(error <= 1e-4);
    worst = std::max(worst, error);
    if (suffix.empty()) {
      const double logvar_error = max_relative_error(latents.logvar, io.view("logvar"));
      CHECK(logvar_error <= 1e-4);
      worst = std::max(worst, logvar_error);
    }
  }
  WARN("VAE encoder max relative error vs diffusers: " << worst);
}

TEST_CASE("tiled encoding matches diffusers' tiled_encode", "[vae][vae_encoder]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "encoder_io.safetensors");
  const sagevid::CogVideoXVaeEncoder encoder = load_encoder_fixture();
  // 32x40 pixels in 24x24 tiles: 2x3 tiles, each through two temporal batches with its own conv cache.
  const at::Tensor tiled = encoder.encode(io.view("video"), fixture_encode_tiling()).mean;
  const double error = max_relative_error(tiled, io.view("mean_tiled"));
  WARN("VAE tiled encode max relative error vs diffusers: " << error);
  CHECK(error <= 1e-4);
  CHECK(max_relative_error(tiled, io.view("mean")) > 1e-2);  // the tiles really changed the result
  // Tiling on but the video fits in one tile: the plain encode.
  sagevid::VaeEncodeOptions big_tiles = fixture_encode_tiling();
  big_tiles.tile_sample_min_height = big_tiles.tile_sample_min_width = 40;
  CHECK(at::equal(encoder.encode(io.view("video"), big_tiles).mean, encoder.encode(io.view("video")).mean));
}

TEST_CASE("the latent sample matches diffusers' DiagonalGaussianDistribution.sample for the same seed",
          "[vae][vae_encoder]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "encoder_io.safetensors");
  const sagevid::CogVideoXVaeEncoder encoder = load_encoder_fixture();
  const sagevid::VaeLatentDistribution latents = encoder.encode(io.view("video"));
  const uint64_t seed = nlohmann::json::parse(std::ifstream(kVae / "encoder.json"))["sample_seed"];
  const at::Tensor sample = latents.sample(at::make_generator<at::CPUGeneratorImpl>(seed));
  const double error = max_relative_error(sample, io.view("sample"));
  WARN("VAE latent sample max relative error vs diffusers: " << error);
  CHECK(error <= 1e-4);
  // Fresh seeds: the same seed repeats the sample, another one moves it.
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  CHECK(at::equal(latents.sample(at::make_generator<at::CPUGeneratorImpl>(rng.seed)),
                  latents.sample(at::make_generator<at::CPUGeneratorImpl>(rng.seed))));
  CHECK_FALSE(at::allclose(latents.sample(at::make_generator<at::CPUGeneratorImpl>(rng.seed)),
                           latents.sample(at::make_generator<at::CPUGeneratorImpl>(rng.seed + 1))));
}

TEST_CASE("the VAE encoder follows the config: quant_conv, two blocks, 2x time, norm_eps", "[vae][vae_encoder]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kVae / "encoder_quant_io.safetensors");
  const sagevid::CogVideoXVaeEncoder encoder = load_encoder_fixture("vae_quant");
  CHECK(encoder.config().spatial_compression() == 2);
  const at::Tensor mean = encoder.encode(io.view("video")).mean;  // 9 frames -> 5, 8x12 -> 4x6
  const double error = max_relative_error(mean, io.view("mean"));
  WARN("VAE encoder (quant_conv fixture) max relative error vs diffusers: " << error);
  CHECK(error <= 1e-4);
}

TEST_CASE("the VAE encoder treats each video of a batch on its own", "[vae][vae_encoder]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::CogVideoXVaeEncoder encoder = load_encoder_fixture();
  // Fresh videos in [-1, 1], given in double: the encoder runs in the weights' fp32.
  const at::Tensor videos = at::rand({2, 3, 9, 16, 24}, rng.generator, at::TensorOptions().dtype(at::kDouble)) * 2 - 1;
  const sagevid::VaeLatentDistribution both = encoder.encode(videos);
  REQUIRE(both.mean.sizes() == at::IntArrayRef{2, 4, 3, 2, 3});
  CHECK(both.mean.scalar_type() == at::kFloat);
  for (int64_t b = 0; b < 2; ++b) {
    const sagevid::VaeLatentDistribution one = encoder.encode(videos.narrow(0, b, 1));
    CHECK(at::allclose(both.mean.narrow(0, b, 1), one.mean, 1e-5, 1e-5));
    CHECK(at::allclose(both.logvar.narrow(0, b, 1), one.logvar, 1e-5, 1e-5));
  }
}

TEST_CASE("the VAE encoder rejects videos and options it cannot encode, naming what is wrong", "[vae][vae_encoder]") {
  const sagevid::CogVideoXVaeEncoder encoder = load_encoder_fixture();
  const auto encode = [&](at::IntArrayRef shape, const sagevid::VaeEncodeOptions& options = {}) {
    return encoder.encode(at::zeros(shape), options);
  };
  REQUIRE_THROWS_WITH(encode({1, 4, 1, 16, 16}), ContainsSubstring("video must fit [B, 3, T, H, W]") &&
                                                     ContainsSubstring("got [1, 4, 1, 16, 16]"));
  REQUIRE_THROWS_WITH(encode({3, 1, 16, 16}), ContainsSubstring("video must fit [B, 3, T, H, W]"));
  for (const int64_t frames : {0, 2, 3, 6, 7, 10, 15}) {
    CAPTURE(frames);
    REQUIRE_THROWS_WITH(encode({1, 3, frames, 16, 16}),
                        ContainsSubstring("frame count must fit") && ContainsSubstring("T = 1, 4k or 4k + 1") &&
                            ContainsSubstring("got [1, 3, " + std::to_string(frames) + ", 16, 16]"));
  }
  REQUIRE_THROWS_WITH(encode({1, 3, 1, 12, 16}), ContainsSubstring("frame size must fit") &&
                                                     ContainsSubstring("H, W multiples of 8") &&
                                                     ContainsSubstring("got [1, 3, 1, 12, 16]"));
  REQUIRE_THROWS_WITH(encode({1, 3, 1, 16, 20}), ContainsSubstring("frame size must fit"));
  sagevid::VaeEncodeOptions odd_batches;
  odd_batches.frame_batch_size = 6;
  REQUIRE_THROWS_WITH(encode({1, 3, 1, 16, 16}, odd_batches), ContainsSubstring("frame_batch_size must be a positive"));
  sagevid::VaeEncodeOptions tiny_tiles = fixture_encode_tiling();
  tiny_tiles.tile_sample_min_height = 4;
  REQUIRE_THROWS_WITH(encode({1, 3, 1, 16, 16}, tiny_tiles), ContainsSubstring("tiles of 4x24 pixels"));
  // The frame counts the layout allows all encode: 1 + 4k to 1 + k latent frames, 4k to k.
  for (const auto& [frames, latent_frames] :
       std::vector<std::pair<int64_t, int64_t>>{{4, 1}, {5, 2}, {8, 2}, {13, 4}}) {
    CAPTURE(frames);
    CHECK(encode({1, 3, frames, 8, 8}).mean.size(2) == latent_frames);
  }
}

TEST_CASE("a VAE config that does not fit the encoder's weights names the tensor", "[vae][vae_encoder]") {
  REQUIRE_THROWS_WITH(load_encoder_with("vae", "in_channels", 4),
                      ContainsSubstring("tensor 'encoder.conv_in.conv.weight' has shape [8, 3, 3, 3, 3], "
                                        "the config expects [8, 4, 3, 3, 3]"));
  REQUIRE_THROWS_WITH(load_encoder_with("vae", "layers_per_block", 2),
                      ContainsSubstring("missing tensor 'encoder.down_blocks.0.resnets.1.norm1.weight'"));
  REQUIRE_THROWS_WITH(load_encoder_with("vae", "layers_per_block", 0),
                      ContainsSubstring("has no place for") && ContainsSubstring("encoder tensor(s): encoder."));
  REQUIRE_THROWS_WITH(load_encoder_with("vae", "use_quant_conv", true),
                      ContainsSubstring("use_quant_conv needs out_channels == latent_channels"));
  REQUIRE_THROWS_WITH(load_encoder_with("vae", "down_block_types", nlohmann::json::array({"CogVideoXDownBlock3D"})),
                      ContainsSubstring("down_block_types"));
  REQUIRE_THROWS_WITH(load_encoder_with("vae_quant", "use_quant_conv", false),
                      ContainsSubstring("no place for 2 encoder tensor(s): quant_conv.bias, quant_conv.weight"));
  CHECK(load_encoder_with("vae", "invert_scale_latents", true).invert_scale_latents());
  std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                              ("sagevid_vae_encoder_" + std::to_string(::getpid())));
}

TEST_CASE("a shared decode's tiles go by area, largest first, each to the rank with the least so far", "[vae]") {
  // CogVideoX's 49x480x720 at the default tiles: latents 60 x 90 in 3 x 3 tiles of 30 x 45 at strides 25 and 36,
  // the last row 10 latents high and the last column 18 wide.
  sagevid::VaeDecodeOptions options;
  options.tiling = true;
  const std::optional<sagevid::vae::TileGrid> grid = sagevid::vae::plan_tiles({}, options, 60, 90);
  REQUIRE(grid);
  CHECK(sagevid::vae::share_tiles(grid, 60, 90, 1).owner == std::vector<size_t>(9, 0));
  // Areas 1350 (tiles 0, 1, 3, 4), 540 (2, 5), 450 (6, 7) and 180 (8): rank loads 1890, 1890, 1980 and 1800, where
  // taking the tiles in turn would give rank 0 tiles 0, 4 and 8 (2880).
  CHECK(sagevid::vae::share_tiles(grid, 60, 90, 4).owner == std::vector<size_t>{0, 1, 0, 2, 3, 1, 2, 3, 2});
  CHECK(sagevid::vae::share_tiles(grid, 60, 90, 12).owner == std::vector<size_t>{0, 1, 4, 2, 3, 5, 6, 7, 8});
  CHECK(sagevid::vae::share_tiles(std::nullopt, 60, 90, 4).owner == std::vector<size_t>{0});
  const sagevid::vae::TileOwners four = sagevid::vae::share_tiles(grid, 60, 90, 4);
  CHECK(four.area == std::vector<int64_t>{1890, 1890, 1980, 1800});
  CHECK(four.place == std::vector<size_t>{0, 0, 1, 0, 0, 1, 1, 1, 2});
  CHECK(four.most == 3);
}
