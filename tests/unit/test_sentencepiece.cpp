// Our SentencePiece unigram encoder against Python sentencepiece 0.2.3
// (tests/fixtures/make_sentencepiece_fixtures.py wrote the fixtures), and its refusals.
#include "catch.h"

#include "text_encoder/sentencepiece_model.h"
#include "text_encoder/sentencepiece_processor.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using sagevid::spm::SentencePieceProcessor;

const fs::path kFixtures = fs::path(SAGEVID_FIXTURES_DIR) / "sentencepiece";
const fs::path kSource = SAGEVID_SOURCE_DIR;

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::string from_hex(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return bytes;
}

fs::path write_temp(const std::string& name, const std::string& bytes) {
  const fs::path file = fs::temp_directory_path() / ("sagevid_spm_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(file, std::ios::binary) << bytes;
  return file;
}

// Parsing and loading must either work or throw std::runtime_error; anything else (a crash, an
// out-of-bounds read under a sanitizer) fails the test run.
void load_and_encode_or_throw(const std::string& bytes) {
  try {
    const SentencePieceProcessor processor(sagevid::spm::parse_model_proto(bytes));
    processor.encode("Hello, World! ｆｕｌｌ ﬁ 😀  x");
  } catch (const std::runtime_error&) {}
}

}  // namespace

TEST_CASE("the unigram encoder gives Python sentencepiece's ids", "[sentencepiece]") {
  const nlohmann::json cases = nlohmann::json::parse(std::ifstream(kFixtures / "cases.json"));
  const auto& strings = cases["strings"];
  const auto& byte_strings = cases["byte_strings"];
  REQUIRE(strings.size() >= 300);
  size_t compared = 0;
  for (const auto& [name, model] : cases["models"].items()) {
    CAPTURE(name);
    const auto processor = SentencePieceProcessor::load(kSource / model["file"].get<std::string>());
    CHECK(processor.unk_id() == model["unk_id"]);
    CHECK(processor.bos_id() == model["bos_id"]);
    CHECK(processor.eos_id() == model["eos_id"]);
    CHECK(processor.pad_id() == model["pad_id"]);
    for (size_t i = 0; i < strings.size(); ++i) {
      const std::string text = strings[i];
      CAPTURE(i, text);
      CHECK(processor.encode(text) == model["ids"][i].get<std::vector<int>>());
      ++compared;
    }
    for (size_t i = 0; i < byte_strings.size(); ++i) {  // malformed UTF-8
      const std::string hex = byte_strings[i];
      CAPTURE(hex);
      CHECK(processor.encode(from_hex(hex)) == model["byte_string_ids"][i].get<std::vector<int>>());
      ++compared;
    }
  }
  WARN("sentencepiece parity: " << compared << " encodings compared over " << cases["models"].size() << " models");
}

TEST_CASE("a file that is not a SentencePiece model is refused, naming the file", "[sentencepiece]") {
  REQUIRE_THROWS_WITH(SentencePieceProcessor::load(kFixtures / "missing.model"), ContainsSubstring("missing.model"));

  const fs::path garbage = write_temp("garbage.model", "this is not a protobuf message at all");
  REQUIRE_THROWS_WITH(SentencePieceProcessor::load(garbage), ContainsSubstring(garbage.string()));
  fs::remove(garbage);

  const std::string model = read_bytes(kFixtures / "identity_600.model");
  const fs::path truncated = write_temp("truncated.model", model.substr(0, model.size() - 1));
  REQUIRE_THROWS_WITH(SentencePieceProcessor::load(truncated),
                      ContainsSubstring(truncated.string()) && ContainsSubstring("past the end"));
  fs::remove(truncated);
}

TEST_CASE("models we do not implement are refused: BPE, byte fallback", "[sentencepiece]") {
  REQUIRE_THROWS_WITH(SentencePieceProcessor::load(kFixtures / "bpe.model"),
                      ContainsSubstring("bpe.model") && ContainsSubstring("only unigram models"));

  sagevid::spm::ModelProto model = sagevid::spm::parse_model_proto(read_bytes(kFixtures / "identity_600.model"));
  model.trainer_spec.byte_fallback = true;
  REQUIRE_THROWS_WITH(SentencePieceProcessor(model), ContainsSubstring("byte_fallback"));
  model.trainer_spec.byte_fallback = false;
  model.pieces.push_back(model.pieces.at(5));
  REQUIRE_THROWS_WITH(SentencePieceProcessor(model), ContainsSubstring("defined twice"));
}

TEST_CASE("truncated or corrupted models throw or load, never read out of bounds", "[sentencepiece]") {
  const std::string small = read_bytes(kFixtures / "identity_600.model");
  for (size_t length = 0; length < small.size(); length += 7) load_and_encode_or_throw(small.substr(0, length));

  // The charsmap (double-array trie and replacement table) is the part a bad offset could send astray.
  const std::string nfkc = read_bytes(kSource / "assets/tiny-cogvideox/tokenizer/spiece.model");
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string corrupt = nfkc;
    for (int flips = 0; flips < 20; ++flips) corrupt[rng() % corrupt.size()] = char(rng());
    load_and_encode_or_throw(corrupt);
  }
  sagevid::spm::ModelProto model = sagevid::spm::parse_model_proto(nfkc);
  const std::string charsmap = model.normalizer_spec.precompiled_charsmap;
  for (const size_t length : {0ul, 3ul, 4ul, 5ul, charsmap.size() / 2, charsmap.size() - 1}) {
    model.normalizer_spec.precompiled_charsmap = charsmap.substr(0, length);
    try {
      SentencePieceProcessor(model).encode("ｆｕｌｌ ﬁ Å");
    } catch (const std::runtime_error&) {}
  }
}
