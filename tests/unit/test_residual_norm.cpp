// residual_norm_modulate's definition on the CPU: each stream's residual takes its gated update in place, then
// its rows are normed and modulated into one joint tensor, the streams one after the other.
#include "catch.h"
#include "test_random.h"

#include "sagevid/kernels/fp8_rows.h"
#include "sagevid/kernels/residual_norm.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/ones.h>

namespace kernels = sagevid::kernels;

TEST_CASE("residual_norm_modulate adds each stream's gated update, then norms and modulates it", "[residual_norm]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t batch = 2, text_length = 5, video_length = 9, dim = 32;
  const at::Tensor text = rng.normal({batch, text_length, dim}), video = rng.normal({batch, video_length, dim});
  const at::Tensor text_before = text.clone(), video_before = video.clone();
  const at::Tensor update = rng.normal({batch, text_length + video_length, dim});
  const at::Tensor modulation = rng.normal({batch, 1, 6 * dim}) * 0.5;  // as the block's linear gives it
  const auto part = [&](int i) { return modulation.narrow(2, i * dim, dim); };
  const at::Tensor weight = 1 + rng.normal({dim}) * 0.2, bias = rng.normal({dim}) * 0.2;
  kernels::NormStream text_stream{text, update.narrow(1, 0, text_length), part(0), part(1), part(2)};
  kernels::NormStream video_stream{video, update.narrow(1, text_length, video_length), part(3), part(4), part(5)};

  const at::Tensor joint = kernels::residual_norm_modulate({text_stream, video_stream}, weight, bias, 1e-5);
  REQUIRE(joint.sizes() == at::IntArrayRef{batch, text_length + video_length, dim});
  const at::Tensor text_after = text_before + part(0) * update.narrow(1, 0, text_length);
  const at::Tensor video_after = video_before + part(3) * update.narrow(1, text_length, video_length);
  CHECK(at::allclose(text, text_after, 1e-6, 1e-6));  // updated in place
  CHECK(at::allclose(video, video_after, 1e-6, 1e-6));
  const auto modulated = [&](const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
    return at::layer_norm(x, {dim}, weight, bias, 1e-5) * (1 + scale) + shift;
  };
  CHECK(at::allclose(joint.narrow(1, 0, text_length), modulated(text_after, part(1), part(2)), 1e-5, 1e-5));
  CHECK(at::allclose(joint.narrow(1, text_length, video_length), modulated(video_after, part(4), part(5)), 1e-5, 1e-5));

  // Without updates the residuals stay as they are; without weight and bias the norm is plain.
  text_stream.update.reset();
  video_stream.update.reset();
  const at::Tensor text_once = text.clone();
  const at::Tensor plain = kernels::residual_norm_modulate({text_stream, video_stream}, {}, {}, 1e-5);
  CHECK(at::equal(text, text_once));
  CHECK(at::allclose(plain.narrow(1, 0, text_length),
                     at::layer_norm(text_after, {dim}, {}, {}, 1e-5) * (1 + part(2)) + part(1), 1e-5, 1e-5));
}

TEST_CASE("residual_norm_modulate_fp8 is quantize_rows_fp8 of residual_norm_modulate's rows", "[residual_norm][fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t batch = 2, text_length = 3, video_length = 6, dim = 24;
  const at::Tensor text = rng.normal({batch, text_length, dim}), video = rng.normal({batch, video_length, dim}) * 4;
  const at::Tensor update = rng.normal({batch, text_length + video_length, dim});
  const at::Tensor modulation = rng.normal({batch, 1, 6 * dim}) * 0.5;
  const auto part = [&](int i) { return modulation.narrow(2, i * dim, dim); };
  const at::Tensor weight = 1 + rng.normal({dim}) * 0.2, bias = rng.normal({dim}) * 0.2;
  const auto streams = [&](const at::Tensor& t, const at::Tensor& v) {
    return std::vector<kernels::NormStream>{
        {t, update.narrow(1, 0, text_length), part(0), part(1), part(2)},
        {v, update.narrow(1, text_length, video_length), part(3), part(4), part(5)}};
  };
  const at::Tensor text_unfused = text.clone(), video_unfused = video.clone();
  const at::Tensor joint = kernels::residual_norm_modulate(streams(text_unfused, video_unfused), weight, bias, 1e-5);
  const kernels::Fp8Rows want = kernels::quantize_rows_fp8(joint.view({-1, dim}));

  const kernels::Fp8Rows got = kernels::residual_norm_modulate_fp8(streams(text, video), weight, bias, 1e-5);
  REQUIRE(got.values.sizes() == at::IntArrayRef{batch, text_length + video_length, dim});
  REQUIRE(got.scales.sizes() == at::IntArrayRef{batch, text_length + video_length, 1});
  CHECK(at::equal(got.values.view(at::kByte).view({-1, dim}), want.values.view(at::kByte)));
  CHECK(at::equal(got.scales.view({-1, 1}), want.scales));
  CHECK(at::equal(text, text_unfused));  // the residuals took their updates as before
  CHECK(at::equal(video, video_unfused));
}

TEST_CASE("residual_norm_modulate refuses streams that do not fit, naming what is wrong", "[residual_norm]") {
  sagevid::test::Random rng;
  const at::Tensor x = rng.normal({2, 4, 16}), row = rng.normal({2, 1, 16});
  const auto norm = [&](const kernels::NormStream& s) { return kernels::residual_norm_modulate({s}, {}, {}, 1e-5); };
  CHECK(norm({x, {}, {}, row, row}).sizes() == x.sizes());
  REQUIRE_THROWS_WITH(norm({x, {}, {}, row, rng.normal({2, 1, 8})}), ContainsSubstring("shift and scale must be"));
  REQUIRE_THROWS_WITH(norm({x, rng.normal({2, 3, 16}), row, row, row}), ContainsSubstring("an update must be"));
  REQUIRE_THROWS_WITH(norm({x, x, {}, row, row}), ContainsSubstring("with a gate [B, 1, D]"));
  REQUIRE_THROWS_WITH(norm({x.flatten(), {}, {}, row, row}), ContainsSubstring("residuals must be [B, L, D]"));
  REQUIRE_THROWS_WITH(kernels::residual_norm_modulate({}, {}, {}, 1e-5), ContainsSubstring("no streams"));
  REQUIRE_THROWS_WITH(kernels::residual_norm_modulate_fp8({{x, {}, {}, row, rng.normal({2, 1, 8})}}, {}, {}, 1e-5),
                      ContainsSubstring("shift and scale must be"));
}
