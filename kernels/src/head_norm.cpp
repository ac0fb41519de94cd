#include "sagevid/kernels/head_norm.h"

#include "head_norm_kernel.h"
#include "sagevid/kernels/shape_string.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/stack.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <stdexcept>
#include <string>

namespace sagevid::kernels {
namespace {

void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  const std::optional<Rotary>& rotary) {
  if (x.dim() != 4 || x.stride(3) != 1)
    throw std::invalid_argument("layer_norm_heads: x must be [B, H, L, d] with a contiguous last dim, got " +
                                shape_string(x.sizes()));
  const int64_t d = x.size(3);
  for (const at::Tensor& t : {weight, bias})  // either may be undefined: no affine part
    if (t.defined() && t.numel() != d)
      throw std::invalid_argument("layer_norm_heads: weight and bias must have d = " + std::to_string(d) + " elements");
  if (!rotary) return;
  const int64_t rotated = x.size(2) - rotary->first_token;
  if (rotary->first_token < 0 || rotated < 0)
    throw std::invalid_argument("layer_norm_heads: the rotation's first token lies outside x");
  for (const at::Tensor& t : {rotary->cos, rotary->sin})
    if (t.dim() != 2 || t.size(0) != rotated || t.size(1) != d || t.scalar_type() != at::kFloat)
      throw std::invalid_argument("layer_norm_heads: cos and sin must be fp32 [" + std::to_string(rotated) + ", " +
                                  std::to_string(d) + "], got " + shape_string(t.sizes()));
}

bool aligned(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// Whether the kernel takes this call (else the torch ops do): it needs both weight and bias.
bool kernel_takes(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  const std::optional<Rotary>& rotary) {
  const int64_t d = x.size(3);
  const bool half = x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf;
  const bool dim_ok = d >= 8 && d <= 256 && (d & (d - 1)) == 0;
  const auto vectors = [](const at::Tensor& t) { return t.is_contiguous() && aligned(t); };
  const auto affine = [&](const at::Tensor& t) {
    return t.defined() && t.scalar_type() == x.scalar_type() && vectors(t);
  };
  return x.is_cuda() && half && dim_ok && aligned(x) && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0 &&
         x.stride(2) % 8 == 0 && affine(weight) && affine(bias) &&
         (!rotary || (vectors(rotary->cos) && vectors(rotary->sin)));
}

}  // namespace

at::Tensor layer_norm_heads_reference(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                                      const std::optional<Rotary>& rotary) {
  check_inputs(x, weight, bias, rotary);
  at::Tensor normed = at::layer_norm(x, {x.size(3)}, weight, bias, eps);
  if (!rotary) return normed;
  // diffusers' apply_rotary_emb: (re, im) pairs -> (-im, re), i.e. times i, so x*cos + rotated*sin is
  // x * e^(i*angle); in fp32, in its order of operations.
  const at::Tensor video = normed.narrow(2, rotary->first_token, x.size(2) - rotary->first_token);
  const at::Tensor pairs = video.reshape({video.size(0), video.size(1), video.size(2), -1, 2});
  at::Tensor rotated = at::stack({-pairs.select(-1, 1), pairs.select(-1, 0)}, -1).flatten(3).to(at::kFloat);
  rotated.mul_(rotary->sin);
  at::Tensor result = video.to(at::kFloat, /*non_blocking=*/false, /*copy=*/true).mul_(rotary->cos);
  result.add_(rotated);
  rotated.reset();
  video.copy_(result);
  return normed;
}

at::Tensor layer_norm_heads(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, double eps,
                            const std::optional<Rotary>& rotary, std::optional<at::Tensor> out) {
  check_inputs(x, weight, bias, rotary);
  if (out && (!out->is_contiguous() || out->sizes() != x.sizes() || out->scalar_type() != x.scalar_type() ||
              out->device() != x.device()))
    throw std::invalid_argument("layer_norm_heads: out must be a contiguous tensor of x's shape, type and device");
  if (!kernel_takes(x, weight, bias, rotary) || (out && !aligned(*out))) {
    at::Tensor result = layer_norm_heads_reference(x, weight, bias, eps, rotary);
    return out ? out->copy_(result) : result;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor result = out ? *out : at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  detail::HeadNormArgs args{};
  args.x = x.data_ptr();
  args.stride_batch = x.stride(0);
  args.stride_head = x.stride(1);
  args.stride_token = x.stride(2);
  args.batch = x.size(0);
  args.heads = x.size(1);
  args.length = x.size(2);
  args.dim = int(x.size(3));
  args.weight = weight.data_ptr();
  args.bias = bias.data_ptr();
  args.eps = float(eps);
  if (rotary) {
    args.cos = rotary->cos.data_ptr<float>();
    args.sin = rotary->sin.data_ptr<float>();
    args.first_token = rotary->first_token;
  }
  args.out = result.data_ptr();
  detail::layer_norm_heads(args, x.scalar_type() == at::kHalf ? detail::HeadElement::fp16 : detail::HeadElement::bf16,
                           c10::cuda::getCurrentCUDAStream().stream());
  return result;
}

}  // namespace sagevid::kernels
