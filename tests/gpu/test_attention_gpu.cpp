// The fused CUDA backends (flash, cudnn) against the math backend on the same GPU inputs.
#include "catch.h"
#include "test_random.h"

#include "sagevid/models/attention.h"

#include <ATen/ops/isfinite.h>

#include <cmath>

using sagevid::Attention;
using sagevid::AttentionBackend;
using sagevid::AttentionConfig;
using sagevid::AttentionParams;

namespace {

struct Shape {
  int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
};

double relative_l2(const at::Tensor& out, const at::Tensor& ref) {
  const at::Tensor a = out.to(at::kDouble), b = ref.to(at::kDouble);
  return ((a - b).norm() / b.norm()).item<double>();
}

}  // namespace

TEST_CASE("flash and cudnn match the math backend", "[gpu][attention]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto backend = GENERATE(AttentionBackend::flash, AttentionBackend::cudnn);
  const auto dtype = GENERATE(at::kHalf, at::kBFloat16);
  const Shape s =
      GENERATE(Shape{2, 4, 4, 128, 128, 64}, Shape{1, 8, 2, 1000, 1000, 128}, Shape{1, 2, 2, 1, 17, 64},
               Shape{1, 3, 3, 129, 129, 64}, Shape{2, 30, 30, 4096, 4096, 64}, Shape{1, 4, 4, 127, 1000, 128});
  const bool causal = GENERATE(false, true);
  CAPTURE(sagevid::backend_name(backend), c10::toString(dtype), s.batch, s.q_heads, s.kv_heads, s.q_len, s.kv_len,
          s.head_dim, causal);
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(dtype);
  const at::Tensor q = rng.normal({s.batch, s.q_heads, s.q_len, s.head_dim}, options);
  const at::Tensor k = rng.normal({s.batch, s.kv_heads, s.kv_len, s.head_dim}, options);
  const at::Tensor v = rng.normal({s.batch, s.kv_heads, s.kv_len, s.head_dim}, options);
  AttentionParams params;
  params.causal = causal;

  const Attention attention(AttentionConfig{backend, std::nullopt});
  if (causal && s.q_len != s.kv_len) {
    REQUIRE(sagevid::attention_unsupported_reason(backend, q, k, v, params) == "causal with N_q != N_kv");
    return;
  }
  const at::Tensor out = attention(q, k, v, params);
  const at::Tensor ref = Attention()(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), params);
  REQUIRE(out.sizes() == q.sizes());
  REQUIRE(out.scalar_type() == dtype);
  REQUIRE(at::isfinite(out).all().item<bool>());
  CHECK(relative_l2(out, ref) < (dtype == at::kHalf ? 2e-3 : 1.5e-2));
}

TEST_CASE("cudnn takes a broadcast additive bias", "[gpu][attention]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor q = rng.normal({2, 8, 226, 64}, options), k = rng.normal({2, 8, 226, 64}, options),
                   v = rng.normal({2, 8, 226, 64}, options);
  const int bias_rank = GENERATE(2, 3, 4);
  CAPTURE(bias_rank);
  AttentionParams params;
  if (bias_rank == 2) params.bias = rng.normal({226, 226}, options);
  if (bias_rank == 3) params.bias = rng.normal({8, 226, 226}, options);
  if (bias_rank == 4) params.bias = rng.normal({2, 8, 226, 226}, options);
  params.scale = 1.0;  // T5 does not scale its scores
  const at::Tensor out = Attention(AttentionConfig{AttentionBackend::cudnn, std::nullopt})(q, k, v, params);
  AttentionParams ref_params = params;
  ref_params.bias = params.bias->to(at::kFloat);
  const at::Tensor ref = Attention()(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), ref_params);
  CHECK(relative_l2(out, ref) < 1.5e-2);
}

TEST_CASE("flash falls back to cudnn for a biased call on the GPU", "[gpu][attention]") {
  sagevid::test::Random rng;
  const auto options = at::TensorOptions().device(at::kCUDA).dtype(at::kHalf);
  const at::Tensor q = rng.normal({1, 4, 64, 64}, options), k = rng.normal({1, 4, 64, 64}, options),
                   v = rng.normal({1, 4, 64, 64}, options);
  AttentionParams params;
  params.bias = rng.normal({4, 64, 64}, options);
  const Attention attention(AttentionConfig{AttentionBackend::flash, AttentionBackend::cudnn});
  const at::Tensor out = attention(q, k, v, params);
  CHECK(attention.fallbacks().at("flash -> cudnn: it takes no additive bias") == 1);
  CHECK(out.equal(Attention(AttentionConfig{AttentionBackend::cudnn, std::nullopt})(q, k, v, params)));
}
