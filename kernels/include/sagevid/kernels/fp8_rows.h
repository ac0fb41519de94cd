#pragma once
// Rows quantized to FP8 E4M3 with one fp32 scale each (absmax / 448; 1 for an all-zero row): the activations
// of an FP8 linear layer, per token. values * scales gives back the rows within E4M3's rounding.
#include <ATen/core/Tensor.h>

namespace sagevid::kernels {

struct Fp8Rows {
  at::Tensor values;  // [M, K] at::kFloat8_e4m3fn (rows of another shape: [..., K])
  at::Tensor scales;  // [M, 1] fp32, one a row ([..., 1])
};

// What is applied to x, rounded back to x's dtype, before the rows are quantized: the activation between two
// linears, done in the quantization's pass instead of one of its own.
enum class RowActivation { none, gelu_tanh };

// x: [M, K] fp32, fp16 or bf16, last dim contiguous. On a CUDA device one kernel reads x once; on the CPU,
// torch ops compute the same values.
Fp8Rows quantize_rows_fp8(const at::Tensor& x, RowActivation activation = RowActivation::none);

// The same with torch ops on any device: the definition the kernel matches (bit for bit without an activation;
// with one, up to the last bits of the activation's fp32 arithmetic, which the kernel does its own way).
Fp8Rows quantize_rows_fp8_reference(const at::Tensor& x, RowActivation activation = RowActivation::none);

}  // namespace sagevid::kernels
