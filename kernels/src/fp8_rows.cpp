#include "sagevid/kernels/fp8_rows.h"

#include "fp8_rows_kernel.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/where.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <climits>
#include <stdexcept>

namespace sagevid::kernels {
namespace {

constexpr double kFp8Max = 448.0;

void check_input(const at::Tensor& x) {
  if (x.dim() != 2 || (x.size(1) > 1 && x.stride(1) != 1))
    throw std::invalid_argument("quantize_rows_fp8: x must be 2-D with a contiguous last dim");
  const auto type = x.scalar_type();
  if (type != at::kFloat && type != at::kHalf && type != at::kBFloat16)
    throw std::invalid_argument("quantize_rows_fp8: x must be fp32, fp16 or bf16");
}

}  // namespace

Fp8Rows quantize_rows_fp8_reference(const at::Tensor& x, RowActivation activation) {
  check_input(x);
  const at::Tensor xf = (activation == RowActivation::gelu_tanh ? at::gelu(x, "tanh") : x).to(at::kFloat);
  const at::Tensor amax = xf.abs().amax(-1, /*keepdim=*/true);
  const at::Tensor scales = at::where(amax > 0, amax / kFp8Max, at::ones_like(amax));
  return {(xf / scales).to(at::kFloat8_e4m3fn), scales};
}

Fp8Rows quantize_rows_fp8(const at::Tensor& x, RowActivation activation) {
  if (!x.is_cuda()) return quantize_rows_fp8_reference(x, activation);
  check_input(x);
  if (x.size(0) > INT_MAX || x.size(1) > INT_MAX) throw std::invalid_argument("quantize_rows_fp8: x too large");
  const c10::cuda::CUDAGuard guard(x.device());
  Fp8Rows out{at::empty(x.sizes(), x.options().dtype(at::kFloat8_e4m3fn)),
              at::empty({x.size(0), 1}, x.options().dtype(at::kFloat))};
  const auto element = x.scalar_type() == at::kFloat  ? detail::RowElement::fp32
                       : x.scalar_type() == at::kHalf ? detail::RowElement::fp16
                                                      : detail::RowElement::bf16;
  detail::quantize_rows_fp8(x.data_ptr(), element, int(x.size(0)), x.stride(0), int(x.size(1)),
                            activation == RowActivation::gelu_tanh, static_cast<uint8_t*>(out.values.data_ptr()),
                            out.scales.data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream());
  return out;
}

}  // namespace sagevid::kernels
