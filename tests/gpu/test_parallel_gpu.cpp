// One request over several GPUs (NCCL between rank threads): the tiny pipeline's frames with cfg 2, ulysses 2 and,
// on four GPUs, both, against the same request on one GPU (fp32, math attention).
#include "catch.h"

#include "sagevid/kernels/device_info.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/pipeline.h"

#include "integration/pipeline_parity.h"

#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;
const fs::path kModel = fs::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
const fs::path kFixture = fs::path(SAGEVID_FIXTURES_DIR) / "pipeline";

sagevid::PipelineOptions on_gpus(const sagevid::ParallelPlan& plan) {
  sagevid::PipelineOptions options;
  options.device = c10::Device(c10::kCUDA, 0);
  if (plan.world() == 1) return options;
  for (int i = 0; i < plan.world(); ++i) options.devices.emplace_back(c10::kCUDA, i);
  options.parallel = plan;
  return options;
}

}  // namespace

TEST_CASE("a request over several GPUs makes one GPU's frames", "[gpu][parallel]") {
  const sagevid::ParallelPlan plan =
      GENERATE(sagevid::ParallelPlan{2, 1}, sagevid::ParallelPlan{1, 2}, sagevid::ParallelPlan{2, 2});
  const std::string name = "cfg " + std::to_string(plan.cfg) + " x ulysses " + std::to_string(plan.ulysses);
  CAPTURE(name);
  if (plan.world() > sagevid::kernels::cuda_device_count()) {
    WARN(name << " not run: it needs " << plan.world() << " GPUs");
    return;
  }
  const sagevid::GenerationRequest request =
      sagevid::test::request_from_json(sagevid::read_json_file(kFixture / "request.json"));
  const at::Tensor one_gpu =
      sagevid::test::generated_frames(sagevid::CogVideoXPipeline::load(kModel, on_gpus({1, 1})), request);
  const at::Tensor frames =
      sagevid::test::generated_frames(sagevid::CogVideoXPipeline::load(kModel, on_gpus(plan)), request);
  REQUIRE(frames.sizes() == one_gpu.sizes());
  CHECK((frames.to(at::kInt) - one_gpu.to(at::kInt)).abs().max().item<int>() <= 1);
}

TEST_CASE("a tiled decode shared by two GPUs makes one GPU's frames", "[gpu][parallel]") {
  if (sagevid::kernels::cuda_device_count() < 2) {
    WARN("not run: it needs 2 GPUs");
    return;
  }
  sagevid::GenerationRequest request =
      sagevid::test::request_from_json(sagevid::read_json_file(kFixture / "request.json"));
  request.num_frames = 17;  // two decoded batches
  const auto tiled = [](sagevid::PipelineOptions options) {
    options.vae.tiling = true;  // 3 x 3 tiles at the tiny model's 64 x 96
    options.vae.tile_sample_min_height = 32;
    options.vae.tile_sample_min_width = 48;
    options.vae.tile_overlap_factor_height = 0.25;
    options.vae.tile_overlap_factor_width = 1.0 / 6;
    return options;
  };
  const at::Tensor one_gpu =
      sagevid::test::generated_frames(sagevid::CogVideoXPipeline::load(kModel, tiled(on_gpus({1, 1}))), request);
  const at::Tensor frames =
      sagevid::test::generated_frames(sagevid::CogVideoXPipeline::load(kModel, tiled(on_gpus({1, 2}))), request);
  REQUIRE(frames.sizes() == one_gpu.sizes());
  CHECK((frames.to(at::kInt) - one_gpu.to(at::kInt)).abs().max().item<int>() <= 1);
}
