#pragma once
// Checks for a kernel that computes what torch ops compute, in another order of summation: each value within
// an allowed number of rounding steps, and most values the very same bits.
#include "catch.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/isfinite.h>

#include <cmath>

namespace sagevid::test {

// The relative size of one rounding step of fp16 or bf16 (half a unit in the last place).
inline double rounding_step(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
}

// The most one rounding to fp16 or bf16 moves x: a step of its size, and below the dtype's normal range (where
// fp16 values from a norm's near-zero outputs land) half the smallest subnormal, however small x is.
inline at::Tensor one_rounding(const at::Tensor& x, at::ScalarType dtype) {
  const double subnormal_step = std::ldexp(1.0, dtype == at::kBFloat16 ? -134 : -25);
  return rounding_step(dtype) * x.to(at::kFloat).abs() + subnormal_step;
}

// |got - want| <= allowed everywhere (a tensor broadcast to want, or a number), and > 90% identical.
inline void check_same_up_to_rounding(const at::Tensor& got, const at::Tensor& want, const at::Tensor& allowed) {
  REQUIRE(at::isfinite(got).all().item<bool>());
  const at::Tensor difference = (got.to(at::kFloat) - want.to(at::kFloat)).abs();
  CHECK((difference <= allowed).all().item<bool>());
  const double same = difference.eq(0).to(at::kFloat).mean().item<double>();
  CAPTURE(same);
  CHECK(same > 0.9);
}

}  // namespace sagevid::test
