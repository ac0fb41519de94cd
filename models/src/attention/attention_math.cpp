// The portable backend: plain fp32 matmul-softmax-matmul on any device. Queries are processed in chunks so
// the fp32 score matrix stays within a fixed budget at long sequence lengths.
#include "attention_backends.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/softmax.h>

#include <algorithm>
#include <limits>

namespace sagevid::detail {
at::Tensor math_attention(const AttentionCall& call, int64_t score_budget_bytes) {
  const int64_t batch = call.q.size(0), q_heads = call.q.size(1), q_len = call.q.size(2);
  const int64_t head_dim = call.q.size(3), kv_heads = call.k.size(1), kv_len = call.k.size(2);
  const int64_t group = q_heads / kv_heads;

  // Grouped-query attention by broadcasting: q as [B, H_kv, G, N_q, D] against k, v as [B, H_kv, 1, N_kv, D].
  const at::Tensor q = call.q.to(at::kFloat).reshape({batch, kv_heads, group, q_len, head_dim});
  const at::Tensor k_t = call.k.to(at::kFloat).unsqueeze(2).transpose(-1, -2);
  const at::Tensor v = call.v.to(at::kFloat).unsqueeze(2);
  const at::Tensor bias = call.params.bias ? expanded_bias(call, at::kFloat) : at::Tensor();
  const at::Tensor key_index = at::arange(kv_len, q.options().dtype(at::kLong));

  at::Tensor out = at::empty({batch, kv_heads, group, q_len, head_dim}, q.options());
  const int64_t row_bytes = std::max<int64_t>(1, batch * q_heads * kv_len * int64_t(sizeof(float)));
  const int64_t chunk = std::max<int64_t>(1, score_budget_bytes / row_bytes);
  for (int64_t start = 0; start < q_len; start += chunk) {
    const int64_t rows = std::min(chunk, q_len - start);
    at::Tensor scores = at::matmul(q.narrow(3, start, rows), k_t).mul_(call.scale);
    if (bias.defined()) scores.add_(bias.narrow(2, start, rows).reshape({batch, kv_heads, group, rows, kv_len}));
    if (call.params.causal) {
      const at::Tensor query_index = at::arange(start, start + rows, key_index.options()).unsqueeze(1);
      scores.masked_fill_(key_index.unsqueeze(0).gt(query_index), -std::numeric_limits<float>::infinity());
    }
    out.narrow(3, start, rows).copy_(at::matmul(at::softmax(scores, -1), v));
  }
  return out.reshape({batch, q_heads, q_len, head_dim}).to(call.q.scalar_type());
}

}  // namespace sagevid::detail
