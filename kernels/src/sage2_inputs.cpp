#include "sagevid/kernels/sage2_inputs.h"

#include "sagevid/kernels/shape_string.h"

namespace sagevid::kernels::sage2 {

Dims dims_of(const at::Tensor& x, Layout layout) {
  return layout == Layout::bhnd ? Dims{x.size(0), x.size(1), x.size(2), x.size(3)}
                                : Dims{x.size(0), x.size(2), x.size(1), x.size(3)};
}

std::optional<std::string> qkv_shape_problem(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             Layout layout) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    return std::string("q, k, v must be ") + (layout == Layout::bhnd ? "[B, H, N, D]" : "[B, N, H, D]") + "; got " +
           shape_string(q.sizes()) + ", " + shape_string(k.sizes()) + ", " + shape_string(v.sizes());
  if (k.sizes() != v.sizes()) return "k " + shape_string(k.sizes()) + " and v " + shape_string(v.sizes()) + " differ";
  const Dims dq = dims_of(q, layout), dk = dims_of(k, layout);
  if (dk.batch != dq.batch) return "batch of q and k differ";
  if (dk.head_dim != dq.head_dim) return "head dim of q and k differ";
  if (dk.heads == 0 || dq.heads % dk.heads != 0)
    return "query heads (" + std::to_string(dq.heads) + ") must be a multiple of key/value heads (" +
           std::to_string(dk.heads) + ")";
  if (dk.len == 0) return "no keys: N_kv is 0";
  if (dq.head_dim == 0) return "head dim is 0";
  return std::nullopt;
}

std::optional<std::string> bias_problem(const at::Tensor& bias, const at::Tensor& q, const Dims& q_dims,
                                        int64_t kv_len) {
  const int64_t dims = bias.dim();
  const bool fits = dims >= 2 && dims <= 4 && bias.size(-2) == q_dims.len && bias.size(-1) == kv_len &&
                    (dims < 3 || bias.size(-3) == q_dims.heads || bias.size(-3) == 1) &&
                    (dims < 4 || bias.size(0) == q_dims.batch || bias.size(0) == 1);
  if (!fits)
    return "bias " + shape_string(bias.sizes()) + " does not broadcast to " +
           shape_string({q_dims.batch, q_dims.heads, q_dims.len, kv_len});
  if (!at::isFloatingType(bias.scalar_type())) return "bias must be floating point";
  if (bias.device() != q.device()) return "bias is on " + bias.device().str() + ", q on " + q.device().str();
  return std::nullopt;
}

at::Tensor broadcast_bias(const at::Tensor& bias, at::ScalarType dtype, const Dims& q_dims, int64_t kv_len) {
  at::Tensor b = bias.to(dtype).contiguous();
  while (b.dim() < 4) b = b.unsqueeze(0);
  return b.expand({q_dims.batch, q_dims.heads, q_dims.len, kv_len});
}

}  // namespace sagevid::kernels::sage2
