// Image-to-video on the tiny random I2V folders (tests/fixtures/make_i2v_fixtures.py: one like CogVideoX-5B-I2V,
// one like CogVideoX1.5-5B-I2V) on the CPU in fp32: parity with the frames diffusers'
// CogVideoXImageToVideoPipeline made from them, and what the pipeline asks of a request's image.
#include "catch.h"
#include "unit/safetensors_writer.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"

#include "counting_cpu_allocator.h"
#include "pipeline_parity.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sagevid::CogVideoXPipeline;
using sagevid::GenerationRequest;

const fs::path kI2v = fs::path(SAGEVID_FIXTURES_DIR) / "i2v";
const fs::path kTiny = fs::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";

const CogVideoXPipeline& i2v_pipeline(const std::string& model) {
  static std::map<std::string, CogVideoXPipeline> loaded;
  auto found = loaded.find(model);
  if (found == loaded.end()) found = loaded.emplace(model, CogVideoXPipeline::load(kI2v / model, {})).first;
  return found->second;
}

at::Tensor fixture_image(const std::string& name) {
  return sagevid::SafetensorsModel::open(kI2v / "pixels.safetensors").view(name).clone();
}

struct Variant {
  std::string model;
  GenerationRequest request;
};

Variant variant(const std::string& name) {
  const nlohmann::json json = sagevid::read_json_file(kI2v / "requests.json").at(name);
  Variant v{json.at("model"), sagevid::test::request_from_json(json.at("request"))};
  v.request.image = fixture_image(json.at("image"));
  return v;
}

// The field an InvalidRequest names, or "" when the request passes.
std::string invalid_field(const CogVideoXPipeline& pipeline, const GenerationRequest& request) {
  try {
    pipeline.validate(request);
  } catch (const sagevid::InvalidRequest& e) {
    return e.field;
  }
  return "";
}

}  // namespace

TEST_CASE("image-to-video frames match diffusers' CogVideoXImageToVideoPipeline, 1.0 and 1.5", "[pipeline][i2v]") {
  const std::string name = GENERATE(as<std::string>{}, "i2v-1.0", "i2v-1.5");
  CAPTURE(name);
  const Variant v = variant(name);
  const at::Tensor frames = sagevid::test::generated_frames(i2v_pipeline(v.model), v.request);
  const auto fixture = sagevid::SafetensorsModel::open(kI2v / "frames.safetensors");
  sagevid::test::check_frames_match(frames, fixture.view(name), name);
}

TEST_CASE("image-to-video over cfg 2 x ulysses 2 (CPU ranks) matches diffusers too", "[pipeline][i2v][parallel]") {
  const std::string name = GENERATE(as<std::string>{}, "i2v-1.0", "i2v-1.5");
  CAPTURE(name);
  const Variant v = variant(name);
  sagevid::PipelineOptions options;
  options.devices.assign(4, c10::Device(c10::kCPU));
  options.parallel = {2, 2};
  const at::Tensor frames =
      sagevid::test::generated_frames(CogVideoXPipeline::load(kI2v / v.model, options), v.request);
  const auto fixture = sagevid::SafetensorsModel::open(kI2v / "frames.safetensors");
  sagevid::test::check_frames_match(frames, fixture.view(name), name + ", cfg 2 x ulysses 2");
}

TEST_CASE("the image conditions the video: another image gives other frames", "[pipeline][i2v]") {
  Variant v = variant("i2v-1.5");
  const CogVideoXPipeline& pipeline = i2v_pipeline(v.model);
  v.request.num_inference_steps = 1;
  const at::Tensor first = sagevid::test::generated_frames(pipeline, v.request);
  v.request.image = fixture_image("gradient");
  CHECK_FALSE(at::equal(first, sagevid::test::generated_frames(pipeline, v.request)));
}

TEST_CASE("the models say whether they take an image, and a request without or with a wrong one names the image",
          "[pipeline][i2v]") {
  const Variant v = variant("i2v-1.5");
  const CogVideoXPipeline& i2v = i2v_pipeline(v.model);
  const CogVideoXPipeline t2v = CogVideoXPipeline::load(kTiny, {});
  CHECK(i2v.limits().takes_image);
  CHECK_FALSE(t2v.limits().takes_image);
  CHECK(invalid_field(i2v, v.request).empty());
  const auto with = [&](const CogVideoXPipeline& pipeline, const std::function<void(GenerationRequest&)>& edit) {
    GenerationRequest request = v.request;
    edit(request);
    return invalid_field(pipeline, request);
  };
  CHECK(with(i2v, [](auto& r) { r.image.reset(); }) == "image");
  CHECK(with(t2v, [](auto& r) { r.num_frames = 9; }) == "image");
  CHECK(with(t2v, [](auto& r) { r.image.reset(); }).empty());
  CHECK(with(i2v, [](auto& r) { r.image = at::zeros({8, 8, 4}, at::kByte); }) == "image");
  CHECK(with(i2v, [](auto& r) { r.image = at::zeros({8, 8, 3}, at::kFloat); }) == "image");
  CHECK_THROWS_WITH(t2v.validate(v.request), ContainsSubstring("text-to-video"));
  CHECK_THROWS_WITH(i2v.validate(GenerationRequest{.prompt = "a cat", .num_frames = 9, .height = 32, .width = 48}),
                    ContainsSubstring("needs an image"));
}

TEST_CASE("learned positional embeddings (5B-I2V) serve their sample size only, at any frame count",
          "[pipeline][i2v]") {
  const Variant v = variant("i2v-1.0");
  const CogVideoXPipeline& pipeline = i2v_pipeline(v.model);
  CHECK(pipeline.limits().only_height == 64);
  CHECK(pipeline.limits().only_width == 96);
  CHECK(i2v_pipeline("cogvideox1.5-i2v").limits().only_height == 0);
  GenerationRequest request = v.request;
  request.height = 32;
  CHECK(invalid_field(pipeline, request) == "height");
  request = v.request;
  request.width = 48;
  CHECK(invalid_field(pipeline, request) == "width");
  request = v.request;
  request.num_frames = 17;
  CHECK(invalid_field(pipeline, request).empty());
}

TEST_CASE("an image-to-video index over a text-to-video transformer, and the reverse, are refused at load",
          "[pipeline][i2v]") {
  const sagevid::testing::TempDir dir;
  for (const char* part : {"tokenizer", "text_encoder", "scheduler", "vae"})
    fs::create_symlink(kI2v / "cogvideox1.5-i2v" / part, dir / part);
  fs::create_symlink(kTiny / "transformer", dir / "transformer");
  fs::copy_file(kI2v / "cogvideox1.5-i2v" / "model_index.json", dir / "model_index.json");
  CHECK_THROWS_WITH(CogVideoXPipeline::load(dir.path, {}),
                    ContainsSubstring("image-to-video") && ContainsSubstring("in/out channels 4/4"));
  fs::remove(dir / "transformer");
  fs::remove(dir / "model_index.json");
  fs::create_symlink(kI2v / "cogvideox1.5-i2v" / "transformer", dir / "transformer");
  fs::copy_file(kTiny / "model_index.json", dir / "model_index.json");
  CHECK_THROWS_WITH(CogVideoXPipeline::load(dir.path, {}), ContainsSubstring("text-to-video"));
}

// The image's VAE encode runs in the text-encode phase: at a large size it is that phase's peak, and the estimate
// covers what the CPU allocator sees (within 3x, like the other phases' estimates).
TEST_CASE("the memory estimate covers the image encode", "[pipeline][i2v]") {
  auto& allocator = sagevid::test::CountingCpuAllocator::installed();
  Variant v = variant("i2v-1.5");
  const CogVideoXPipeline& pipeline = i2v_pipeline(v.model);
  v.request.height = v.request.width = pipeline.limits().max_size;
  v.request.num_inference_steps = 1;
  v.request.guidance_scale = 1.0;
  const sagevid::MemoryEstimate estimate = pipeline.estimate_memory(v.request);
  allocator.reset_peak();
  const int64_t resident = allocator.live();
  int64_t peak = 0;
  bool stopped = false;
  sagevid::GenerationCallbacks callbacks;
  callbacks.on_phase = [&](sagevid::GenerationPhase phase) {
    if (phase == sagevid::GenerationPhase::denoise) peak = allocator.peak() - resident;
  };
  callbacks.cancelled = [&] { return stopped = peak > 0; };  // stop once the conditioning phase has ended
  CHECK_THROWS_AS(pipeline.generate(v.request, callbacks), sagevid::GenerationCancelled);
  REQUIRE(stopped);
  CAPTURE(peak, estimate.text_encode);
  CHECK(peak <= estimate.text_encode);
  CHECK(estimate.text_encode <= 3 * peak);
}

// Under a parallel plan every rank encodes the image (each conditions its own latents), and rank 0 alone encodes the
// text and decodes: the server checks each rank's estimate against its own device.
TEST_CASE("a rank's memory estimate holds the image encode, and rank 0's alone the text encode and the decode",
          "[pipeline][i2v][parallel]") {
  Variant v = variant("i2v-1.5");
  sagevid::PipelineOptions options;
  options.devices.assign(2, c10::Device(c10::kCPU));
  options.parallel = {2, 1};
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kI2v / v.model, options);
  const auto check = [&](const char* size) {
    CAPTURE(size);
    const sagevid::MemoryEstimate first = pipeline.estimate_memory(v.request, 0);
    const sagevid::MemoryEstimate other = pipeline.estimate_memory(v.request, 1);
    CHECK(other.text_encode > 0);
    CHECK(other.denoise == first.denoise);
    CHECK(other.decode == 0);
    CHECK(first.decode == i2v_pipeline(v.model).estimate_memory(v.request).decode);
    return std::pair{first.text_encode, other.text_encode};
  };
  const auto [first_small, other_small] = check("the fixture's");
  CHECK(other_small < first_small);  // T5's encode is the larger there, and rank 0's alone
  v.request.height = v.request.width = pipeline.limits().max_size;
  const auto [first_large, other_large] = check("the largest");
  CHECK(other_large == first_large);  // the image's encode is the phase's peak on every rank
}
