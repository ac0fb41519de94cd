// residual_norm_modulate's kernel against its torch definition: two streams with gated updates from views of
// one joint output, as the CogVideoX block calls it, into a poisoned output.
#include "catch.h"
#include "poisoned.h"
#include "rounding_check.h"
#include "test_random.h"

#include "sagevid/kernels/residual_norm.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/layer_norm.h>

namespace kernels = sagevid::kernels;
using sagevid::test::check_same_up_to_rounding;

TEST_CASE("residual_norm_modulate's kernel updates, norms and modulates as the torch ops do, to a rounding step",
          "[gpu][residual_norm]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  // Up to 3072 (CogVideoX's 1920 and 3072) a warp holds a row, some lanes with fewer pieces; 4096: a CTA.
  const int64_t dim = GENERATE(64, 1920, 3072, 4096);
  const auto dtype = GENERATE(at::kBFloat16, at::kHalf);
  const bool with_update = GENERATE(true, false);
  const bool affine = GENERATE(true, false);
  CAPTURE(dim, dtype, with_update, affine);
  const int64_t batch = 2, text_length = 26, video_length = 301;
  const auto on_gpu = [&](const at::Tensor& t) { return t.to(at::kCUDA, dtype); };
  const at::Tensor text = on_gpu(rng.normal({batch, text_length, dim}) * 3);
  const at::Tensor video = on_gpu(rng.normal({batch, video_length, dim}) * 3 + 1);
  const at::Tensor update = on_gpu(rng.normal({batch, text_length + video_length, dim}));
  const at::Tensor modulation = on_gpu(rng.normal({batch, 1, 6 * dim}) * 0.5);
  const auto part = [&](int i) { return modulation.narrow(2, i * dim, dim); };
  const at::Tensor weight = affine ? on_gpu(1 + rng.normal({dim}) * 0.2) : at::Tensor();
  const at::Tensor bias = affine ? on_gpu(rng.normal({dim}) * 0.2) : at::Tensor();

  const auto streams = [&](const at::Tensor& t, const at::Tensor& v) {
    kernels::NormStream text_stream{t, {}, {}, part(1), part(2)}, video_stream{v, {}, {}, part(4), part(5)};
    if (with_update) {
      text_stream.update = update.narrow(1, 0, text_length);
      text_stream.gate = part(0);
      video_stream.update = update.narrow(1, text_length, video_length);
      video_stream.gate = part(3);
    }
    return std::vector<kernels::NormStream>{text_stream, video_stream};
  };
  const at::Tensor text_want = text.clone(), video_want = video.clone();
  const at::Tensor want = kernels::residual_norm_modulate_reference(streams(text_want, video_want), weight, bias, 1e-5);

  const at::Tensor out = sagevid::test::poisoned({batch, text_length + video_length, dim}, text.options());
  const at::Tensor got = kernels::residual_norm_modulate(streams(text, video), weight, bias, 1e-5, out);
  REQUIRE(got.data_ptr() == out.data_ptr());

  const double step = sagevid::test::rounding_step(dtype);
  // The residual update is one fp32 multiply-add rounded once, on both sides.
  check_same_up_to_rounding(text, text_want, 2 * step * text_want.to(at::kFloat).abs() + 1e-6);
  check_same_up_to_rounding(video, video_want, 2 * step * video_want.to(at::kFloat).abs() + 1e-6);
  // The modulated rows: statistics summed in another order, so the norm's output may sit a step away, which
  // (1 + scale) carries into the result.
  const auto spread = [&](const at::Tensor& residual, const at::Tensor& scale) {
    return at::layer_norm(residual, {dim}, weight, bias, 1e-5).to(at::kFloat).abs() * (1 + scale.to(at::kFloat)).abs();
  };
  const at::Tensor carried = at::cat({spread(text_want, part(2)), spread(video_want, part(5))}, 1);
  check_same_up_to_rounding(got, want, 2 * step * (want.to(at::kFloat).abs() + carried));
}
