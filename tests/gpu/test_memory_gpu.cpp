// Device memory on CUDA: an offloaded text encoder leaves nothing of itself on the device and changes no frame,
// and the memory estimate's sage2 term covers what a sage2 call holds (white-box: models/src).
#include "catch.h"
#include "test_random.h"

#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <filesystem>
#include <vector>

namespace {

namespace sage2 = sagevid::kernels::sage2;

// Bytes asked of torch's caching allocator (its blocks can be larger), now and at the peak. Torch sets the
// allocator up on a process's first CUDA tensor: its statistics need one first.
c10::CachingDeviceAllocator::Stat requested_stat() {
  static const at::Tensor first = at::empty({1}, at::kCUDA);
  return c10::cuda::CUDACachingAllocator::getDeviceStats(0).requested_bytes[0];
}
int64_t requested() { return requested_stat().current; }
int64_t peak_requested() { return requested_stat().peak; }

}  // namespace

TEST_CASE("an offloaded T5 leaves the device after each prompt and gives the resident encoder's frames",
          "[gpu][pipeline]") {
  const std::filesystem::path model = std::filesystem::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::GenerationRequest request{.prompt = "a panda playing a guitar",
                                           .num_frames = 9,
                                           .height = 32,
                                           .width = 48,
                                           .num_inference_steps = 2,
                                           .seed = rng.seed};
  // Loads the tiny model with T5 placed so and runs the request: what the loaded pipeline holds on the device,
  // what the request left there, and its frames.
  struct Run {
    int64_t loaded = 0, left = 0;
    at::Tensor frames;
  };
  const auto run = [&](sagevid::TextEncoderPlacement placement) {
    const int64_t before = requested();
    const auto pipeline = sagevid::CogVideoXPipeline::load(
        model, {.device = at::kCUDA, .dtype = at::kBFloat16, .text_encoder = placement});
    const int64_t loaded = requested();
    std::vector<at::Tensor> batches;
    pipeline.generate(request, {.on_frames = [&](const at::Tensor& frames) { batches.push_back(frames); }});
    return Run{loaded - before, requested() - loaded, at::cat(batches, 0).to(at::kInt)};
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

TEST_CASE("sage2 workspace_bytes covers a call's preprocessing buffers, within a tenth", "[gpu][attention]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int cc = sagevid::kernels::compute_capability(0);
  sage2::Options options;  // the device's defaults, or the RTX 4090's (INT4 Q·Kᵀ with Q smoothing, FP8 P·V)
  if (GENERATE(false, true) && cc >= 89) {
    options.kernel = sage2::KernelFamily::mma_sync;
    options.qk = sage2::QkType::int4;
    options.pv = sage2::PvType::fp8;
  }
  const sage2::Options resolved = sage2::resolve(options, cc);
  // ΔS is twice an fp32 K at 8192 tokens: the term that dominates at CogVideoX's 17,776.
  const int64_t batch = 2, heads = 4, length = 8000, head_dim = 64;
  CAPTURE(*resolved.qk == sage2::QkType::int4, *resolved.smooth_q);
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor q = rng.normal({batch, heads, length, head_dim}, cuda), k = rng.normal(q.sizes(), cuda),
                   v = rng.normal(q.sizes(), cuda);
  sage2::attention(q, k, v, options);  // first: cuBLAS's workspace for ΔS's matmul is cached from then on
  const int64_t before = requested();
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  const at::Tensor out = sage2::attention(q, k, v, options).out;
  const int64_t measured = peak_requested() - before - int64_t(out.nbytes());
  const int64_t estimated = sage2::workspace_bytes(resolved, batch, heads, length, length, head_dim);
  CAPTURE(measured, estimated);
  CHECK(measured <= estimated);
  CHECK(estimated <= measured + measured / 10);
}
