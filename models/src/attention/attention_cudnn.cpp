// cuDNN's fused attention (through PyTorch's op), the one fused GPU backend that takes an additive bias.
#include "attention_backends.h"

#include <ATen/ops/_scaled_dot_product_cudnn_attention.h>

namespace sagevid::detail {

std::optional<std::string> cudnn_unsupported(const AttentionCall& call) { return fused_kernel_unsupported(call, 128); }

at::Tensor cudnn_attention(const AttentionCall& call) {
  const int64_t heads = call.q.size(1);
  std::optional<at::Tensor> bias;
  if (call.params.bias) bias = expanded_bias(call, call.q.scalar_type());
  auto result = at::_scaled_dot_product_cudnn_attention(
      call.q, repeat_kv_heads(call.k, heads), repeat_kv_heads(call.v, heads), bias,
      /*compute_log_sumexp=*/false, /*dropout_p=*/0.0, call.params.causal, /*return_debug_mask=*/false, call.scale);
  return std::get<0>(result);
}

}  // namespace sagevid::detail
