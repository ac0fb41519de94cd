#pragma once
// The CUDA side of layer_norm_heads (head_norm.cpp).
#include <cuda_runtime_api.h>

#include <cstdint>

namespace sagevid::kernels::detail {

enum class HeadElement { fp16, bf16 };

struct HeadNormArgs {
  const void* x;                            // [B, H, L, d] at these element strides, d contiguous
  int64_t stride_batch, stride_head, stride_token;
  int64_t batch, heads, length;
  int dim;                                  // a power of two, 8 to 256
  const void* weight;                       // [d], x's type
  const void* bias;                         // [d], x's type
  float eps;
  const float* cos;                         // [L - first_token, d], or null: no rotation
  const float* sin;
  int64_t first_token;
  void* out;                                // [B, H, L, d] contiguous
};

// Launches on `stream`. x, out, weight and bias 16-byte aligned, strides multiples of 8 elements.
void layer_norm_heads(const HeadNormArgs& args, HeadElement element, cudaStream_t stream);

}  // namespace sagevid::kernels::detail
