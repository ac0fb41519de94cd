#include "sagevid/kernels/sage2_smoothing.h"

#include "sagevid/kernels/sage2_layout.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/mean.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid::kernels::sage2 {
namespace {

void require_4d(const at::Tensor& x) {
  if (x.dim() != 4) throw std::invalid_argument("sage2: inputs must be 4-D, got " + std::to_string(x.dim()) + "-D");
}

}  // namespace

at::Tensor bhnd_view(const at::Tensor& x, Layout layout) {
  require_4d(x);
  return layout == Layout::bnhd ? x.permute({0, 2, 1, 3}) : x;
}

at::Tensor to_bhnd_float(const at::Tensor& x, Layout layout) {
  // Contiguous, so that reductions sum in the same order whatever the input layout: a [B, N, H, D] input
  // then gives bit for bit the result of its [B, H, N, D] copy.
  return bhnd_view(x, layout).to(at::kFloat, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous);
}

// Reduces in fp32 straight from the input's dtype: no fp32 copy of a whole K or V (the host API calls this on
// the raw inputs, so its means are these bits too).
at::Tensor token_mean(const at::Tensor& x_bhnd) { return at::mean(x_bhnd, {2}, /*keepdim=*/false, at::kFloat); }

at::Tensor key_mean(const at::Tensor& k_bhnd) {
  return token_mean(k_bhnd.slice(/*dim=*/2, /*start=*/0, /*end=*/k_bhnd.size(2), /*step=*/kKeyMeanStride));
}

at::Tensor block_mean(const at::Tensor& x_bhnd) {
  const at::Tensor x = x_bhnd.to(at::kFloat);
  const int64_t len = x.size(2), full_blocks = len / kQBlock, full_len = full_blocks * kQBlock;
  std::vector<at::Tensor> parts;
  if (full_blocks > 0) {
    parts.push_back(
        x.narrow(2, 0, full_len).reshape({x.size(0), x.size(1), full_blocks, kQBlock, x.size(3)}).mean({3}));
  }
  if (len > full_len) parts.push_back(x.narrow(2, full_len, len - full_len).mean({2}, /*keepdim=*/true));
  return at::cat(parts, 2);
}

}  // namespace sagevid::kernels::sage2
