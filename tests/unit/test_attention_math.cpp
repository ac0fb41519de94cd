// The math backend against a float64 reference computed head by head, over the shapes and options the
// layer promises: any lengths (1, primes, N_q != N_kv), grouped-query heads, causal, broadcast biases.
#include "catch.h"
#include "test_random.h"

#include "attention/attention_backends.h"  // white-box: the chunk budget of the math backend
#include "sagevid/models/attention.h"

#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tril.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

struct Shape {
  int64_t batch, q_heads, kv_heads, q_len, kv_len, head_dim;
};

// Straightforward attention in float64, one (batch, head) at a time.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const sagevid::AttentionParams& params) {
  const int64_t batch = q.size(0), heads = q.size(1), q_len = q.size(2), kv_len = k.size(2);
  const int64_t group = heads / k.size(1);
  const double scale = params.scale.value_or(1.0 / std::sqrt(double(q.size(3))));
  at::Tensor bias;
  if (params.bias) {
    bias = params.bias->to(at::kDouble);
    while (bias.dim() < 4) bias = bias.unsqueeze(0);
    bias = bias.expand({batch, heads, q_len, kv_len});
  }
  std::vector<at::Tensor> outputs;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const at::Tensor qd = q[b][h].to(at::kDouble), kd = k[b][h / group].to(at::kDouble);
      at::Tensor scores = at::matmul(qd, kd.t()) * scale;
      if (bias.defined()) scores = scores + bias[b][h];
      if (params.causal) {
        const at::Tensor visible = at::tril(at::ones({q_len, kv_len}, at::kBool));
        scores = scores.masked_fill(visible.logical_not(), -std::numeric_limits<double>::infinity());
      }
      outputs.push_back(at::matmul(at::softmax(scores, -1), v[b][h / group].to(at::kDouble)));
    }
  }
  return at::stack(outputs).reshape({batch, heads, q_len, q.size(3)});
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("math attention matches a float64 reference", "[attention][math]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const Shape shape = GENERATE(Shape{1, 1, 1, 1, 1, 8}, Shape{2, 3, 3, 17, 17, 16}, Shape{1, 4, 2, 31, 7, 32},
                               Shape{2, 6, 2, 5, 129, 64}, Shape{1, 2, 1, 128, 127, 128});
  const bool causal = GENERATE(false, true);
  const int bias_rank = GENERATE(0, 2, 3, 4);
  CAPTURE(shape.batch, shape.q_heads, shape.kv_heads, shape.q_len, shape.kv_len, shape.head_dim, causal, bias_rank);

  const at::Tensor q = rng.normal({shape.batch, shape.q_heads, shape.q_len, shape.head_dim});
  const at::Tensor k = rng.normal({shape.batch, shape.kv_heads, shape.kv_len, shape.head_dim});
  const at::Tensor v = rng.normal({shape.batch, shape.kv_heads, shape.kv_len, shape.head_dim});
  sagevid::AttentionParams params;
  params.causal = causal;
  if (bias_rank == 2) params.bias = rng.normal({shape.q_len, shape.kv_len});
  if (bias_rank == 3) params.bias = rng.normal({shape.q_heads, shape.q_len, shape.kv_len});
  if (bias_rank == 4) params.bias = rng.normal({1, shape.q_heads, shape.q_len, shape.kv_len});
  if (bias_rank == 3) params.scale = 0.37;

  const sagevid::Attention attention;  // default config: math
  const at::Tensor out = attention(q, k, v, params);
  REQUIRE(out.sizes() == q.sizes());
  REQUIRE(out.scalar_type() == at::kFloat);
  CHECK(max_abs_diff(out, reference_attention(q, k, v, params)) < 2e-5);
}

TEST_CASE("math attention keeps fp16 and bf16 inputs in their dtype with fp32 accumulation", "[attention][math]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const auto dtype = GENERATE(at::kHalf, at::kBFloat16);
  const at::Tensor q = rng.normal({2, 4, 300, 64}).to(dtype);
  const at::Tensor k = rng.normal({2, 4, 300, 64}).to(dtype);
  const at::Tensor v = rng.normal({2, 4, 300, 64}).to(dtype);
  const at::Tensor out = sagevid::Attention()(q, k, v);
  REQUIRE(out.scalar_type() == dtype);
  // Only the final rounding to the 16-bit type separates it from the float64 result of the same inputs.
  const double tolerance = dtype == at::kHalf ? 2e-3 : 1.6e-2;
  CHECK(max_abs_diff(out, reference_attention(q, k, v, {})) < tolerance);
}

TEST_CASE("math attention gives the same result however the queries are chunked", "[attention][math]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor q = rng.normal({2, 3, 100, 32}), k = rng.normal({2, 3, 77, 32}), v = rng.normal({2, 3, 77, 32});
  sagevid::AttentionParams params;
  params.causal = true;
  params.bias = rng.normal({3, 100, 77});
  const sagevid::AttentionConfig config;
  const sagevid::detail::AttentionCall call{config, q, k, v, params, 0.25};
  const at::Tensor whole = sagevid::detail::math_attention(call);
  const int64_t row_bytes = 2 * 3 * 77 * 4;
  for (int64_t rows : {1, 7, 33, 99}) {
    CAPTURE(rows);
    CHECK(max_abs_diff(sagevid::detail::math_attention(call, rows * row_bytes), whole) < 1e-5);
  }
}

TEST_CASE("causal masks are top-left aligned when N_q != N_kv", "[attention][math]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor q = rng.normal({1, 1, 3, 8}), k = rng.normal({1, 1, 5, 8}), v = rng.normal({1, 1, 5, 8});
  sagevid::AttentionParams params;
  params.causal = true;
  const at::Tensor out = sagevid::Attention()(q, k, v, params);
  // Query 0 sees key 0 alone, so its output is v[0] exactly.
  CHECK(max_abs_diff(out[0][0][0], v[0][0][0]) < 1e-6);
  CHECK(max_abs_diff(out, reference_attention(q, k, v, params)) < 1e-5);
}
