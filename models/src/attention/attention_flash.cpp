// PyTorch's FlashAttention-2 kernel, called directly rather than left to the SDPA dispatcher's choice.
#include "attention_backends.h"

#include <ATen/ops/_scaled_dot_product_flash_attention.h>

namespace sagevid::detail {

std::optional<std::string> flash_unsupported(const AttentionCall& call) {
  if (call.params.bias) return "it takes no additive bias";
  return fused_kernel_unsupported(call, 256);
}

at::Tensor flash_attention(const AttentionCall& call) {
  const int64_t heads = call.q.size(1);
  auto result = at::_scaled_dot_product_flash_attention(call.q, repeat_kv_heads(call.k, heads),
                                                        repeat_kv_heads(call.v, heads), /*dropout_p=*/0.0,
                                                        call.params.causal, /*return_debug_mask=*/false, call.scale);
  return std::get<0>(result);
}

}  // namespace sagevid::detail
