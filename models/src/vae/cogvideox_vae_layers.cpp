#include "cogvideox_vae_layers.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv3d.h>
#include <ATen/ops/group_norm.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/upsample_nearest3d.h>

#include <algorithm>

namespace sagevid::vae {
namespace {

// The decoder's spatial norms use GroupNorm's eps 1e-6 whatever the config's norm_eps says (as diffusers).
constexpr double kSpatialNormEps = 1e-6;

at::Tensor resize_nearest(const at::Tensor& x, int64_t frames, int64_t height, int64_t width) {
  if (x.size(2) == frames && x.size(3) == height && x.size(4) == width) return x;
  return at::upsample_nearest3d(x, {frames, height, width});
}

}  // namespace

at::Tensor safe_conv3d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t spatial_padding,
                       double limit_gib) {
  const std::vector<int64_t> padding{0, spatial_padding, spatial_padding};
  // diffusers splits inputs over 2 GiB at 2 bytes an element (whatever the dtype) into that many + 1 parts.
  const double gib = double(x.numel()) * 2 / double(int64_t(1) << 30);
  const int64_t kernel_t = weight.size(2), out_frames = x.size(2) - kernel_t + 1;
  if (gib <= limit_gib || out_frames <= 1) return at::conv3d(x, weight, bias, 1, padding);
  const int64_t parts = int64_t(gib / limit_gib) + 1, chunk = (out_frames + parts - 1) / parts;
  std::vector<at::Tensor> outputs;
  // Output frames [begin, end) read input frames [begin, end + kernel_t - 1): chunks overlap by kernel_t - 1.
  for (int64_t begin = 0; begin < out_frames; begin += chunk) {
    const int64_t end = std::min(begin + chunk, out_frames);
    outputs.push_back(at::conv3d(x.narrow(2, begin, end - begin + kernel_t - 1), weight, bias, 1, padding));
  }
  return at::cat(outputs, 2);
}

at::Tensor causal_conv3d(const CausalConv3d& conv, const at::Tensor& x, ConvCache& cache) {
  const int64_t kernel = conv.weight.size(2);
  if (kernel == 1) return safe_conv3d(x, conv.weight, conv.bias, 0);
  at::Tensor& past = cache.frames.at(conv.slot);
  // Past-side padding: the previous batch's last input frames, or the first frame repeated at the start.
  const at::Tensor padded =
      at::cat({past.defined() ? past : x.narrow(2, 0, 1).expand({-1, -1, kernel - 1, -1, -1}), x}, 2);
  past = padded.narrow(2, padded.size(2) - (kernel - 1), kernel - 1).clone();  // not a view: frees the batch
  return safe_conv3d(padded, conv.weight, conv.bias, (kernel - 1) / 2);
}

at::Tensor spatial_norm(const SpatialNorm& norm, const at::Tensor& f, const at::Tensor& zq) {
  const int64_t frames = f.size(2), height = f.size(3), width = f.size(4);
  at::Tensor z;
  if (frames > 1 && frames % 2 == 1) {
    // 1 + 4k layout: the first latent frame maps to the first frame alone, the rest spread over the others.
    z = at::cat({resize_nearest(zq.narrow(2, 0, 1), 1, height, width),
                 resize_nearest(zq.narrow(2, 1, zq.size(2) - 1), frames - 1, height, width)},
                2);
  } else {
    z = resize_nearest(zq, frames, height, width);
  }
  at::Tensor out = at::group_norm(f, norm.groups, norm.norm_weight, norm.norm_bias, kSpatialNormEps);
  out.mul_(safe_conv3d(z, norm.y_weight, norm.y_bias, 0));
  out.add_(safe_conv3d(z, norm.b_weight, norm.b_bias, 0));
  return out;
}

at::Tensor resnet_block(const ResnetBlock& block, const at::Tensor& x, const at::Tensor& zq, ConvCache& cache) {
  at::Tensor h = spatial_norm(block.norm1, x, zq);
  h = causal_conv3d(block.conv1, at::silu_(h), cache);
  h = spatial_norm(block.norm2, h, zq);
  h = causal_conv3d(block.conv2, at::silu_(h), cache);
  // Dropout is identity at inference; the decoder has no time embedding.
  return h.add_(block.shortcut_weight.defined() ? safe_conv3d(x, block.shortcut_weight, block.shortcut_bias, 0) : x);
}

at::Tensor upsample(const Upsample& up, const at::Tensor& x) {
  const int64_t frames = x.size(2), height = 2 * x.size(3), width = 2 * x.size(4);
  at::Tensor y;
  if (up.compress_time && frames > 1 && frames % 2 == 1) {
    // A lone first frame stays one frame; the others double: 1 + 2k -> 1 + 4k.
    y = at::cat({resize_nearest(x.narrow(2, 0, 1), 1, height, width),
                 resize_nearest(x.narrow(2, 1, frames - 1), 2 * (frames - 1), height, width)},
                2);
  } else if (up.compress_time && frames > 1) {
    y = resize_nearest(x, 2 * frames, height, width);
  } else {
    y = resize_nearest(x, frames, height, width);  // spatial only (also a single frame under compress_time)
  }
  // The per-frame Conv2d as a 1x3x3 Conv3d: same sums, no [B*T, C, H, W] transposes.
  return at::conv3d(y, up.weight.unsqueeze(2), up.bias, 1, {0, 1, 1});
}

}  // namespace sagevid::vae
