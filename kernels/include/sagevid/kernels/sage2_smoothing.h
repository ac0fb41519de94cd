#pragma once
// The smoothing math SageAttention2 shares between its host API and its CPU reference: inputs seen as
// [B, H, N, D] and the means subtracted from them. One home, so both compute the same bits.
#include "sagevid/kernels/sage2.h"

namespace sagevid::kernels::sage2 {

// An input seen as [B, H, N, D] (a view, no copy), and the same as a contiguous fp32 tensor.
at::Tensor bhnd_view(const at::Tensor& x, Layout layout);
at::Tensor to_bhnd_float(const at::Tensor& x, Layout layout);

// Token mean per (batch, head, channel) in fp32 from any dtype: [B, H, D]. (The CUDA preprocessing sums in
// another order: its means agree to rounding, see TokenMeans.)
at::Tensor token_mean(const at::Tensor& x_bhnd);
// K's smoothing mean, [B, H, D] fp32: token_mean of its keys 0, kKeyMeanStride, 2 kKeyMeanStride, ...
// (sage2_layout.h says why a sample).
at::Tensor key_mean(const at::Tensor& k_bhnd);
// Mean of each kQBlock block of valid rows: [B, H, ceil(N / kQBlock), D] fp32 (the last block may be partial).
at::Tensor block_mean(const at::Tensor& x_bhnd);

}  // namespace sagevid::kernels::sage2
