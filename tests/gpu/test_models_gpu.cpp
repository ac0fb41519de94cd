// The model parts on CUDA: the same fixtures as the CPU parity tests, run on the GPU (fp32 for parity with
// diffusers; bf16, the serving dtype, within its rounding), and the whole pipeline against its CPU run.
#include "catch.h"
#include "test_random.h"

#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"
#include "sagevid/kernels/fp8_rows.h"
#include "transformer/cogvideox_transformer_weights.h"
#include "sagevid/models/step_profile.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/matmul.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

namespace {

const std::filesystem::path kFixtures(SAGEVID_FIXTURES_DIR);

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor a = got.to(at::kCPU, at::kDouble), b = want.to(at::kDouble);
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

// Caps the caching allocator's share of device 0 at what it reserves now plus `headroom` bytes, until destroyed.
class MemoryCap {
 public:
  explicit MemoryCap(int64_t headroom) : previous_(c10::cuda::CUDACachingAllocator::getMemoryFraction(0)) {
    size_t free = 0, total = 0;
    C10_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    const int64_t reserved = c10::cuda::CUDACachingAllocator::getDeviceStats(0).reserved_bytes[0].current;
    c10::cuda::CUDACachingAllocator::setMemoryFraction(
        std::min(1.0, static_cast<double>(reserved + headroom) / static_cast<double>(total)), 0);
  }
  ~MemoryCap() { c10::cuda::CUDACachingAllocator::setMemoryFraction(previous_, 0); }
  MemoryCap(const MemoryCap&) = delete;
  MemoryCap& operator=(const MemoryCap&) = delete;

 private:
  double previous_;
};

}  // namespace

TEST_CASE("the VAE decoder on CUDA matches diffusers in fp32 and bf16", "[gpu][vae]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kFixtures / "vae" / "io.safetensors");
  const auto dtype = GENERATE(at::kFloat, at::kBFloat16);
  CAPTURE(c10::toString(dtype));
  const auto decoder =
      sagevid::CogVideoXVaeDecoder::load(kFixtures / "vae" / "vae", at::TensorOptions().device(at::kCUDA).dtype(dtype));
  const double tolerance = dtype == at::kFloat ? 5e-3 : 5e-2;  // cuDNN runs fp32 convolutions in TF32 by default
  const double plain = max_relative_error(decoder.decode(io.view("latents").to(at::kCUDA)), io.view("sample"));
  CAPTURE(plain);
  CHECK(plain <= tolerance);
}

TEST_CASE("the pipeline on CUDA in bf16 stays close to its fp32 CPU run on the tiny model", "[gpu][pipeline]") {
  const std::filesystem::path model = std::filesystem::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  sagevid::GenerationRequest request;
  request.prompt = "a panda playing a guitar";
  request.num_frames = 17;
  request.height = 64;
  request.width = 96;
  request.num_inference_steps = 4;
  request.seed = rng.seed;
  // Fixed fp32 latents for both runs: a seed's bf16 draw differs from its fp32 one, as in torch.
  request.latents = rng.normal({1, 5, 4, 8, 12});
  const auto frames_of = [&](const sagevid::CogVideoXPipeline& pipeline) {
    std::vector<at::Tensor> batches;
    pipeline.generate(request, {.on_frames = [&](const at::Tensor& frames) { batches.push_back(frames); }});
    return at::cat(batches, 0).to(at::kDouble);
  };
  const auto cpu = sagevid::CogVideoXPipeline::load(model, {.device = at::kCPU, .dtype = at::kFloat});
  // The tiny model's head dims (T5 8, transformer 16) are not sage2's: its calls fall back to cuDNN.
  const sagevid::AttentionConfig attention{sagevid::AttentionBackend::sage2, sagevid::AttentionBackend::cudnn, {}};
  const auto cuda =
      sagevid::CogVideoXPipeline::load(model, {.device = at::kCUDA, .dtype = at::kBFloat16, .attention = attention});
  const at::Tensor want = frames_of(cpu), got = frames_of(cuda);
  REQUIRE(got.sizes() == want.sizes());
  const double mean_difference = (got - want).abs().mean().item<double>();
  WARN("pipeline bf16 CUDA vs fp32 CPU: mean |difference| " << mean_difference << "/255");
  CHECK(mean_difference < 8.0);
  CHECK(cuda.attention().fallback_count() > 0);
}

TEST_CASE("CUDA out of memory in generate is c10::OutOfMemoryError and leaves the pipeline usable", "[gpu][pipeline]") {
  // What the server relies on to answer RESOURCE_EXHAUSTED and keep serving: the error type, and no memory
  // held by the failed job.
  const std::filesystem::path model = std::filesystem::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto pipeline = sagevid::CogVideoXPipeline::load(model, {.device = at::kCUDA, .dtype = at::kBFloat16});
  sagevid::GenerationRequest request;
  request.prompt = "a lighthouse in a storm";
  request.num_frames = 17;
  request.height = request.width = 192;
  request.num_inference_steps = 2;
  request.seed = rng.seed;
  const auto allocated = [] { return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current; };
  int64_t frames = 0;
  const sagevid::GenerationCallbacks count_frames{
      .on_frames = [&](const at::Tensor& batch) { frames += batch.size(0); }};
  pipeline.generate(request, count_frames);  // first: whatever the pipeline keeps between jobs is in place
  REQUIRE(frames == 17);

  // Fill this process's share of the device: 1 GiB blocks, then 2 MiB ones, until neither fits. The share is
  // capped a few GiB above what it holds (the allocator then fails as a full device does), so that the GPU tests
  // running beside this one keep the rest of the device.
  const MemoryCap cap(int64_t(4) << 30);
  std::vector<at::Tensor> filler;
  for (const int64_t block : {int64_t(1) << 30, int64_t(2) << 20}) {
    while (true) {
      try {
        filler.push_back(at::empty({block}, at::TensorOptions().device(at::kCUDA).dtype(at::kByte)));
      } catch (const c10::OutOfMemoryError&) {
        break;
      }
    }
  }
  const int64_t before = allocated();
  CHECK_THROWS_AS(pipeline.generate(request, {}), c10::OutOfMemoryError);
  CHECK(allocated() == before);  // the failed job holds nothing

  filler.clear();
  c10::cuda::CUDACachingAllocator::emptyCache();
  frames = 0;
  pipeline.generate(request, count_frames);
  CHECK(frames == 17);
}

TEST_CASE("a StepProfile times the regions its thread runs, and nothing runs without one", "[gpu][profile]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor a = rng.normal({2048, 2048}, at::TensorOptions().device(at::kCUDA));
  const auto matmul_region = [&] {
    const sagevid::ProfileRegion region("matmul");
    return at::matmul(a, a);
  };
  matmul_region();  // no profile alive: the region records nothing (and must not fail)
  sagevid::StepProfile profile;
  for (int i = 0; i < 3; ++i) matmul_region();
  { const sagevid::ProfileRegion empty("empty"); }
  const auto totals = profile.totals();
  REQUIRE(totals.size() == 2);
  CHECK(totals[0].first == "matmul");
  CHECK(totals[0].second > 0.0);
  CHECK(totals[1].first == "empty");
  CHECK(totals[1].second < totals[0].second);
  profile.clear();
  CHECK(profile.totals().empty());
}

TEST_CASE("FP8 rows on CUDA are the reference's bits, and an FP8 linear there is the CPU one's product", "[gpu][fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // 1024 columns: rows a warp holds in registers; 7680 (CogVideoX-2B's FF hidden): rows a CTA holds; 1001: the
  // kernel that reads them twice.
  for (const int64_t cols : {1024, 7680, 1001}) {
    CAPTURE(cols);
    const at::Tensor x = rng.normal({300, cols}, at::TensorOptions().dtype(at::kBFloat16)) * 3;
    const auto got = sagevid::kernels::quantize_rows_fp8(x.to(at::kCUDA));
    const auto want = sagevid::kernels::quantize_rows_fp8_reference(x);
    CHECK(at::equal(got.scales.cpu(), want.scales));
    CHECK(at::equal(got.values.cpu().view(at::kByte), want.values.view(at::kByte)));

    // With the GELU first: torch's GELU and ours may differ in the last bit of fp32, so a value may round to
    // the neighbouring bf16 and then E4M3 step; nearly all are the same bits.
    const auto activation = sagevid::kernels::RowActivation::gelu_tanh;
    const auto got_gelu = sagevid::kernels::quantize_rows_fp8(x.to(at::kCUDA), activation);
    const auto want_gelu = sagevid::kernels::quantize_rows_fp8_reference(x.to(at::kCUDA), activation);
    const at::Tensor got_values = got_gelu.values.to(at::kFloat) * got_gelu.scales;
    const at::Tensor want_values = want_gelu.values.to(at::kFloat) * want_gelu.scales;
    CHECK((got_gelu.scales - want_gelu.scales).abs().le(want_gelu.scales * std::ldexp(1.0, -7)).all().item<bool>());
    CHECK((got_values - want_values)
              .abs()
              .le(want_values.abs() / 8 + want_gelu.scales * std::ldexp(1.0, -9))
              .all()
              .item<bool>());
    const double same =
        got_gelu.values.view(at::kByte).eq(want_gelu.values.view(at::kByte)).to(at::kFloat).mean().item<double>();
    CAPTURE(same);
    CHECK(same > 0.99);
  }

  const sagevid::cogvideox::Linear linear{rng.normal({512, 1024}) * 0.05, rng.normal({512}) * 0.1, {}};
  const sagevid::cogvideox::Linear cpu = sagevid::cogvideox::to_fp8(linear);
  const sagevid::cogvideox::Linear cuda{cpu.weight.to(at::kCUDA), cpu.bias.to(at::kCUDA, at::kBFloat16),
                                        cpu.weight_scale.to(at::kCUDA)};
  const at::Tensor input = rng.normal({2, 77, 1024}, at::TensorOptions().dtype(at::kBFloat16));
  const at::Tensor on_cuda = cuda(input.to(at::kCUDA)).cpu().to(at::kFloat);
  const at::Tensor on_cpu = cpu(input.to(at::kFloat));
  const double relative = ((on_cuda - on_cpu).norm() / on_cpu.norm()).item<double>();
  CAPTURE(relative);
  CHECK(relative < 1e-2);  // the same FP8 operands; bf16 output and the accumulation order differ
}

TEST_CASE("an FP8 linear with fast accumulation stays within 1% of the plain FP8 product over 7680 inputs",
          "[gpu][fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // CogVideoX-2B's FF out: 7680 inputs, the longest sum of the step's linears, where accumulation error grows most.
  // 384 outputs: a product cuBLASLt has no fast-accumulation kernel for with a bias (the plain one stands in);
  // 1920: the real layer's.
  const int64_t in_features = 7680, out_features = GENERATE(384, 1920);
  CAPTURE(out_features);
  const sagevid::cogvideox::Linear linear{
      rng.normal({out_features, in_features}) * 0.02, rng.normal({out_features}) * 0.1, {}};
  const at::Tensor input = rng.normal({2, 100, in_features}, at::TensorOptions().dtype(at::kBFloat16));
  const at::Tensor want = at::linear(input.to(at::kFloat), linear.weight, linear.bias);
  REQUIRE(want.abs().max().item<double>() > 0);
  const auto fp8_product = [&](bool fast_accum) {
    const sagevid::cogvideox::Linear fp8 = sagevid::cogvideox::to_fp8(linear, fast_accum);
    const sagevid::cogvideox::Linear cuda{fp8.weight.to(at::kCUDA), fp8.bias.to(at::kCUDA, at::kBFloat16),
                                          fp8.weight_scale.to(at::kCUDA), fast_accum};
    return cuda(input.to(at::kCUDA)).cpu().to(at::kFloat);
  };
  // Distances relative to the fp32 product's size.
  const auto distance = [&](const at::Tensor& a, const at::Tensor& b) {
    return ((a - b).norm() / want.norm()).item<double>();
  };
  const at::Tensor fast = fp8_product(true), plain = fp8_product(false);
  const double fast_error = distance(fast, want), plain_error = distance(plain, want);
  const double fast_from_plain = distance(fast, plain);
  CAPTURE(fast_error, plain_error, fast_from_plain);
  // Rounding both operands to E4M3 (three mantissa bits) costs a few percent on Gaussian data by itself.
  CHECK(plain_error > 1e-2);
  CHECK(plain_error < 5e-2);
  // Fast accumulation adds its own error on top, small beside the operands' rounding.
  CHECK(fast_from_plain < 1e-2);
  CHECK(fast_error < plain_error + 1e-2);
}
