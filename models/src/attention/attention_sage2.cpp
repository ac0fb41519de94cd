// Our SageAttention2 kernels as an attention backend: quantization choices from the config, causal mask,
// scale and bias from the call. Grouped-query attention and biases run natively.
#include "attention_backends.h"

#include <ATen/ops/empty.h>

namespace sagevid::detail {
namespace {

kernels::sage2::Options call_options(const AttentionCall& call) {
  kernels::sage2::Options options = call.config.sage2;
  options.layout = kernels::sage2::Layout::bhnd;
  options.causal = call.params.causal;
  options.scale = call.scale;
  return options;
}

}  // namespace

std::optional<std::string> sage2_unsupported(const AttentionCall& call) {
  return kernels::sage2::unsupported_reason(call.q, call.k, call.v, call_options(call), call.params.bias.has_value());
}

at::Tensor sage2_attention(const AttentionCall& call) {
  // [B, H, L, d] as a view of [B, L, H, d] memory: callers turn heads back into tokens ([B, L, H·d]) for the
  // output projection, which is then a view instead of a copy.
  const at::Tensor& q = call.q;
  const at::Tensor out = at::empty({q.size(0), q.size(2), q.size(1), call.v.size(3)}, q.options()).transpose(1, 2);
  return kernels::sage2::attention(q, call.k, call.v, call_options(call), call.params.bias, out).out;
}

}  // namespace sagevid::detail
