// The CogVideoX transformer against diffusers' CogVideoXTransformer3DModel on CPU in fp32
// (tests/fixtures/make_cogvideox_fixtures.py wrote the fixtures), and its checkpoint checks.
#include "catch.h"
#include "test_random.h"
#include "unit/safetensors_writer.h"

#include "transformer/cogvideox_transformer_parts.h"
#include "sagevid/models/cogvideox_config.h"
#include "sagevid/models/cogvideox_transformer.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>

namespace {

namespace fs = std::filesystem;
using sagevid::CogVideoXTransformer;

const fs::path kFixtures = fs::path(SAGEVID_FIXTURES_DIR) / "cogvideox";
const auto kFp32 = at::TensorOptions().dtype(at::kFloat);

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kDouble) - want.to(at::kDouble)).abs().max() / want.to(at::kDouble).abs().max()).item<double>();
}

std::string dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "F32";
    case at::kLong: return "I64";
    default: throw std::runtime_error("fixture tensor of an unexpected dtype");
  }
}

// Copies a fixture's transformer folder to `dir`, letting `edit` change each tensor: return nullopt to drop it.
// `extra` tensors are appended.
void copy_transformer(const fs::path& from, const fs::path& dir,
                      const std::function<std::optional<at::Tensor>(const std::string&, const at::Tensor&)>& edit,
                      const std::map<std::string, at::Tensor>& extra = {}) {
  const sagevid::SafetensorsModel checkpoint = sagevid::SafetensorsModel::open(from);
  sagevid::testing::SafetensorsWriter writer;
  const auto add = [&](const std::string& name, const at::Tensor& tensor) {
    const at::Tensor t = tensor.contiguous();
    writer.add(name, dtype_name(t.scalar_type()), t.sizes().vec(),
               std::string(static_cast<const char*>(t.const_data_ptr()), t.nbytes()));
  };
  for (const std::string& name : checkpoint.names())
    if (const std::optional<at::Tensor> tensor = edit(name, checkpoint.view(name))) add(name, *tensor);
  for (const auto& [name, tensor] : extra) add(name, tensor);
  writer.write(dir / "diffusion_pytorch_model.safetensors");
  sagevid::testing::write_file(dir / "config.json", sagevid::testing::read_file(from / "config.json"));
}

}  // namespace

TEST_CASE("the CogVideoX transformer matches diffusers' forward in fp32", "[cogvideox]") {
  const std::string name = GENERATE(as<std::string>{}, "2b-like", "5b-like", "1.5-like", "5b-i2v-like", "5b-hd64");
  CAPTURE(name);
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kFixtures / name / "io.safetensors");
  const CogVideoXTransformer model = CogVideoXTransformer::load(kFixtures / name / "transformer", kFp32);
  std::optional<at::Tensor> ofs;
  if (io.contains("ofs")) ofs = io.view("ofs");
  const at::Tensor output =
      model.forward(io.view("latents"), io.view("text"), io.view("timestep"), ofs, sagevid::Attention());
  REQUIRE(output.sizes() == io.view("output").sizes());
  const double error = max_relative_error(output, io.view("output"));
  WARN("CogVideoX transformer " << name << ": max relative error vs diffusers " << error);
  CHECK(error <= 1e-4);
  if (io.contains("latents_other")) {  // learned positions at another frame count: diffusers' sin-cos fallback
    const at::Tensor other =
        model.forward(io.view("latents_other"), io.view("text"), io.view("timestep"), ofs, sagevid::Attention());
    const double other_error = max_relative_error(other, io.view("output_other"));
    WARN("CogVideoX transformer " << name << " at " << other.size(1) << " frames: max relative error " << other_error);
    CHECK(other_error <= 1e-4);
  }
}

TEST_CASE("a CFG batch of 2 gives the same predictions as its rows one by one", "[cogvideox]") {
  const std::string name = GENERATE(as<std::string>{}, "2b-like", "1.5-like");
  CAPTURE(name);
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const CogVideoXTransformer model = CogVideoXTransformer::load(kFixtures / name / "transformer", kFp32);
  const sagevid::CogVideoXConfig& c = model.config();
  const int64_t frames = c.patch_size_t ? 2 * *c.patch_size_t : 2;
  const at::Tensor latents = rng.normal({2, frames, c.in_channels, 4, 6});
  const at::Tensor text = rng.normal({2, c.max_text_seq_length, c.text_embed_dim});
  const at::Tensor timestep = at::tensor(std::vector<int64_t>{817, 35});
  std::optional<at::Tensor> ofs;
  if (c.has_ofs()) ofs = at::full({1}, 2.0);
  const sagevid::Attention attention;
  const at::Tensor batch = model.forward(latents, text, timestep, ofs, attention);
  for (int64_t i = 0; i < 2; ++i) {
    const at::Tensor row =
        model.forward(latents.narrow(0, i, 1), text.narrow(0, i, 1), timestep.narrow(0, i, 1), ofs, attention);
    CHECK(max_relative_error(row, batch.narrow(0, i, 1)) < 1e-5);
  }
}

TEST_CASE("inputs the model cannot take are errors that say why", "[cogvideox]") {
  const CogVideoXTransformer model = CogVideoXTransformer::load(kFixtures / "1.5-like" / "transformer", kFp32);
  const sagevid::CogVideoXConfig& c = model.config();
  const sagevid::Attention attention;
  sagevid::test::Random rng;
  const at::Tensor text = rng.normal({1, c.max_text_seq_length, c.text_embed_dim});
  const at::Tensor t = at::tensor(std::vector<int64_t>{500});
  const at::Tensor ofs = at::full({1}, 2.0);
  REQUIRE_THROWS_WITH(model.forward(rng.normal({1, 3, c.in_channels, 4, 4}), text, t, ofs, attention),
                      ContainsSubstring("multiple of patch_size_t 2"));
  REQUIRE_THROWS_WITH(model.forward(rng.normal({1, 2, c.in_channels, 5, 4}), text, t, ofs, attention),
                      ContainsSubstring("multiples of patch_size 2"));
  REQUIRE_THROWS_WITH(model.forward(rng.normal({1, 2, c.out_channels, 4, 4}), text, t, ofs, attention),
                      ContainsSubstring("latents must be [B, F, 8, H, W]"));
  REQUIRE_THROWS_WITH(model.forward(rng.normal({1, 2, c.in_channels, 4, 4}), text, t, std::nullopt, attention),
                      ContainsSubstring("pass ofs"));
}

TEST_CASE("a CogVideoX checkpoint that does not fit its config names the tensor", "[cogvideox]") {
  const fs::path from = kFixtures / "5b-like" / "transformer";
  const auto keep = [](const std::string&, const at::Tensor& t) { return std::optional<at::Tensor>(t); };

  SECTION("a mis-shaped tensor: its name and both shapes") {
    sagevid::testing::TempDir dir;
    copy_transformer(from, dir.path, [](const std::string& name, const at::Tensor& t) {
      return std::optional<at::Tensor>(name == "transformer_blocks.1.attn1.to_k.weight" ? t.narrow(1, 0, 16) : t);
    });
    REQUIRE_THROWS_WITH(CogVideoXTransformer::load(dir.path, kFp32),
                        ContainsSubstring("tensor 'transformer_blocks.1.attn1.to_k.weight' has shape [32, 16], "
                                          "the config expects [32, 32]"));
  }
  SECTION("a missing tensor") {
    sagevid::testing::TempDir dir;
    copy_transformer(from, dir.path, [](const std::string& name, const at::Tensor& t) {
      return name == "norm_out.linear.bias" ? std::nullopt : std::optional<at::Tensor>(t);
    });
    REQUIRE_THROWS_WITH(CogVideoXTransformer::load(dir.path, kFp32),
                        ContainsSubstring("missing tensor 'norm_out.linear.bias' (expected shape [64])"));
  }
  SECTION("a tensor the config has no place for") {
    sagevid::testing::TempDir dir;
    copy_transformer(from, dir.path, keep, {{"ofs_embedding.linear_1.weight", at::full({24, 24}, 0.5)}});
    REQUIRE_THROWS_WITH(CogVideoXTransformer::load(dir.path, kFp32),
                        ContainsSubstring("has no place for: ofs_embedding.linear_1.weight"));
  }
  SECTION("the unchanged copy loads") {
    sagevid::testing::TempDir dir;
    copy_transformer(from, dir.path, keep);
    CHECK(CogVideoXTransformer::load(dir.path, kFp32).config().num_layers == 2);
  }
}

TEST_CASE("the CogVideoX config takes diffusers' defaults and rejects what cannot run", "[cogvideox]") {
  using sagevid::CogVideoXConfig;
  const CogVideoXConfig defaults = CogVideoXConfig::from_json(nlohmann::json::object(), "config.json");
  CHECK(defaults.num_attention_heads == 30);
  CHECK(defaults.inner_dim() == 1920);
  CHECK(defaults.time_embed_dim == 512);
  CHECK(defaults.sample_frames == 49);
  CHECK(defaults.latent_sample_frames() == 13);
  CHECK(defaults.spatial_interpolation_scale == 1.875);
  CHECK_FALSE(defaults.patch_size_t.has_value());
  CHECK_FALSE(defaults.has_ofs());
  CHECK_FALSE(defaults.use_rotary_positional_embeddings);

  // A 1.5 config as diffusers writes it: unknown keys are fine, nulls are "not set".
  const CogVideoXConfig v15 = CogVideoXConfig::from_json(
      nlohmann::json::parse(R"({"_class_name": "CogVideoXTransformer3DModel", "_diffusers_version": "0.32.0",
        "num_attention_heads": 48, "num_layers": 42, "patch_size_t": 2, "ofs_embed_dim": null, "patch_bias": false,
        "sample_height": 300, "sample_width": 300, "sample_frames": 81, "use_rotary_positional_embeddings": true})"),
      "config.json");
  CHECK(v15.patch_size_t == 2);
  CHECK_FALSE(v15.has_ofs());
  CHECK(v15.patch_volume() == 8);
  CHECK(v15.latent_sample_frames() == 21);

  const auto rejects = [](const char* json, const char* message) {
    REQUIRE_THROWS_WITH(CogVideoXConfig::from_json(nlohmann::json::parse(json), "config.json"),
                        ContainsSubstring(message));
  };
  rejects(R"({"activation_fn": "geglu"})", "config.json.activation_fn");
  rejects(R"({"timestep_activation_fn": "mish"})", "config.json.timestep_activation_fn");
  rejects(R"({"use_learned_positional_embeddings": true})", "learned positions without RoPE");
  rejects(R"({"ofs_embed_dim": 256})", "must equal time_embed_dim");
  rejects(R"({"attention_head_dim": 24, "use_rotary_positional_embeddings": true})", "multiple of 16");
  rejects(R"({"num_attention_heads": "30"})", "expected an integer");
}

TEST_CASE("the RoPE crop region rounds as Python does", "[cogvideox]") {
  using sagevid::cogvideox::resize_crop_region;
  const auto region = [](int64_t gh, int64_t gw, int64_t bw, int64_t bh) {
    const auto r = resize_crop_region(gh, gw, bw, bh);
    return std::vector<int64_t>{r.top, r.left, r.bottom, r.right};
  };
  // Values from diffusers' get_resize_crop_region_for_grid.
  CHECK(region(4, 1, 6, 4) == std::vector<int64_t>{0, 2, 4, 3});  // round(2.5) = 2
  CHECK(region(3, 2, 6, 4) == std::vector<int64_t>{0, 2, 4, 5});
  CHECK(region(30, 45, 45, 30) == std::vector<int64_t>{0, 0, 30, 45});
  CHECK(region(48, 85, 45, 30) == std::vector<int64_t>{2, 0, 27, 45});
}

TEST_CASE("a random-weight transformer has the config's shapes and is reproducible from its seed", "[cogvideox]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::CogVideoXConfig config =
      sagevid::CogVideoXConfig::load(kFixtures / "5b-like" / "transformer" / "config.json");
  const CogVideoXTransformer a = CogVideoXTransformer::random(config, kFp32, rng.seed);
  const CogVideoXTransformer b = CogVideoXTransformer::random(config, kFp32, rng.seed);
  const CogVideoXTransformer other = CogVideoXTransformer::random(config, kFp32, rng.seed + 1);
  const at::Tensor latents = rng.normal({1, 2, config.in_channels, 4, 6});
  const at::Tensor text = rng.normal({1, config.max_text_seq_length, config.text_embed_dim});
  const at::Tensor timestep = at::tensor(std::vector<int64_t>{500});
  const sagevid::Attention attention;
  const at::Tensor out = a.forward(latents, text, timestep, std::nullopt, attention);
  REQUIRE(out.sizes() == latents.sizes());
  CHECK(out.isfinite().all().item<bool>());
  CHECK(out.abs().max().item<double>() > 0);
  CHECK(out.equal(b.forward(latents, text, timestep, std::nullopt, attention)));
  CHECK_FALSE(out.equal(other.forward(latents, text, timestep, std::nullopt, attention)));
}
