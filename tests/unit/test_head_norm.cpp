// layer_norm_heads' definition on the CPU: LayerNorm over each head, then the rotary embedding of the tokens
// from first_token on, as a complex multiplication of each (2i, 2i+1) pair by e^(i*angle).
#include "catch.h"
#include "test_random.h"

#include "sagevid/kernels/head_norm.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/polar.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/view_as_complex.h>
#include <ATen/ops/view_as_real.h>

namespace kernels = sagevid::kernels;

TEST_CASE("layer_norm_heads norms each head and rotates the tokens from first_token on", "[head_norm]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const int64_t batch = 2, heads = 3, length = 40, d = 16, first = 7;
  const at::Tensor qkv = rng.normal({batch, length, 3, heads, d}) * 2 + 0.5;
  const at::Tensor x = qkv.select(2, 0).transpose(1, 2);  // [B, H, L, d] as the block sees q
  const at::Tensor weight = 1 + rng.normal({d}) * 0.3, bias = rng.normal({d}) * 0.2;
  const at::Tensor angles = rng.normal({length - first, d / 2}) * 3;
  const kernels::Rotary rotary{angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1), first};

  const at::Tensor got = kernels::layer_norm_heads(x, weight, bias, 1e-6, rotary);
  REQUIRE(got.sizes() == x.sizes());
  CHECK(got.is_contiguous());
  const at::Tensor normed = at::layer_norm(x, {d}, weight, bias, 1e-6);
  CHECK(at::equal(got.narrow(2, 0, first), normed.narrow(2, 0, first)));  // text tokens: only normed

  const at::Tensor video = normed.narrow(2, first, length - first).contiguous();
  const at::Tensor turned = at::view_as_real(at::view_as_complex(video.view({batch, heads, length - first, d / 2, 2})) *
                                             at::polar(at::ones_like(angles), angles))
                                .flatten(3);
  CHECK(at::allclose(got.narrow(2, first, length - first), turned, 1e-5, 1e-5));
  CHECK(at::equal(kernels::layer_norm_heads(x, weight, bias, 1e-6, std::nullopt), normed));
  CHECK(at::equal(kernels::layer_norm_heads(x, {}, {}, 1e-6, std::nullopt), at::layer_norm(x, {d}, {}, {}, 1e-6)));
}

TEST_CASE("layer_norm_heads refuses tables and weights that do not fit x, naming them", "[head_norm]") {
  sagevid::test::Random rng;
  const at::Tensor x = rng.normal({1, 2, 10, 8});
  const at::Tensor weight = at::ones({8}), bias = at::zeros({8}), table = at::ones({6, 8});
  const auto norm = [&](const at::Tensor& w, int64_t first) {
    return kernels::layer_norm_heads(x, w, bias, 1e-5, kernels::Rotary{table, table, first});
  };
  CHECK(norm(weight, 4).sizes() == x.sizes());
  REQUIRE_THROWS_WITH(norm(weight, 3), ContainsSubstring("cos and sin must be fp32 [7, 8]"));
  REQUIRE_THROWS_WITH(norm(weight, 11), ContainsSubstring("first token lies outside x"));
  REQUIRE_THROWS_WITH(norm(at::ones({9}), 4), ContainsSubstring("weight and bias must have d = 8"));
  REQUIRE_THROWS_WITH(kernels::layer_norm_heads(x.transpose(2, 3), weight, bias, 1e-5, std::nullopt),
                      ContainsSubstring("contiguous last dim"));
}
