#include "catch.h"
#include "safetensors_writer.h"
#include "sagevid/models/safetensors.h"

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <sys/stat.h>  // mkdir

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sagevid::SafetensorsError;
using sagevid::SafetensorsFile;
using sagevid::SafetensorsModel;
using sagevid::TensorInfo;
using sagevid::testing::bytes_of;
using sagevid::testing::le64;
using sagevid::testing::read_file;
using sagevid::testing::safetensors_bytes;
using sagevid::testing::SafetensorsWriter;
using sagevid::testing::TempDir;
using sagevid::testing::write_file;

struct Dtype {
  const char* name;
  at::ScalarType type;
  size_t size;
};

const std::vector<Dtype> kDtypes = {
    {"F64", at::ScalarType::Double, 8},
    {"F32", at::ScalarType::Float, 4},
    {"F16", at::ScalarType::Half, 2},
    {"BF16", at::ScalarType::BFloat16, 2},
    {"F8_E4M3", at::ScalarType::Float8_e4m3fn, 1},
    {"F8_E5M2", at::ScalarType::Float8_e5m2, 1},
    {"I64", at::ScalarType::Long, 8},
    {"I32", at::ScalarType::Int, 4},
    {"I16", at::ScalarType::Short, 2},
    {"I8", at::ScalarType::Char, 1},
    {"U8", at::ScalarType::Byte, 1},
    {"BOOL", at::ScalarType::Bool, 1},
    {"U16", at::ScalarType::UInt16, 2},
    {"U32", at::ScalarType::UInt32, 4},
    {"U64", at::ScalarType::UInt64, 8},
};

std::mt19937_64 fresh_rng() { return std::mt19937_64(std::random_device{}()); }

// n random bytes, never all zero (an all-zero read would hide an offset bug).
std::string random_bytes(size_t n, std::mt19937_64& rng, bool booleans = false) {
  std::string out(n, '\0');
  for (char& c : out) c = char(booleans ? rng() & 1 : rng());
  if (n > 0 && out.find_first_not_of('\0') == std::string::npos) out[0] = 1;
  return out;
}

std::vector<int64_t> sizes_of(const at::Tensor& t) { return t.sizes().vec(); }

// Runs f, which must throw; an accepted input throws a logic_error naming `what`, so a failing
// REQUIRE_THROWS_WITH below shows which case slipped through.
template <class F>
void must_throw(F&& f, const std::string& what) {
  f();
  throw std::logic_error("accepted: " + what);
}

void require_rejected(const fs::path& file, const std::vector<std::string>& fragments) {
  const std::string name = file.filename().string();
  for (const auto& fragment : fragments)
    REQUIRE_THROWS_WITH(must_throw([&] { SafetensorsFile::open(file); }, name),
                        ContainsSubstring(name) && ContainsSubstring(fragment));
  REQUIRE_THROWS_AS(SafetensorsFile::open(file), SafetensorsError);
  REQUIRE_THROWS_AS(SafetensorsModel::open(file), SafetensorsError);
}

void require_model_rejected(const fs::path& path, const std::vector<std::string>& fragments) {
  for (const auto& fragment : fragments)
    REQUIRE_THROWS_WITH(must_throw([&] { SafetensorsModel::open(path); }, path.string()), ContainsSubstring(fragment));
  REQUIRE_THROWS_AS(SafetensorsModel::open(path), SafetensorsError);
}

}  // namespace

TEST_CASE("SafetensorsFile round-trips every dtype", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();
  SafetensorsWriter writer;
  std::map<std::string, std::string> written;
  for (const Dtype& d : kDtypes) {
    const std::string name = std::string("layer.") + d.name;
    written[name] = random_bytes(6 * d.size, rng, d.type == at::ScalarType::Bool);
    writer.add(name, d.name, {2, 3}, written[name]);
  }
  writer.write(dir / "all.safetensors");

  const SafetensorsFile file = SafetensorsFile::open(dir / "all.safetensors");
  REQUIRE(file.path().string() == (dir / "all.safetensors").string());
  std::vector<std::string> expected_names;
  for (const auto& [name, bytes] : written) expected_names.push_back(name);
  REQUIRE(file.names() == expected_names);
  REQUIRE(file.metadata().empty());

  for (const Dtype& d : kDtypes) {
    const std::string name = std::string("layer.") + d.name;
    REQUIRE(file.contains(name));
    const TensorInfo& info = file.info(name);
    CHECK(info.name == name);
    CHECK(info.dtype_name == d.name);
    CHECK(info.dtype == d.type);
    CHECK(info.shape == std::vector<int64_t>{2, 3});
    CHECK(info.data_end - info.data_begin == 6 * d.size);

    const at::Tensor view = file.view(name);
    CHECK(view.scalar_type() == d.type);
    CHECK(view.device().is_cpu());
    CHECK(view.is_contiguous());
    CHECK(sizes_of(view) == std::vector<int64_t>{2, 3});
    CHECK(bytes_of(view) == written[name]);

    const at::Tensor loaded = file.load(name, at::TensorOptions());
    CHECK(loaded.scalar_type() == d.type);
    CHECK(loaded.data_ptr() != view.data_ptr());
    CHECK(bytes_of(loaded) == written[name]);
  }
  CHECK(!file.contains("layer.F128"));
}

TEST_CASE("views alias the mapping and outlive the file without writing to it", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();
  const std::string bytes = random_bytes(64 * 4, rng);
  SafetensorsWriter().add("w", "F32", {8, 8}, bytes).write(dir / "w.safetensors");
  const std::string on_disk = read_file(dir / "w.safetensors");

  at::Tensor a, b;
  {
    auto file = std::make_unique<SafetensorsFile>(SafetensorsFile::open(dir / "w.safetensors"));
    a = file->view("w");
    b = file->view("w");
    const SafetensorsFile copy = *file;  // copies share the mapping too
    CHECK(copy.view("w").data_ptr() == a.data_ptr());
  }  // the file objects are gone; the views keep the mapping alive
  REQUIRE(a.data_ptr() == b.data_ptr());
  REQUIRE(bytes_of(a) == bytes);

  // MAP_PRIVATE: a write lands in a private copy-on-write page, visible through the mapping only.
  static_cast<float*>(a.data_ptr())[0] = 42.0f;
  CHECK(static_cast<const float*>(b.data_ptr())[0] == 42.0f);
  CHECK(read_file(dir / "w.safetensors") == on_disk);
  CHECK(bytes_of(SafetensorsFile::open(dir / "w.safetensors").view("w")) == bytes);
}

TEST_CASE("load converts to the target dtype", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> f32(10);
  for (float& v : f32) v = normal(rng);
  std::vector<uint16_t> bf16(7);
  for (uint16_t& v : bf16) {
    float x = normal(rng);
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    v = uint16_t(bits >> 16);  // truncation of a finite float: a finite bf16
  }
  std::vector<int32_t> i32(5);
  for (int32_t& v : i32) v = int32_t(rng());
  SafetensorsWriter()
      .add("f32", "F32", {2, 5}, std::string(reinterpret_cast<const char*>(f32.data()), f32.size() * 4))
      .add("bf16", "BF16", {7}, std::string(reinterpret_cast<const char*>(bf16.data()), bf16.size() * 2))
      .add("i32", "I32", {5}, std::string(reinterpret_cast<const char*>(i32.data()), i32.size() * 4))
      .write(dir / "m.safetensors");
  const SafetensorsFile file = SafetensorsFile::open(dir / "m.safetensors");

  const at::Tensor d = file.load("f32", at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  REQUIRE(d.scalar_type() == at::kDouble);
  REQUIRE(sizes_of(d) == std::vector<int64_t>{2, 5});
  for (size_t i = 0; i < f32.size(); ++i) CHECK(static_cast<const double*>(d.data_ptr())[i] == double(f32[i]));

  const at::Tensor f = file.load("bf16", at::TensorOptions().dtype(at::kFloat));
  REQUIRE(f.scalar_type() == at::kFloat);
  for (size_t i = 0; i < bf16.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, static_cast<const float*>(f.data_ptr()) + i, 4);
    CHECK(bits == uint32_t(bf16[i]) << 16);
  }

  const at::Tensor l = file.load("i32", at::TensorOptions().dtype(at::kLong));
  REQUIRE(l.scalar_type() == at::kLong);
  for (size_t i = 0; i < i32.size(); ++i) CHECK(static_cast<const int64_t*>(l.data_ptr())[i] == i32[i]);
}

TEST_CASE("unaligned data comes back as a correct aligned copy", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();
  const std::string pad = random_bytes(1, rng), f32 = random_bytes(5 * 4, rng), f64 = random_bytes(3 * 8, rng);
  // Packed back to back: f32 starts at data offset 1 and f64 at 21, both misaligned.
  SafetensorsWriter()
      .add("a.pad", "U8", {1}, pad)
      .add("b.f32", "F32", {5}, f32)
      .add("c.f64", "F64", {3}, f64)
      .write(dir / "u.safetensors");
  const SafetensorsFile file = SafetensorsFile::open(dir / "u.safetensors");
  REQUIRE(file.info("b.f32").data_begin == 1);

  for (const auto& [name, bytes, align] : {std::tuple{"b.f32", f32, 4}, std::tuple{"c.f64", f64, 8}}) {
    const at::Tensor v = file.view(name);
    CHECK(reinterpret_cast<uintptr_t>(v.data_ptr()) % align == 0);
    CHECK(v.data_ptr() != file.view(name).data_ptr());  // a copy each time, not the mapping
    CHECK(bytes_of(v) == bytes);
    CHECK(bytes_of(file.load(name, at::TensorOptions())) == bytes);
  }
  CHECK(bytes_of(file.view("a.pad")) == pad);
}

TEST_CASE("metadata and empty data sections and zero-element tensors", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();

  SECTION("metadata is read as strings") {
    const std::string bytes = random_bytes(4, rng);
    SafetensorsWriter()
        .metadata("format", "pt")
        .metadata("note", "x = \"1\"")
        .add("t", "I32", {1}, bytes)
        .write(dir / "meta.safetensors");
    const SafetensorsFile file = SafetensorsFile::open(dir / "meta.safetensors");
    CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "x = \"1\""}});
    CHECK(file.names() == std::vector<std::string>{"t"});
    CHECK(bytes_of(file.view("t")) == bytes);
  }
  SECTION("a header-only file (0-byte data section) with zero-element tensors sharing offsets") {
    write_file(dir / "empty.safetensors",
               safetensors_bytes(R"({"__metadata__":{"k":"v"},"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                 R"("z":{"dtype":"BF16","shape":[3,0,2],"data_offsets":[0,0]}})",
                                 ""));
    const SafetensorsFile file = SafetensorsFile::open(dir / "empty.safetensors");
    CHECK(file.metadata().at("k") == "v");
    CHECK(file.names() == std::vector<std::string>{"e", "z"});
    CHECK(sizes_of(file.view("e")) == std::vector<int64_t>{0});
    CHECK(sizes_of(file.view("z")) == std::vector<int64_t>{3, 0, 2});
    CHECK(file.load("z", at::TensorOptions().dtype(at::kFloat)).numel() == 0);
  }
  SECTION("no tensors at all, unpadded") {
    write_file(dir / "none.safetensors", safetensors_bytes("{}", "", 1));
    const SafetensorsFile file = SafetensorsFile::open(dir / "none.safetensors");
    CHECK(file.names().empty());
    CHECK(file.metadata().empty());
  }
  SECTION("a zero-element tensor between two others, and a scalar") {
    const std::string a = random_bytes(8, rng), s = random_bytes(2, rng);
    SafetensorsWriter()
        .add("a", "F64", {1}, a)
        .add("b.empty", "I64", {0, 5}, "")
        .add("c.scalar", "F16", {}, s)
        .write(dir / "mixed.safetensors");
    const SafetensorsFile file = SafetensorsFile::open(dir / "mixed.safetensors");
    CHECK(file.info("b.empty").data_begin == 8);
    CHECK(file.view("b.empty").numel() == 0);
    CHECK(file.view("c.scalar").dim() == 0);
    CHECK(bytes_of(file.view("c.scalar")) == s);
    CHECK(bytes_of(file.view("a")) == a);
  }
}

TEST_CASE("sharded checkpoint through an index", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();
  const std::string e = random_bytes(12 * 2, rng), n = random_bytes(4 * 4, rng), p = random_bytes(6 * 2, rng);
  SafetensorsWriter().add("embed", "BF16", {4, 3}, e).add("norm", "F32", {4}, n).write(dir / "shard-1.safetensors");
  SafetensorsWriter().add("proj", "F16", {2, 3}, p).add("unlisted", "U8", {1}, "x").write(dir / "shard-2.safetensors");
  const json index = {
      {"metadata", {{"total_size", 52}}},
      {"weight_map",
       {{"embed", "shard-1.safetensors"}, {"norm", "shard-1.safetensors"}, {"proj", "shard-2.safetensors"}}}};
  write_file(dir / "model.safetensors.index.json", index.dump(2));

  for (const fs::path& path : {dir / "model.safetensors.index.json", dir.path}) {
    const SafetensorsModel model = SafetensorsModel::open(path);
    CHECK(model.path().string() == (dir / "model.safetensors.index.json").string());
    CHECK(model.names() == std::vector<std::string>{"embed", "norm", "proj"});
    CHECK(model.contains("proj"));
    CHECK(!model.contains("unlisted"));  // only what the weight_map lists
    CHECK(model.file_of("embed").path().string() == (dir / "shard-1.safetensors").string());
    CHECK(model.file_of("proj").path().string() == (dir / "shard-2.safetensors").string());
    CHECK(&model.file_of("embed") == &model.file_of("norm"));  // each shard opened once
    CHECK(model.info("proj").dtype == at::kHalf);
    CHECK(bytes_of(model.view("embed")) == e);
    CHECK(bytes_of(model.view("norm")) == n);
    CHECK(bytes_of(model.load("proj", at::TensorOptions())) == p);
    CHECK(model.load("embed", at::TensorOptions().dtype(at::kFloat)).scalar_type() == at::kFloat);
    REQUIRE_THROWS_WITH(model.view("missing.w"),
                        ContainsSubstring("missing.w") && ContainsSubstring("model.safetensors.index.json"));
  }
}

TEST_CASE("SafetensorsModel opens a single file or the one checkpoint in a directory", "[safetensors]") {
  TempDir dir;
  auto rng = fresh_rng();
  const std::string w = random_bytes(8, rng);
  SafetensorsWriter().add("w", "I16", {4}, w).write(dir / "model.safetensors");
  write_file(dir / "config.json", "{}");  // other files are ignored

  for (const fs::path& path : {dir / "model.safetensors", dir.path}) {
    const SafetensorsModel model = SafetensorsModel::open(path);
    CHECK(model.path().string() == (dir / "model.safetensors").string());
    CHECK(model.names() == std::vector<std::string>{"w"});
    CHECK(model.file_of("w").path().string() == (dir / "model.safetensors").string());
    CHECK(bytes_of(model.view("w")) == w);
  }
}

TEST_CASE("unknown tensor names are errors naming file and tensor", "[safetensors]") {
  TempDir dir;
  SafetensorsWriter().add("w", "U8", {2}, "ab").write(dir / "known.safetensors");
  const SafetensorsFile file = SafetensorsFile::open(dir / "known.safetensors");
  // (Combined matchers hold references to their parts, so each is spelled out in its own statement.)
  REQUIRE_THROWS_AS(file.info("no.such.w"), SafetensorsError);
  REQUIRE_THROWS_WITH(file.info("no.such.w"), ContainsSubstring("known.safetensors") && ContainsSubstring("no.such.w"));
  REQUIRE_THROWS_WITH(file.view("no.such.w"), ContainsSubstring("known.safetensors") && ContainsSubstring("no.such.w"));
  REQUIRE_THROWS_WITH(file.load("no.such.w", at::TensorOptions()),
                      ContainsSubstring("known.safetensors") && ContainsSubstring("no.such.w"));
  const SafetensorsModel model = SafetensorsModel::open(dir / "known.safetensors");
  REQUIRE_THROWS_AS(model.file_of("no.such.w"), SafetensorsError);
  REQUIRE_THROWS_WITH(model.info("no.such.w"),
                      ContainsSubstring("known.safetensors") && ContainsSubstring("no.such.w"));
}

TEST_CASE("corrupt files are rejected with the file and tensor named", "[safetensors]") {
  struct Case {
    std::string bytes;
    std::vector<std::string> fragments;  // besides the file name
  };
  // One tensor entry "w.bad" with the given body, and 8 data bytes.
  auto bad = [](const std::string& body) { return safetensors_bytes(R"({"w.bad":)" + body + "}", "01234567"); };
  const std::string max_dim = std::to_string(std::numeric_limits<uint64_t>::max());
  const std::vector<Case> cases = {
      {"", {"shorter than"}},
      {std::string("\x02\x00\x00\x00\x00", 5), {"shorter than"}},
      {le64(100) + "{}      ", {"past the end"}},
      {le64(std::numeric_limits<uint64_t>::max()) + "{}      ", {"exceeds the limit"}},
      {le64(1ull << 40) + std::string(64, ' '), {"exceeds the limit"}},
      {le64(0), {"not valid JSON"}},
      {safetensors_bytes(R"({"w.bad": {"dtype": "F32",)", ""), {"not valid JSON"}},
      {safetensors_bytes("{\"w\xff\xfe\":{}}", ""), {"not valid JSON"}},
      {safetensors_bytes("[1, 2]", ""), {"must be a JSON object"}},
      {bad("[1]"), {"w.bad", "must be an object"}},
      {bad(R"({"shape":[2],"data_offsets":[0,8]})"), {"w.bad", "missing \"dtype\""}},
      {bad(R"({"dtype":"F32","data_offsets":[0,8]})"), {"w.bad", "missing \"shape\""}},
      {bad(R"({"dtype":"F32","shape":[2]})"), {"w.bad", "missing \"data_offsets\""}},
      {bad(R"({"dtype":32,"shape":[2],"data_offsets":[0,8]})"), {"w.bad", "\"dtype\" must be a string"}},
      {bad(R"({"dtype":"F17","shape":[2],"data_offsets":[0,8]})"), {"w.bad", "unknown dtype \"F17\""}},
      {bad(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), {"w.bad", "unknown dtype"}},
      {bad(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), {"w.bad", "\"shape\" must be an array"}},
      {bad(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), {"w.bad", "must be integers"}},
      {bad(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), {"w.bad", "must be integers"}},
      {bad(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), {"w.bad", "negative"}},
      {bad(R"({"dtype":"U8","shape":[)" + max_dim + R"(],"data_offsets":[0,8]})"), {"w.bad", "too large"}},
      {bad(R"({"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]})"), {"w.bad", "too large"}},
      {bad(R"({"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]})"), {"w.bad", "too large"}},
      {bad(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), {"w.bad", "[begin, end]"}},
      {bad(R"({"dtype":"F32","shape":[2],"data_offsets":{"a":0,"b":8}})"), {"w.bad", "[begin, end]"}},
      {bad(R"({"dtype":"F32","shape":[2],"data_offsets":[0,"8"]})"), {"w.bad", "must be integers"}},
      {bad(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), {"w.bad", "negative"}},
      {bad(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), {"w.bad", "needs 8 bytes"}},
      {bad(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), {"w.bad", "begin > end"}},
      {bad(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"), {"w.bad", "beyond the data section"}},
      {bad(R"({"dtype":"U8","shape":[1],"data_offsets":[8,9]})"), {"w.bad", "beyond the data section"}},
      {bad(R"({"dtype":"U8","shape":[0],"data_offsets":[9,9]})"), {"w.bad", "beyond the data section"}},
      {safetensors_bytes(R"({"w.first":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("w.bad":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         "0123456789ab"),
       {"w.bad", "overlaps tensor 'w.first'"}},
      {safetensors_bytes(R"({"w.bad":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                         R"("w.bad":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                         "0123"),
       {"w.bad", "appears twice"}},
      {safetensors_bytes(R"({"__metadata__":["a"]})", ""), {"__metadata__", "must be an object"}},
      {safetensors_bytes(R"({"__metadata__":{"k":1}})", ""), {"__metadata__", "must be a string"}},
  };

  TempDir dir;
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path file = dir / ("case_" + std::to_string(i) + ".safetensors");
    write_file(file, cases[i].bytes);
    require_rejected(file, cases[i].fragments);
  }
  REQUIRE_THROWS_WITH(SafetensorsFile::open(dir / "absent.safetensors"), ContainsSubstring("absent.safetensors"));
  REQUIRE_THROWS_WITH(SafetensorsFile::open(dir.path), ContainsSubstring("not a regular file"));
}

TEST_CASE("hostile indexes and ambiguous directories are rejected", "[safetensors]") {
  TempDir dir;
  SafetensorsWriter().add("a", "U8", {2}, "ab").write(dir / "s1.safetensors");
  const fs::path index = dir / "model.safetensors.index.json";
  auto write_index = [&](const json& weight_map) { write_file(index, json{{"weight_map", weight_map}}.dump()); };

  SECTION("shard names that leave the directory") {
    for (const std::string& shard :
         std::vector<std::string>{"../s1.safetensors", "sub/s1.safetensors", "..", "a\\s1.safetensors", "",
                                  "/tmp/s1.safetensors", std::string("s1\0.safetensors", 15)}) {
      write_index({{"a", shard}});
      require_model_rejected(index, {"model.safetensors.index.json", "not a plain file name", "'a'"});
    }
  }
  SECTION("a missing shard") {
    write_index({{"a", "s1.safetensors"}, {"b", "s9.safetensors"}});
    require_model_rejected(index, {"model.safetensors.index.json", "s9.safetensors", "No such file"});
  }
  SECTION("a tensor its shard does not have") {
    write_index({{"a", "s1.safetensors"}, {"ghost.w", "s1.safetensors"}});
    require_model_rejected(index, {"model.safetensors.index.json", "ghost.w", "s1.safetensors"});
  }
  SECTION("a corrupt shard") {
    write_file(dir / "s2.safetensors", "garbage!garbage!");
    write_index({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
    require_model_rejected(index, {"model.safetensors.index.json", "s2.safetensors", "exceeds the limit"});
  }
  SECTION("malformed index json") {
    write_file(index, R"({"weight_map": {"a": "s1.safetensors")");
    require_model_rejected(index, {"model.safetensors.index.json", "not valid JSON"});
    write_file(index, R"({"metadata": {}})");
    require_model_rejected(index, {"model.safetensors.index.json", "weight_map"});
    write_file(index, R"({"weight_map": ["s1.safetensors"]})");
    require_model_rejected(index, {"model.safetensors.index.json", "weight_map"});
    write_index({{"a", 1}});
    require_model_rejected(index, {"model.safetensors.index.json", "'a'", "must be a string"});
  }
  SECTION("directories with no single entry point") {
    TempDir empty;
    require_model_rejected(empty.path, {empty.path.string(), "found neither"});
    SafetensorsWriter().add("b", "U8", {1}, "b").write(dir / "s2.safetensors");
    require_model_rejected(dir.path, {"s1.safetensors", "s2.safetensors"});
    write_index({{"a", "s1.safetensors"}});
    write_file(dir / "other.safetensors.index.json", "{}");
    require_model_rejected(dir.path, {"model.safetensors.index.json", "other.safetensors.index.json"});
    require_model_rejected(dir / "nothing-here", {"nothing-here", "No such file"});
    TempDir nested;  // its one "*.safetensors" entry is a directory: an error, not a descent
    ::mkdir((nested / "inner.safetensors").c_str(), 0700);
    require_model_rejected(nested.path, {"inner.safetensors", "not a regular file"});
  }
}

TEST_CASE("random mutations give a SafetensorsError or a readable file and never crash", "[safetensors]") {
  TempDir dir;
  std::mt19937_64 rng(20240917);  // fixed: a failure must be reproducible
  SafetensorsWriter writer;
  writer.metadata("format", "pt")
      .add("blocks.0.attn.qkv", "BF16", {4, 6}, random_bytes(48, rng))
      .add("blocks.0.norm", "F32", {6}, random_bytes(24, rng))
      .add("empty", "F16", {0, 3}, "")
      .add("ids", "I64", {3}, random_bytes(24, rng))
      .add("mask", "BOOL", {5}, random_bytes(5, rng, true))
      .add("scale", "F8_E4M3", {2, 2}, random_bytes(4, rng));
  const std::string original = writer.bytes();
  const size_t header_end = 8 + writer.header().size();
  const fs::path file = dir / "mutant.safetensors";

  auto pick = [&](size_t lo, size_t hi) { return lo + size_t(rng() % (hi - lo)); };
  int accepted = 0, rejected = 0;
  for (int round = 0; round < 400; ++round) {
    std::string bytes = original;
    switch (round % 4) {
      case 0:  // bit flips in the length prefix and header
        for (int k = 0, n = int(pick(1, 4)); k < n; ++k) bytes[pick(0, header_end)] ^= char(1 << pick(0, 8));
        break;
      case 1: {  // rewrite a digit of a shape or offset, which keeps the JSON valid
        std::vector<size_t> digits;
        for (size_t i = 8; i < header_end; ++i)
          if (bytes[i] >= '0' && bytes[i] <= '9') digits.push_back(i);
        bytes[digits[pick(0, digits.size())]] = char('0' + pick(0, 10));
        break;
      }
      case 2:  // truncation anywhere
        bytes.resize(pick(0, bytes.size()));
        break;
      default:  // random bytes anywhere, header or data
        for (int k = 0, n = int(pick(1, 8)); k < n; ++k) bytes[pick(0, bytes.size())] = char(rng());
        break;
    }
    write_file(file, bytes);
    // Anything but SafetensorsError escapes and fails the test.
    try {
      const SafetensorsFile f = SafetensorsFile::open(file);
      uint64_t checksum = 0;
      for (const auto& name : f.names())
        for (char c : bytes_of(f.view(name))) checksum += uint8_t(c);  // touch every byte
      CHECK(checksum < (1ull << 40));
      ++accepted;
    } catch (const SafetensorsError&) {
      ++rejected;
    }
  }
  CHECK(accepted > 0);
  CHECK(rejected > 0);
}

namespace {

// Compares one tensor against expected.json (written by make_safetensors_fixtures.py).
template <class Source>
void check_expected(const Source& source, const std::string& name, const json& expected) {
  const TensorInfo& info = source.info(name);
  CHECK(info.dtype_name == expected.at("dtype").get<std::string>());
  CHECK(info.shape == expected.at("shape").get<std::vector<int64_t>>());
  const json& values = expected.at("values");
  if (at::isFloatingType(info.dtype)) {
    const at::Tensor t = source.load(name, at::TensorOptions().dtype(at::kDouble));
    REQUIRE(size_t(t.numel()) == values.size());
    for (size_t i = 0; i < values.size(); ++i)
      CHECK(static_cast<const double*>(t.data_ptr())[i] == values[i].get<double>());
  } else {  // integers and bools, compared as int64 (U64 by its bit pattern)
    const at::Tensor t = source.load(name, at::TensorOptions().dtype(at::kLong));
    REQUIRE(size_t(t.numel()) == values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      const json& v = values[i];
      const int64_t want = v.is_boolean()           ? int64_t(v.get<bool>())
                           : v.is_number_unsigned() ? int64_t(v.get<uint64_t>())
                                                    : v.get<int64_t>();
      CHECK(static_cast<const int64_t*>(t.data_ptr())[i] == want);
    }
  }
}

std::vector<std::string> sorted_keys(const json& object) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : object.items()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace

TEST_CASE("reads files written by the Python safetensors package", "[safetensors]") {
  const fs::path dir = fs::path(SAGEVID_FIXTURES_DIR) / "safetensors";
  const json expected = json::parse(read_file(dir / "expected.json"));

  SECTION("one file: every dtype, metadata, a scalar and an empty tensor") {
    const json& basic = expected.at("basic.safetensors");
    const SafetensorsFile file = SafetensorsFile::open(dir / "basic.safetensors");
    CHECK(file.metadata() == basic.at("metadata").get<std::map<std::string, std::string>>());
    REQUIRE(file.names() == sorted_keys(basic.at("tensors")));
    for (const auto& name : file.names()) check_expected(file, name, basic.at("tensors").at(name));
  }
  SECTION("a two-shard checkpoint with an index") {
    const json& sharded = expected.at("sharded");
    const SafetensorsModel model = SafetensorsModel::open(dir / "sharded");
    REQUIRE(model.names() == sorted_keys(sharded.at("tensors")));
    for (const auto& name : model.names()) {
      CHECK(model.file_of(name).path().filename().string() == sharded.at("weight_map").at(name).get<std::string>());
      check_expected(model, name, sharded.at("tensors").at(name));
    }
  }
}
