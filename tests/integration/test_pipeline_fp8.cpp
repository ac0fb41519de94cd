// The tiny model's frames with FP8 linear layers (PipelineOptions::linear) against its own fp32 frames.
#include "catch.h"
#include "pipeline_parity.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/pipeline.h"

#include <ATen/TensorOperators.h>

#include <cmath>
#include <filesystem>

namespace {

const std::filesystem::path kModel = std::filesystem::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";

}  // namespace

TEST_CASE("the tiny model's frames with FP8 linears stay at 35 dB PSNR or more of its own", "[pipeline][fp8]") {
  const nlohmann::json fixture =
      sagevid::read_json_file(std::filesystem::path(SAGEVID_FIXTURES_DIR) / "pipeline" / "request.json");
  const sagevid::GenerationRequest request = sagevid::test::request_from_json(fixture);

  sagevid::PipelineOptions fp8_options;
  fp8_options.linear = sagevid::LinearPrecision::fp8;
  const at::Tensor native = sagevid::test::generated_frames(sagevid::CogVideoXPipeline::load(kModel, {}), request);
  const at::Tensor fp8 =
      sagevid::test::generated_frames(sagevid::CogVideoXPipeline::load(kModel, fp8_options), request);
  REQUIRE(fp8.sizes() == native.sizes());
  const double mse = (fp8.to(at::kDouble) - native.to(at::kDouble)).pow(2).mean().item<double>();
  const double psnr = mse == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / mse);
  WARN("tiny model, FP8 linears vs fp32: PSNR " << psnr << " dB");
  CHECK(psnr >= 35.0);
  CHECK(mse > 0);  // the FP8 layers did run
}

TEST_CASE("fast FP8 accumulation is refused without FP8 linears", "[pipeline][fp8]") {
  sagevid::PipelineOptions options;
  options.fp8_fast_accum = true;
  REQUIRE_THROWS_WITH(sagevid::CogVideoXPipeline::load(kModel, options),
                      ContainsSubstring("fp8_fast_accum needs FP8 linears"));
  options.linear = sagevid::LinearPrecision::fp8;  // on the CPU the products are fp32 either way
  CHECK(sagevid::CogVideoXPipeline::load(kModel, options).options().fp8_fast_accum);
}
