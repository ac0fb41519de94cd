// layer_norm_heads' kernel against its torch definition: q or k as a strided view of a fused QKV projection,
// normed and rotated into a poisoned output.
#include "catch.h"
#include "poisoned.h"
#include "rounding_check.h"
#include "test_random.h"

#include "sagevid/kernels/head_norm.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/repeat_interleave.h>

namespace kernels = sagevid::kernels;

namespace {

// The magnitude of each element's (2i, 2i+1) pair, which a rotation keeps: the scale of a rounding step there.
at::Tensor pair_magnitude(const at::Tensor& x) {
  const at::Tensor pairs = x.to(at::kFloat).unflatten(-1, {-1, 2});
  return pairs.norm(2, -1, /*keepdim=*/true).expand_as(pairs).flatten(-2);
}

}  // namespace

TEST_CASE("layer_norm_heads' kernel computes the torch ops' norm and rotation to within a rounding step",
          "[gpu][head_norm]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t d = GENERATE(16, 64, 128);
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  const bool rotate = GENERATE(false, true);
  // A warp holds a token's heads, a few side by side: 3 leaves lanes idle, 30 (CogVideoX-2B) fills several
  // groups, and at d = 128 takes two warps a token.
  const int64_t heads = GENERATE(3, 30);
  CAPTURE(d, dtype, rotate, heads);
  const auto on_gpu = at::TensorOptions().device(at::kCUDA).dtype(dtype);
  const int64_t batch = 2, length = 333, first = 29;
  const at::Tensor qkv = (rng.normal({batch, length, 3, heads, d}) * 2 + 0.5).to(on_gpu.device(), dtype);
  const at::Tensor x = qkv.select(2, 1).transpose(1, 2);
  const at::Tensor weight = (1 + rng.normal({d}) * 0.3).to(on_gpu.device(), dtype);
  const at::Tensor bias = (rng.normal({d}) * 0.2).to(on_gpu.device(), dtype);
  std::optional<kernels::Rotary> rotary;
  if (rotate) {
    const at::Tensor angles = (rng.normal({length - first, d / 2}) * 3).to(at::kCUDA);
    rotary = kernels::Rotary{angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1), first};
  }

  const at::Tensor out = sagevid::test::poisoned({batch, heads, length, d}, on_gpu);
  const at::Tensor got = kernels::layer_norm_heads(x, weight, bias, 1e-6, rotary, out);
  REQUIRE(got.data_ptr() == out.data_ptr());
  const at::Tensor want = kernels::layer_norm_heads_reference(x, weight, bias, 1e-6, rotary);

  // The statistics are summed in another order than torch's, so an element may land one rounding step away
  // (before the rotation too, which mixes a pair).
  const at::Tensor allowed =
      sagevid::test::one_rounding(pair_magnitude(want), dtype) + sagevid::test::one_rounding(want, dtype);
  sagevid::test::check_same_up_to_rounding(got, want, 2 * allowed);
}

TEST_CASE("layer_norm_heads takes the torch ops where the kernel cannot read x in 16-byte pieces", "[gpu][head_norm]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor wide = rng.normal({1, 50, 2, 65}).to(at::kCUDA, at::kBFloat16);
  const at::Tensor x = wide.narrow(3, 0, 64).transpose(1, 2);  // rows 65 elements apart: not 16-byte aligned
  const at::Tensor weight = (1 + rng.normal({64}) * 0.3).to(at::kCUDA, at::kBFloat16);
  const at::Tensor bias = rng.normal({64}).to(at::kCUDA, at::kBFloat16);
  CHECK(at::equal(kernels::layer_norm_heads(x, weight, bias, 1e-5, std::nullopt),
                  kernels::layer_norm_heads_reference(x, weight, bias, 1e-5, std::nullopt)));
}
