// FP8 linear layers on the CPU: the per-row E4M3 quantization of kernels/fp8_rows.h, and the transformer's
// FP8 linear against its fp32 one (the CUDA path, at::_scaled_mm, is tests/gpu/test_models_gpu.cpp's).
#include "catch.h"
#include "test_random.h"

#include "transformer/cogvideox_transformer_weights.h"
#include "sagevid/kernels/fp8_rows.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/zeros.h>

TEST_CASE("rows quantize to E4M3 with their absmax at 448 and come back within E4M3's rounding", "[fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  at::Tensor x = rng.normal({33, 200}) * 3;
  x[5].fill_(0);  // an all-zero row keeps scale 1 and zeros
  const sagevid::kernels::Fp8Rows q = sagevid::kernels::quantize_rows_fp8(x);
  REQUIRE(q.values.scalar_type() == at::kFloat8_e4m3fn);
  REQUIRE(q.scales.sizes() == at::IntArrayRef{33, 1});
  const at::Tensor values = q.values.to(at::kFloat);
  CHECK(q.scales[5].item<float>() == 1.0f);
  CHECK(values[5].abs().max().item<float>() == 0.0f);
  const at::Tensor amax = x.abs().amax(-1, true);
  CHECK((q.scales.narrow(0, 0, 5) - amax.narrow(0, 0, 5) / 448).abs().max().item<float>() == 0.0f);
  CHECK(values.abs().amax(-1).narrow(0, 0, 5).eq(448).all().item<bool>());
  // E4M3 keeps 3 mantissa bits: half an ulp is 1/16 of the value; below 2^-6 it is subnormal, 2^-10 apart.
  const at::Tensor back = values * q.scales;
  const at::Tensor error = (back - x).abs(), bound = x.abs() / 16 + q.scales * std::ldexp(1.0, -10);
  CHECK((error <= bound).all().item<bool>());
  CHECK_THROWS_AS(sagevid::kernels::quantize_rows_fp8(x.to(at::kInt)), std::invalid_argument);
  CHECK_THROWS_AS(sagevid::kernels::quantize_rows_fp8(x.unsqueeze(0)), std::invalid_argument);
}

TEST_CASE("an FP8 linear stays within a few percent of its fp32 product", "[fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::cogvideox::Linear linear{rng.normal({96, 64}) * 0.1, rng.normal({96}) * 0.1, {}};
  const sagevid::cogvideox::Linear fp8 = sagevid::cogvideox::to_fp8(linear);
  REQUIRE(fp8.weight.scalar_type() == at::kFloat8_e4m3fn);
  REQUIRE(fp8.weight_scale.sizes() == at::IntArrayRef{96});
  const at::Tensor x = rng.normal({2, 7, 64});
  const at::Tensor want = at::linear(x, linear.weight, linear.bias), got = fp8(x);
  REQUIRE(got.sizes() == want.sizes());
  REQUIRE(got.scalar_type() == at::kFloat);
  const double relative = ((got - want).norm() / want.norm()).item<double>();
  CAPTURE(relative);
  CHECK(relative < 0.05);
  CHECK(relative > 0.0);  // the product did go through FP8
  // Fast accumulation is the CUDA GEMM's; on the CPU the product is the same fp32 one.
  const sagevid::cogvideox::Linear fast = sagevid::cogvideox::to_fp8(linear, /*fast_accum=*/true);
  CHECK(fast.fast_accum);
  CHECK(at::equal(fast(x), got));
}

TEST_CASE("an FP8 linear with the GELU fused into its input's quantization is the linear of the GELU", "[fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::cogvideox::Linear linear{rng.normal({48, 128}) * 0.1, rng.normal({48}) * 0.1, {}};
  const sagevid::cogvideox::Linear fp8 = sagevid::cogvideox::to_fp8(linear);
  const at::Tensor x = rng.normal({3, 5, 128}) * 2;
  const at::Tensor want = at::linear(at::gelu(x, "tanh"), linear.weight, linear.bias);
  const at::Tensor got = sagevid::cogvideox::fp8_linear(fp8, x, sagevid::kernels::RowActivation::gelu_tanh);
  const double relative = ((got - want).norm() / want.norm()).item<double>();
  CAPTURE(relative);
  CHECK(relative < 0.05);
  // Not the linear of x itself: the GELU was applied.
  CHECK(((fp8(x) - want).norm() / want.norm()).item<double>() > 10 * relative);
}

TEST_CASE("an FP8 linear of rows quantized before it is the one that quantizes them itself", "[fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  namespace cogvideox = sagevid::cogvideox;
  const cogvideox::Linear linear{rng.normal({40, 64}) * 0.1, rng.normal({40}) * 0.1, {}};
  const cogvideox::Linear fp8 = cogvideox::to_fp8(linear);
  const at::Tensor x = rng.normal({2, 9, 64}) * 3;
  // As the norm before the layer hands them over: values [B, L, K], scales [B, L, 1].
  const sagevid::kernels::Fp8Rows rows = sagevid::kernels::quantize_rows_fp8(x.view({-1, 64}));
  const cogvideox::QuantizedRows quantized{{rows.values.view({2, 9, 64}), rows.scales.view({2, 9, 1})}, at::kFloat};
  const at::Tensor want = fp8(x);
  const at::Tensor got = cogvideox::fp8_linear(fp8, quantized);
  REQUIRE(got.sizes() == want.sizes());
  CHECK(got.scalar_type() == at::kFloat);
  CHECK(at::equal(got, want));

  // Through the layer's call: either input, each to its own path.
  const cogvideox::LinearInput as_rows(quantized), as_tensor(x);
  CHECK(as_rows.sizes() == x.sizes());
  CHECK(at::equal(fp8(as_rows), want));
  CHECK(at::equal(fp8(as_tensor), want));
  CHECK(at::equal(linear(as_tensor), linear(x)));
  REQUIRE_THROWS_WITH(linear(as_rows), ContainsSubstring("given FP8 rows must be FP8 itself"));
}
