// Our SageAttention2 kernels as an attention backend: quantization choices from the config, causal mask,
// scale and bias from the call. Grouped-query attention and biases run natively.
#include "attention_backends.h"

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
  return kernels::sage2::attention(call.q, call.k, call.v, call_options(call), call.params.bias).out;
}

int64_t sage2_workspace_bytes(const kernels::sage2::Options& resolved, int64_t batch, int64_t heads, int64_t q_len,
                              int64_t kv_len, int64_t head_dim) {
  using namespace kernels::sage2;
  constexpr int64_t kFloatBytes = 4;
  const auto blocks = [](int64_t length) { return (length + kKBlock - 1) / kKBlock; };
  const int64_t heads_total = batch * heads;
  const int64_t q_rows = heads_total * blocks(q_len) * kQBlock, kv_rows = heads_total * blocks(kv_len) * kKBlock;
  // Alive throughout: K's mean, then V's absolute maxima and scales (and their small temporaries).
  const int64_t per_channel = 4 * heads_total * head_dim * kFloatBytes;
  // Quantized Q and K (INT8 a byte an element, INT4 two in a byte) and V (FP8 a byte, FP16 two), and the Q and K
  // scales (at most one a row).
  const int64_t qk_bytes = (q_rows + kv_rows) * head_dim / (*resolved.qk == QkType::int4 ? 2 : 1);
  const int64_t v_bytes = kv_rows * head_dim * (*resolved.pv == PvType::fp8 ? 1 : 2);
  const int64_t quantized = qk_bytes + v_bytes + (q_rows + kv_rows) * kFloatBytes;
  if (!*resolved.smooth_q) return per_channel + quantized;
  // Q smoothing: Q's block means; an fp32 K and its smoothed copy, then that copy and ΔS = q̄·K'ᵀ
  // [B, H, N_q/64, N_kv] fp32, which stays until the kernel has run.
  const int64_t q_means = heads_total * blocks(q_len) * head_dim * kFloatBytes;
  const int64_t float_k = heads_total * kv_len * head_dim * kFloatBytes;
  const int64_t delta_s = heads_total * blocks(q_len) * kv_len * kFloatBytes;
  return per_channel + q_means + std::max({2 * float_k, float_k + delta_s, delta_s + quantized});
}

}  // namespace sagevid::detail
