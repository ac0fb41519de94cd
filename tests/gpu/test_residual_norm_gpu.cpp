// residual_norm_modulate's kernel against its torch definition: two streams with gated updates from views of
// one joint output, as the CogVideoX block calls it, into a poisoned output; and its FP8 rows against
// quantize_rows_fp8 of its own rows.
#include "catch.h"
#include "poisoned.h"
#include "rounding_check.h"
#include "test_random.h"

#include "sagevid/kernels/residual_norm.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/layer_norm.h>

namespace kernels = sagevid::kernels;
using sagevid::test::check_same_up_to_rounding;

namespace {

constexpr int64_t kBatch = 2, kTextLength = 26, kVideoLength = 301;

// The CogVideoX block's call: text and video residuals [2, L, dim] of `dtype` on the GPU, their pending update as
// views of one joint tensor (when with_update), and six modulation vectors as views of one [2, 1, 6 dim] tensor.
struct BlockInputs {
  int64_t dim;
  bool with_update;
  at::Tensor text, video, update, modulation;

  BlockInputs(sagevid::test::Random& rng, int64_t dim, at::ScalarType dtype, bool with_update)
      : dim(dim), with_update(with_update) {
    const auto on_gpu = [&](const at::Tensor& t) { return t.to(at::kCUDA, dtype); };
    text = on_gpu(rng.normal({kBatch, kTextLength, dim}) * 3);
    video = on_gpu(rng.normal({kBatch, kVideoLength, dim}) * 3 + 1);
    update = on_gpu(rng.normal({kBatch, kTextLength + kVideoLength, dim}));
    modulation = on_gpu(rng.normal({kBatch, 1, 6 * dim}) * 0.5);
  }
  at::Tensor part(int i) const { return modulation.narrow(2, i * dim, dim); }

  // The two streams over residuals t and v (text and video, or copies of them).
  std::vector<kernels::NormStream> streams(const at::Tensor& t, const at::Tensor& v) const {
    kernels::NormStream text_stream{t, {}, {}, part(1), part(2)}, video_stream{v, {}, {}, part(4), part(5)};
    if (with_update) {
      text_stream.update = update.narrow(1, 0, kTextLength);
      text_stream.gate = part(0);
      video_stream.update = update.narrow(1, kTextLength, kVideoLength);
      video_stream.gate = part(3);
    }
    return {text_stream, video_stream};
  }
};

}  // namespace

TEST_CASE("residual_norm_modulate's kernel updates, norms and modulates as the torch ops do, to a rounding step",
          "[gpu][residual_norm]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Up to 3072 (CogVideoX's 1920 and 3072) two warps hold a row, some lanes with fewer pieces; 4096: a CTA.
  const int64_t dim = GENERATE(64, 1920, 3072, 4096);
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  const bool with_update = GENERATE(true, false);
  const bool affine = GENERATE(true, false);
  CAPTURE(dim, dtype, with_update, affine);
  BlockInputs in(rng, dim, dtype, with_update);
  const at::Tensor weight = affine ? (1 + rng.normal({dim}) * 0.2).to(at::kCUDA, dtype) : at::Tensor();
  const at::Tensor bias = affine ? (rng.normal({dim}) * 0.2).to(at::kCUDA, dtype) : at::Tensor();

  SECTION("rows of the dtype") {
    const at::Tensor text_want = in.text.clone(), video_want = in.video.clone();
    const at::Tensor want =
        kernels::residual_norm_modulate_reference(in.streams(text_want, video_want), weight, bias, 1e-5);
    const at::Tensor out = sagevid::test::poisoned({kBatch, kTextLength + kVideoLength, dim}, in.text.options());
    const at::Tensor got = kernels::residual_norm_modulate(in.streams(in.text, in.video), weight, bias, 1e-5, out);
    REQUIRE(got.data_ptr() == out.data_ptr());

    const auto one_rounding = [&](const at::Tensor& x) { return sagevid::test::one_rounding(x, dtype); };
    // The residual update is one fp32 multiply-add rounded once, on both sides.
    check_same_up_to_rounding(in.text, text_want, 2 * one_rounding(text_want));
    check_same_up_to_rounding(in.video, video_want, 2 * one_rounding(video_want));
    // The modulated rows: statistics summed in another order, so the norm's output may sit a rounding away, which
    // (1 + scale) carries into the result.
    const auto spread = [&](const at::Tensor& residual, const at::Tensor& scale) {
      return one_rounding(at::layer_norm(residual, {dim}, weight, bias, 1e-5)) * (1 + scale.to(at::kFloat)).abs();
    };
    const at::Tensor carried = at::cat({spread(text_want, in.part(2)), spread(video_want, in.part(5))}, 1);
    check_same_up_to_rounding(got, want, 2 * (one_rounding(want) + carried));
  }

  // residual_norm_modulate_fp8: up to 3072 the norm's kernel writes the E4M3 rows itself; 4096: the norm, then
  // quantize_rows_fp8. Either way quantize_rows_fp8 of the kernel's rows of the dtype, bit for bit.
  SECTION("FP8 rows") {
    // Without an update or an affine part, a zero row with a zero shift stays all zero: scale 1.
    in.video[1][7].zero_();
    in.part(4)[1].zero_();
    const at::Tensor text_unfused = in.text.clone(), video_unfused = in.video.clone();
    const at::Tensor joint =
        kernels::residual_norm_modulate(in.streams(text_unfused, video_unfused), weight, bias, 1e-5);
    const kernels::Fp8Rows want = kernels::quantize_rows_fp8(joint.view({-1, dim}));
    const kernels::Fp8Rows got = kernels::residual_norm_modulate_fp8(in.streams(in.text, in.video), weight, bias, 1e-5);

    REQUIRE(got.values.sizes() == at::IntArrayRef{kBatch, kTextLength + kVideoLength, dim});
    REQUIRE(got.scales.sizes() == at::IntArrayRef{kBatch, kTextLength + kVideoLength, 1});
    CHECK(at::equal(got.values.view(at::kByte).view({-1, dim}), want.values.view(at::kByte)));
    CHECK(at::equal(got.scales.view({-1, 1}), want.scales));
    CHECK(at::equal(in.text, text_unfused));  // the residuals took the same update
    CHECK(at::equal(in.video, video_unfused));
    if (!with_update && !affine) CHECK(got.scales[1][kTextLength + 7].item<float>() == 1.0f);
  }
}
