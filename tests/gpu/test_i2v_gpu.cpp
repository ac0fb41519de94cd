// Image-to-video on CUDA: the tiny CogVideoX1.5-like I2V folder (tests/fixtures/make_i2v_fixtures.py), whose
// image latents, ofs input and noise cross from the CPU generator to the device, against diffusers' frames in fp32;
// in bf16, the serving dtype, a full run of the right shape.
#include "catch.h"

#include "integration/pipeline_parity.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/cat.h>

#include <filesystem>
#include <vector>

namespace {

const std::filesystem::path kI2v = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "i2v";

sagevid::GenerationRequest fixture_request(const std::string& variant) {
  const nlohmann::json json = sagevid::read_json_file(kI2v / "requests.json").at(variant);
  sagevid::GenerationRequest request = sagevid::test::request_from_json(json.at("request"));
  request.image = sagevid::SafetensorsModel::open(kI2v / "pixels.safetensors").view(json.at("image")).clone();
  return request;
}

}  // namespace

TEST_CASE("image-to-video on CUDA matches diffusers' frames in fp32 and runs in bf16", "[gpu][pipeline][i2v]") {
  const sagevid::GenerationRequest request = fixture_request("i2v-1.5");
  const auto model = kI2v / "cogvideox1.5-i2v";
  // The tiny transformer's head dim 16 is not sage2's: its calls fall back to cuDNN, T5's to math.
  const sagevid::AttentionConfig attention{sagevid::AttentionBackend::cudnn, sagevid::AttentionBackend::math, {}};
  const auto fp32 =
      sagevid::CogVideoXPipeline::load(model, {.device = at::kCUDA, .dtype = at::kFloat, .attention = attention});
  const at::Tensor got = sagevid::test::generated_frames(fp32, request).to(at::kInt);
  const at::Tensor want = sagevid::SafetensorsModel::open(kI2v / "frames.safetensors").view("i2v-1.5").to(at::kInt);
  REQUIRE(got.sizes() == want.sizes());
  const at::Tensor difference = (got - want).abs().to(at::kFloat);
  const double mean = difference.mean().item<double>();
  const double within_one = (difference <= 1).to(at::kDouble).mean().item<double>();
  WARN("i2v-1.5 fp32 CUDA vs diffusers (CPU): mean |difference| " << mean << "/255, " << within_one * 100
                                                                  << "% within 1/255");
  // cuDNN runs fp32 convolutions in TF32 by default, so not bit for bit; a misplaced or misordered input (the
  // image latents, the noise, ofs) would leave a different video, tens of levels off on average.
  CHECK(mean < 2.0);

  const auto bf16 =
      sagevid::CogVideoXPipeline::load(model, {.device = at::kCUDA, .dtype = at::kBFloat16, .attention = attention});
  CHECK(sagevid::test::generated_frames(bf16, request).sizes() == want.sizes());
}
