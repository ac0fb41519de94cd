#pragma once
// The per-head LayerNorm of queries and keys, with the rotary position embedding after it (CogVideoX's
// norm_q / norm_k, then diffusers' apply_rotary_emb): one pass over q or k instead of a copy, a norm and a
// rotation through fp32 temporaries.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

namespace sagevid::kernels {

// The rotation of the tokens from `first_token` on (earlier ones, e.g. text, stay as they are): cos and sin
// [L - first_token, d] fp32 on x's device; pairs (2i, 2i+1) of a head are rotated as complex numbers.
struct Rotary {
  at::Tensor cos, sin;
  int64_t first_token = 0;
};

// x [B, H, L, d], any strides with a contiguous last dim (q or k as a view of a fused QKV projection):
// LayerNorm over d (weight, bias [d], either may be undefined; statistics in fp32), rounded to x's dtype, then rotated in fp32 where
// `rotary` is given and rounded again: torch's layer_norm followed by diffusers' rotation. Returns a contiguous
// [B, H, L, d] tensor of x's dtype (written into `out` when that is given). On CUDA with bf16 or fp16 and d a
// power of two from 8 to 256, one kernel; otherwise the torch ops of layer_norm_heads_reference.
at::Tensor layer_norm_heads(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                            const std::optional<Rotary>& rotary, std::optional<at::Tensor> out = std::nullopt);

// The same with torch ops on any device: the definition the kernel is tested against.
at::Tensor layer_norm_heads_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                                      const std::optional<Rotary>& rotary);

}  // namespace sagevid::kernels
