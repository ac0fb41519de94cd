#pragma once
// What an attention call asks of its inputs' shapes, and its bias seen at full size: one home for the rules
// the sage2 host API, its CPU reference and the models' attention layer all check, so that they agree on
// what a well-formed call is and say so in the same words.
#include "sagevid/kernels/sage2.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

namespace sagevid::kernels::sage2 {

// The sizes of q, k or v in a layout.
struct Dims {
  int64_t batch, heads, len, head_dim;
};
Dims dims_of(const at::Tensor& x, Layout layout);

// Why q, k and v cannot be one attention call by their shapes (4-D, k and v alike, q and k sharing batch and
// head dim, query heads a multiple of key/value heads, at least one key, a head dim), or nullopt.
std::optional<std::string> qkv_shape_problem(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             Layout layout);

// Why an additive bias cannot serve a call with these q dims and kv_len keys (it must broadcast to
// [B, H_q, N_q, N_kv] from [N_q, N_kv], [H_q or 1, N_q, N_kv] or [B or 1, H_q or 1, N_q, N_kv], be floating
// point and sit on q's device), or nullopt.
std::optional<std::string> bias_problem(const at::Tensor& bias, const at::Tensor& q, const Dims& q_dims,
                                        int64_t kv_len);

// The bias as a [B, H_q, N_q, N_kv] view in `dtype`, made contiguous before broadcasting: cuDNN faults on a
// permuted bias (T5's comes from a permute) and the sage2 kernels read rows with a unit stride.
at::Tensor broadcast_bias(const at::Tensor& bias, at::ScalarType dtype, const Dims& q_dims, int64_t kv_len);

}  // namespace sagevid::kernels::sage2
