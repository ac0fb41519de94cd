#pragma once
// A transformer's residual step and the adaptive LayerNorm after it in one pass: each stream's residual takes
// its gated update, then its rows are normed and modulated into one joint tensor (DiT / CogVideoX blocks:
// `x += gate * f(x)`, then `norm(x) * (1 + scale) + shift` as the next layer's input).
#include "sagevid/kernels/fp8_rows.h"

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace sagevid::kernels {

// One stream of token rows, [B, L, D] each with a contiguous last dim (views of a larger tensor are fine).
struct NormStream {
  at::Tensor residual;     // updated in place when `update` is defined
  at::Tensor update;       // optional: residual += gate * update first
  at::Tensor gate;         // [B, 1, D] with the update
  at::Tensor shift, scale;  // [B, 1, D]: normed rows times (1 + scale), plus shift
};

// Returns [B, ΣL, D] of the residuals' dtype: the streams' modulated rows one after the other along L.
// LayerNorm over D with weight and bias (either may be undefined: 1 and 0), statistics in fp32; every
// intermediate (the updated residual, the norm's output, 1 + scale) rounded to the dtype as torch's separate
// ops round it. On CUDA with bf16 or fp16 rows of whole 16-byte pieces, one kernel per stream; otherwise the
// torch ops of residual_norm_modulate_reference. Written into `out` when that is given (contiguous).
at::Tensor residual_norm_modulate(const std::vector<NormStream>& streams, const at::Tensor& weight,
                                  const at::Tensor& bias, double eps, std::optional<at::Tensor> out = std::nullopt);

// The same rows quantized for an FP8 linear after the norm: quantize_rows_fp8 of residual_norm_modulate's result,
// bit for bit, as values [B, ΣL, D] E4M3 and scales [B, ΣL, 1] fp32 (the residuals are updated as there). Where
// the kernel takes the call and two warps hold a row (D up to 3072), the norm's pass writes the E4M3 rows itself,
// instead of rows of the dtype for another pass to read; otherwise the two functions run one after the other.
Fp8Rows residual_norm_modulate_fp8(const std::vector<NormStream>& streams, const at::Tensor& weight,
                                   const at::Tensor& bias, double eps);

// The same with torch ops on any device: the definition the kernel is tested against.
at::Tensor residual_norm_modulate_reference(const std::vector<NormStream>& streams, const at::Tensor& weight,
                                            const at::Tensor& bias, double eps);

}  // namespace sagevid::kernels
