// Device memory on CUDA: an offloaded text encoder leaves nothing of itself on the device and changes no frame.
#include "catch.h"
#include "test_random.h"

#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/cat.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <filesystem>
#include <vector>

namespace {

int64_t allocated() { return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current; }

}  // namespace

TEST_CASE("an offloaded T5 leaves the device after each prompt and gives the resident encoder's frames",
          "[gpu][pipeline]") {
  const std::filesystem::path model = std::filesystem::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::GenerationRequest request{
      .prompt = "a panda playing a guitar", .num_frames = 9, .height = 32, .width = 48, .num_inference_steps = 2,
      .seed = rng.seed};
  // Loads the tiny model with T5 placed so and runs the request: what the loaded pipeline holds on the device,
  // what the request left there, and its frames.
  struct Run {
    int64_t loaded = 0, left = 0;
    at::Tensor frames;
  };
  const auto run = [&](sagevid::TextEncoderPlacement placement) {
    const int64_t before = allocated();
    const auto pipeline = sagevid::CogVideoXPipeline::load(
        model, {.device = at::kCUDA, .dtype = at::kBFloat16, .text_encoder = placement});
    const int64_t loaded = allocated();
    std::vector<at::Tensor> batches;
    pipeline.generate(request, {.on_frames = [&](const at::Tensor& frames) { batches.push_back(frames); }});
    return Run{loaded - before, allocated() - loaded, at::cat(batches, 0).to(at::kInt)};
  };
  run(sagevid::TextEncoderPlacement::device);  // first: the libraries' workspaces, which stay, are in place
  const Run resident = run(sagevid::TextEncoderPlacement::device);
  const Run offloaded = run(sagevid::TextEncoderPlacement::offload);
  CHECK(resident.left == 0);
  CHECK(offloaded.left == 0);  // no block of the offloaded encoder stays on the device
  // The offloaded pipeline keeps at least T5's bf16 bytes less on the device.
  const auto t5 = sagevid::SafetensorsModel::open(model / "text_encoder");
  int64_t t5_bytes = 0;
  for (const std::string& name : t5.names()) t5_bytes += 2 * t5.view(name).numel();
  CAPTURE(resident.loaded, offloaded.loaded, t5_bytes);
  CHECK(resident.loaded - offloaded.loaded >= t5_bytes);
  // The same weights and kernels: the same frames (within a rounding step, should a library pick another kernel).
  CHECK((resident.frames - offloaded.frames).abs().max().item<int>() <= 1);
}
