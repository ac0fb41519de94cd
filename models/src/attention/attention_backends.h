#pragma once
// Private to the attention layer: one validated call, and each backend's capability check and kernel.
#include "sagevid/models/attention.h"

namespace sagevid::detail {

struct AttentionCall {
  const AttentionConfig& config;
  const at::Tensor& q;
  const at::Tensor& k;
  const at::Tensor& v;
  const AttentionParams& params;
  double scale;  // resolved: params.scale or 1/sqrt(D)
};

// The bias as a [B, H_q, N_q, N_kv] view (no copy), in the given dtype.
at::Tensor expanded_bias(const AttentionCall& call, at::ScalarType dtype);
// k or v with its heads repeated to H_q, for kernels that lack grouped-query support (copies).
at::Tensor repeat_kv_heads(const at::Tensor& kv, int64_t query_heads);
// What the fused CUDA kernels (flash, cudnn) need of the device and dtype: CUDA sm_80+, fp16/bf16.
std::optional<std::string> fused_device_unsupported(const at::Device& device, at::ScalarType dtype);
// Shared checks of the fused CUDA kernels: the device and dtype above, head dim limit, causal alignment.
std::optional<std::string> fused_kernel_unsupported(const AttentionCall& call, int64_t max_head_dim);

std::optional<std::string> sage2_unsupported(const AttentionCall& call);
at::Tensor sage2_attention(const AttentionCall& call);
std::optional<std::string> flash_unsupported(const AttentionCall& call);
at::Tensor flash_attention(const AttentionCall& call);

std::optional<std::string> cudnn_unsupported(const AttentionCall& call);
at::Tensor cudnn_attention(const AttentionCall& call);

// score_budget_bytes bounds the fp32 score block held at once (queries are processed in chunks).
constexpr int64_t kMathScoreBudgetBytes = int64_t(256) << 20;
at::Tensor math_attention(const AttentionCall& call, int64_t score_budget_bytes = kMathScoreBudgetBytes);

}  // namespace sagevid::detail
