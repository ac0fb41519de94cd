// The CogVideoX VAE encoder's layers (diffusers' CogVideoXEncoder3D) on one temporal batch.
#include "cogvideox_vae_layers.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/avg_pool3d.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/conv3d.h>
#include <ATen/ops/group_norm.h>
#include <ATen/ops/silu.h>

namespace sagevid::vae {
namespace {

// Group norm then SiLU (in place on the fresh norm output), the pre-activation of every encoder convolution.
at::Tensor norm_silu(const GroupNorm& norm, const at::Tensor& x) {
  at::Tensor h = at::group_norm(x, norm.groups, norm.weight, norm.bias, norm.eps);
  return at::silu_(h);
}

// Each pair of frames becomes its mean: 2k -> k.
at::Tensor average_frame_pairs(const at::Tensor& x) { return at::avg_pool3d(x, {2, 1, 1}, {2, 1, 1}); }

}  // namespace

at::Tensor encoder_resnet_block(const EncoderResnetBlock& block, const at::Tensor& x, ConvCache& cache) {
  at::Tensor h = causal_conv3d(block.conv1, norm_silu(block.norm1, x), cache);
  h = causal_conv3d(block.conv2, norm_silu(block.norm2, h), cache);
  // Dropout is identity at inference; the encoder has no time embedding.
  return h.add_(block.shortcut_weight.defined() ? safe_conv3d(x, block.shortcut_weight, block.shortcut_bias, 0) : x);
}

at::Tensor downsample(const Downsample& down, const at::Tensor& x) {
  const int64_t frames = x.size(2);
  at::Tensor y = x;
  if (down.compress_time && frames > 1) {
    y = frames % 2 == 1 ? at::cat({x.narrow(2, 0, 1), average_frame_pairs(x.narrow(2, 1, frames - 1))}, 2)
                        : average_frame_pairs(x);
  }
  // diffusers pads only the right and bottom (by one) before its unpadded stride-2 Conv2d; the per-frame Conv2d
  // runs as a 1x3x3 Conv3d (same sums, no [B*T, C, H, W] transposes).
  y = at::constant_pad_nd(y, {0, 1, 0, 1});
  return at::conv3d(y, down.weight.unsqueeze(2), down.bias, {1, 2, 2});
}

at::Tensor encode_batch(const CogVideoXVaeEncoder::Weights& w, const at::Tensor& x, ConvCache& cache) {
  at::Tensor h = causal_conv3d(w.conv_in, x, cache);
  for (const DownBlock& block : w.down) {
    for (const EncoderResnetBlock& resnet : block.resnets) h = encoder_resnet_block(resnet, h, cache);
    if (block.downsampler) h = downsample(*block.downsampler, h);
  }
  for (const EncoderResnetBlock& resnet : w.mid) h = encoder_resnet_block(resnet, h, cache);
  h = causal_conv3d(w.conv_out, norm_silu(w.norm_out, h), cache);
  return w.quant_weight.defined() ? safe_conv3d(h, w.quant_weight, w.quant_bias, 0) : h;
}

}  // namespace sagevid::vae
