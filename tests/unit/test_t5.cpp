// T5 tokenizer and encoder against transformers (tests/fixtures/make_t5_fixtures.py wrote the fixtures).
#include "catch.h"
#include "safetensors_writer.h"
#include "test_random.h"

#include "sagevid/models/safetensors.h"
#include "sagevid/models/t5_encoder.h"
#include "sagevid/models/t5_tokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace {

const std::filesystem::path kT5 = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "t5";

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  return ((got.to(at::kDouble) - want.to(at::kDouble)).abs().max() / want.to(at::kDouble).abs().max()).item<double>();
}

}  // namespace

TEST_CASE("the tokenizer gives transformers' ids: EOS, truncation, padding, special tokens typed in", "[t5]") {
  const nlohmann::json cases = nlohmann::json::parse(std::ifstream(kT5 / "prompts.json"));
  const sagevid::T5Tokenizer tokenizer(kT5 / "tokenizer" / "spiece.model");
  const int64_t max_length = cases["max_length"];
  for (size_t i = 0; i < cases["prompts"].size(); ++i) {
    const std::string prompt = cases["prompts"][i];
    CAPTURE(prompt);
    CHECK(tokenizer.encode(prompt, max_length) == cases["input_ids"][i].get<std::vector<int64_t>>());
  }
  CHECK(tokenizer.count_tokens("an astronaut riding a horse on the moon while waves crash") > max_length);
  CHECK(tokenizer.count_tokens("</s><pad> <unk>") == 3);
  REQUIRE_THROWS_WITH(sagevid::T5Tokenizer(kT5 / "missing.model"), ContainsSubstring("missing.model"));
}

TEST_CASE("the T5 encoder matches transformers' T5EncoderModel in fp32", "[t5]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kT5 / "io.safetensors");
  const sagevid::T5Encoder encoder =
      sagevid::T5Encoder::load(kT5 / "text_encoder", at::TensorOptions().dtype(at::kFloat));
  const at::Tensor hidden = encoder.forward(io.view("input_ids"), sagevid::Attention());
  const double error = max_relative_error(hidden, io.view("hidden"));
  WARN("T5 encoder max relative error vs transformers: " << error);
  CHECK(error <= 1e-4);
}

TEST_CASE("a batch gives the same hidden states as its rows one by one", "[t5]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kT5 / "io.safetensors");
  const sagevid::T5Encoder encoder =
      sagevid::T5Encoder::load(kT5 / "text_encoder", at::TensorOptions().dtype(at::kFloat));
  const at::Tensor ids = io.view("input_ids");
  const at::Tensor batch = encoder.forward(ids, sagevid::Attention());
  for (int64_t i = 0; i < ids.size(0); ++i)
    CHECK(max_relative_error(encoder.forward(ids.narrow(0, i, 1), sagevid::Attention()), batch.narrow(0, i, 1)) < 1e-5);
}

TEST_CASE("a T5 config that does not fit the weights names the tensor and both shapes", "[t5]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sagevid_t5_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kT5 / "text_encoder" / "model.safetensors", dir / "model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(kT5 / "text_encoder" / "config.json"));
  config["d_ff"] = 64;
  std::ofstream(dir / "config.json") << config.dump();
  REQUIRE_THROWS_WITH(
      sagevid::T5Encoder::load(dir, at::TensorOptions()),
      ContainsSubstring("tensor 'encoder.block.0.layer.1.DenseReluDense.wi_0.weight' has shape [48, 32], "
                        "the config expects [64, 32]"));
  config["d_ff"] = 48;
  config["num_layers"] = 1;
  std::ofstream(dir / "config.json") << config.dump();
  REQUIRE_THROWS_WITH(sagevid::T5Encoder::load(dir, at::TensorOptions()),
                      ContainsSubstring("has no place for: encoder.block.1"));
  config["num_layers"] = 3;
  std::ofstream(dir / "config.json") << config.dump();
  REQUIRE_THROWS_WITH(sagevid::T5Encoder::load(dir, at::TensorOptions()),
                      ContainsSubstring("missing tensor 'encoder.block.2.layer.0.layer_norm.weight'"));
  config["feed_forward_proj"] = "relu";
  std::ofstream(dir / "config.json") << config.dump();
  REQUIRE_THROWS_WITH(sagevid::T5Encoder::load(dir, at::TensorOptions()), ContainsSubstring("feed_forward_proj"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a weight stored as I32 is refused at load naming the file, the tensor and the dtype", "[t5]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto weights = sagevid::SafetensorsModel::open(kT5 / "text_encoder" / "model.safetensors");
  const std::vector<std::string> names = weights.names();
  const std::string damaged = names[rng.seed % names.size()];
  CAPTURE(damaged);
  sagevid::testing::SafetensorsWriter writer;
  for (const std::string& name : names) {
    const bool is_damaged = name == damaged;
    const at::Tensor stored = is_damaged ? weights.view(name).to(at::kInt) : weights.view(name).contiguous();
    writer.add(name, is_damaged ? "I32" : weights.info(name).dtype_name, stored.sizes().vec(),
               sagevid::testing::bytes_of(stored));
  }
  const sagevid::testing::TempDir dir;
  writer.write(dir / "model.safetensors");
  std::filesystem::copy_file(kT5 / "text_encoder" / "config.json", dir / "config.json");
  REQUIRE_THROWS_WITH(sagevid::T5Encoder::load(dir.path, at::TensorOptions()),
                      ContainsSubstring((dir / "model.safetensors").string()) &&
                          ContainsSubstring("tensor '" + damaged + "' is stored as I32") && ContainsSubstring("F32"));
}
