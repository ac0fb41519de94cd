// SageAttention2 reference in plain torch ops: the kernels' smoothing, quantization groups, FP8/FP16
// rounding and base-2 online softmax, vectorized over batch, heads and rows, looping only over key tiles.
//
// Exactness notes. Quantized values and scales must match the CUDA kernels bit for bit, so every division
// here is tensor / tensor: on CUDA, torch turns "tensor / scalar" into a multiplication by the reciprocal,
// which rounds differently. The integer Q·Kᵀ dot products are exact in fp32 (|sum| <= 127² · 128 < 2^24,
// and the integer operands survive even TF32 rounding).
#include "sagevid/kernels/sage2_reference.h"

#include "sagevid/kernels/sage2_inputs.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/exp2.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/log2.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/round.h>
#include <ATen/ops/scatter_reduce.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid::kernels::sage2::reference {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

void require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument("sage2 reference: " + message);
}

// numerator / denominator as a true fp32 division on every device (see the note at the top).
at::Tensor divide(double numerator, const at::Tensor& denominator) {
  return at::full_like(denominator, numerator).div_(denominator);
}
at::Tensor divide(const at::Tensor& numerator, double denominator) {
  return numerator.div(at::full_like(numerator, denominator));
}

// Integer index tensor on `like`'s device, from a host function of the position.
template <typename F>
at::Tensor index_tensor(int64_t size, const at::Tensor& like, F&& index_of) {
  std::vector<int64_t> indices(size_t(size), 0);
  for (int64_t i = 0; i < size; ++i) indices[size_t(i)] = index_of(i);
  return at::tensor(at::ArrayRef<int64_t>(indices), at::TensorOptions().dtype(at::kLong)).to(like.device());
}

// x [B, H_kv, ...] seen as [B, H_kv * group, ...]: query head h reads kv head h / group.
at::Tensor expand_heads(const at::Tensor& x, int64_t group) {
  if (group == 1) return x;
  std::vector<int64_t> sizes(x.sizes().begin(), x.sizes().end());
  std::vector<int64_t> expanded = sizes;
  expanded.insert(expanded.begin() + 2, group);
  sizes[1] *= group;
  return x.unsqueeze(2).expand(expanded).reshape(sizes);
}

// Symmetric quantization of the rows of x [B, H, N, D] into the groups `group_of(row)` of rows padded to
// `tile`. Padding rows are zero, so they can sit in the group amax without changing it.
template <typename GroupOf>
QuantizedRows quantize_rows(const at::Tensor& x, int64_t tile, int64_t groups_per_tile, int qmax, GroupOf&& group_of) {
  require(x.dim() == 4, "quantize expects [B, H, N, D]");
  const int64_t batch = x.size(0), heads = x.size(1), len = x.size(2);
  const int64_t padded = round_up(len, tile), groups = padded / tile * groups_per_tile;
  const at::Tensor rows = at::constant_pad_nd(x.to(at::kFloat), {0, 0, 0, padded - len}, 0.0);

  const at::Tensor row_group = index_tensor(padded, x, group_of);
  const at::Tensor row_amax = rows.abs().amax(-1);  // [B, H, padded]
  const at::Tensor amax = at::zeros({batch, heads, groups}, rows.options())
                              .scatter_reduce(2, row_group.expand({batch, heads, padded}), row_amax, "amax");
  const at::Tensor nonzero = amax > 0;
  const at::Tensor scales = at::where(nonzero, divide(amax, qmax), at::full_like(amax, 1.0));
  const at::Tensor inv = at::where(nonzero, divide(qmax, amax), at::zeros_like(amax));  // all-zero group: 0

  const at::Tensor scaled = rows * inv.index_select(2, row_group).unsqueeze(-1);
  const at::Tensor values = at::round(scaled).clamp(-qmax, qmax).to(at::kChar);  // round: half to even
  return {values, scales};
}

// ΔS = q̄ · K'ᵀ per query block [B, H_q, blocks, N_kv] from the INT8 means and INT8 K' (GQA: query head h
// reads kv head h / group): integer dot products (exact in fp32: |sum| <= 127² · 128 < 2^24), then one
// factor per element, the mean's scale times the key's k-scale (as the kernel multiplies them).
at::Tensor delta_scores(const QuantizedRows& means, const QuantizedRows& k, Granularity granularity, int64_t blocks,
                        int64_t kv_len, int64_t group) {
  const at::Tensor mean_values = means.values.narrow(2, 0, blocks).to(at::kFloat);
  const at::Tensor mean_scales = means.scales.narrow(2, 0, blocks).unsqueeze(-1);  // [B, H_q, blocks, 1]
  const at::Tensor key_values = expand_heads(k.values.narrow(2, 0, kv_len).to(at::kFloat), group);
  const at::Tensor key_group = index_tensor(kv_len, k.scales, [&](int64_t key) { return k_group(key, granularity); });
  // [.., 1, N_kv]
  const at::Tensor key_scales = expand_heads(k.scales, group).index_select(2, key_group).unsqueeze(2);
  return at::matmul(mean_values, key_values.transpose(2, 3)) * (mean_scales * key_scales);
}

}  // namespace

QuantizedRows quantize_q(const at::Tensor& x_bhnd, Granularity granularity, int qmax) {
  return quantize_rows(x_bhnd, kQBlock, q_groups_per_block(granularity), qmax,
                       [granularity](int64_t row) { return q_group(row, granularity); });
}

QuantizedRows quantize_k(const at::Tensor& x_bhnd, Granularity granularity, int qmax) {
  return quantize_rows(x_bhnd, kKBlock, k_groups_per_block(granularity), qmax,
                       [granularity](int64_t row) { return k_group(row, granularity); });
}

QuantizedV quantize_v_fp8(const at::Tensor& v_bhnd, VScale scale) {
  const at::Tensor v = v_bhnd.to(at::kFloat);
  at::Tensor amax = v.abs().amax(2);  // [B, H, D]
  if (scale == VScale::sampled) {
    const at::Tensor sampled = v.slice(2, 0, v.size(2), kVScaleStride).abs().amax(2) * kVScaleMargin;
    const at::Tensor fits = amax.le(sampled).all(/*dim=*/2, /*keepdim=*/true);  // the whole head's
    amax = at::where(fits, sampled, amax);
  }
  const at::Tensor nonzero = amax > 0;
  const at::Tensor scales = at::where(nonzero, divide(amax, kFp8Max), at::full_like(amax, 1.0));
  const at::Tensor inv = at::where(nonzero, divide(kFp8Max, amax), at::zeros_like(amax));
  const at::Tensor values = (v * inv.unsqueeze(2)).to(at::kFloat8_e4m3fn).to(at::kFloat);
  return {values, scales};
}

Preprocessed preprocess(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options,
                        const TokenMeans& means) {
  require(options.kernel && options.qk && options.pv && options.smooth_q && options.granularity,
          "options must be resolved (sage2::resolve)");
  const at::Tensor qf = to_bhnd_float(q, options.layout);
  const at::Tensor kf = to_bhnd_float(k, options.layout);
  const at::Tensor vf = to_bhnd_float(v, options.layout);
  const int64_t group = qf.size(1) / kf.size(1);
  const int qmax = *options.qk == QkType::int8 ? kInt8Max : kInt4Max;

  Preprocessed pre;
  at::Tensor k_smooth = kf;
  if (options.smooth_k) {
    pre.k_mean = means.k_mean.defined() ? means.k_mean : key_mean(bhnd_view(k, options.layout));
    k_smooth = kf - pre.k_mean.unsqueeze(2);
  }
  at::Tensor q_smooth = qf;
  if (*options.smooth_q) {
    pre.q_mean = block_mean(qf);
    const at::Tensor row_block = index_tensor(qf.size(2), qf, [](int64_t row) { return row / kQBlock; });
    q_smooth = qf - pre.q_mean.index_select(2, row_block);
  }
  pre.q = quantize_q(q_smooth, *options.granularity, qmax);
  pre.k = quantize_k(k_smooth, *options.granularity, qmax);
  if (*options.smooth_q) {
    // The part of the scores that smoothing removed, added back per block before the softmax.
    pre.q_mean_int8 = quantize_q(pre.q_mean, Granularity::per_token, kInt8Max);
    pre.k_int8 = qmax == kInt8Max ? pre.k : quantize_k(k_smooth, *options.granularity, kInt8Max);
    pre.delta_s =
        delta_scores(pre.q_mean_int8, pre.k_int8, *options.granularity, pre.q_mean.size(2), kf.size(2), group);
  }

  at::Tensor v_smooth = vf;
  if (options.smooth_v) {
    pre.v_mean = means.v_mean.defined() ? means.v_mean : token_mean(bhnd_view(v, options.layout));
    v_smooth = vf - pre.v_mean.unsqueeze(2);
  }
  if (*options.pv == PvType::fp8) {
    pre.v = quantize_v_fp8(v_smooth, options.smooth_v ? VScale::exact : VScale::sampled);
  } else {
    pre.v.values = v_smooth.to(at::kHalf).to(at::kFloat);
  }
  return pre;
}

namespace {

void check_shapes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, Layout layout) {
  const auto problem = qkv_shape_problem(q, k, v, layout);
  require(!problem, problem.value_or(""));
}

// The bias as fp32, broadcastable to [B, H_q, N_q, N_kv] (checked by the rules the host API checks).
at::Tensor bias_float(const at::Tensor& bias, const at::Tensor& q, Layout layout, int64_t kv_len) {
  const auto problem = bias_problem(bias, q, dims_of(q, layout), kv_len);
  require(!problem, problem.value_or(""));
  return bias.to(at::kFloat);
}

// The running state of the online softmax, in base 2, for every (batch, head, query row).
struct SoftmaxState {
  at::Tensor m;    // running row max of t = s·log2(e), [B, H, N_q, 1]
  at::Tensor l;    // running sum of exp2(t − m), unquantized, [B, H, N_q, 1]
  at::Tensor acc;  // running Σ P_q · V, [B, H, N_q, D]
  at::Tensor slack;  // running Σ |P_q rounded the other way − P_q| · |V| over the P values in doubt, [B, H, N_q, D]
};

// P̃ as the kernels round it: FP8 E4M3 (of 448·p) or FP16.
at::Tensor round_p(const at::Tensor& scaled_p, bool fp8) {
  return fp8 ? scaled_p.to(at::kFloat8_e4m3fn).to(at::kFloat) : scaled_p.to(at::kHalf).to(at::kFloat);
}

// How far each rounded FP8 P̃ would move if it rounded the other way, for the values within kRoundingDoubt of a
// rounding midpoint (0 for the others).
at::Tensor rounding_doubt(const at::Tensor& scaled_p, const at::Tensor& rounded) {
  return at::maximum((round_p(scaled_p * (1 + kRoundingDoubt), true) - rounded).abs(),
                     (round_p(scaled_p * (1 - kRoundingDoubt), true) - rounded).abs());
}

}  // namespace

Simulated attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options,
                    const std::optional<at::Tensor>& bias, const TokenMeans& means) {
  require(options.kernel && options.qk && options.pv && options.smooth_q && options.granularity,
          "options must be resolved (sage2::resolve)");
  check_shapes(q, k, v, options.layout);
  const Preprocessed pre = reference::preprocess(q, k, v, options, means);  // qualified: no ADL into sage2::
  const at::Tensor qf = to_bhnd_float(q, options.layout);
  const int64_t heads = qf.size(1), q_len = qf.size(2), head_dim = qf.size(3);
  const int64_t kv_len = pre.v.values.size(2), group = heads / pre.v.values.size(1);
  const double sm_scale = options.scale.value_or(1.0 / std::sqrt(double(head_dim)));
  const bool fp8 = *options.pv == PvType::fp8;
  const at::Tensor bias_f = bias ? bias_float(*bias, q, options.layout, kv_len) : at::Tensor();

  // Per query row: its quantization scale and its smoothing block.
  const at::Tensor q_values = pre.q.values.narrow(2, 0, q_len).to(at::kFloat);
  const at::Tensor q_row_group =
      index_tensor(q_len, qf, [&](int64_t row) { return q_group(row, *options.granularity); });
  const at::Tensor q_row_scale = pre.q.scales.index_select(2, q_row_group).unsqueeze(-1);  // [B, H, N_q, 1]
  const at::Tensor q_row_block = index_tensor(q_len, qf, [](int64_t row) { return row / kQBlock; });
  const at::Tensor k_values = expand_heads(pre.k.values.to(at::kFloat), group);
  const at::Tensor k_scales = expand_heads(pre.k.scales, group);
  const at::Tensor k_row_group =
      index_tensor(round_up(kv_len, kKBlock), qf, [&](int64_t row) { return k_group(row, *options.granularity); });
  const at::Tensor v_values = expand_heads(pre.v.values, group);
  const at::Tensor rows = at::arange(q_len, qf.options().dtype(at::kLong)).unsqueeze(-1);

  SoftmaxState state{at::full_like(q_row_scale, -kInf), at::zeros_like(q_row_scale), at::zeros_like(qf),
                     at::zeros_like(qf)};
  const int64_t key_tile = tiling(*options.kernel).key_tile;  // the kernel's softmax steps
  for (int64_t start = 0; start < kv_len; start += key_tile) {
    const int64_t size = std::min<int64_t>(key_tile, kv_len - start);  // padding keys would be masked anyway

    // Dequantized scores of this tile: (q_int·k_int)·q_scale·k_scale (+ ΔS), ·sm_scale, + bias, masked.
    const at::Tensor k_tile = k_values.narrow(2, start, size);
    const at::Tensor k_tile_scale =
        k_scales.index_select(2, k_row_group.narrow(0, start, size)).unsqueeze(2);  // [B, H, 1, size]
    at::Tensor s = at::matmul(q_values, k_tile.transpose(2, 3)) * q_row_scale * k_tile_scale;
    if (pre.delta_s.defined()) s = s + pre.delta_s.narrow(3, start, size).index_select(2, q_row_block);
    s = s * sm_scale;
    if (bias_f.defined()) s = s + bias_f.narrow(-1, start, size);
    if (options.causal) {
      const at::Tensor cols = at::arange(start, start + size, rows.options()).unsqueeze(0);
      s = s.masked_fill(cols > rows, -kInf);
    }
    const at::Tensor t = s * kLog2e;

    // Online softmax in base 2. A row with no visible key yet keeps m = −inf: use 0 as its reference so
    // that exp2 gives 0 rather than NaN.
    const at::Tensor m_new = at::maximum(state.m, t.amax(-1, /*keepdim=*/true));
    const at::Tensor m_ref = m_new.masked_fill(m_new == -kInf, 0.0);
    const at::Tensor rescale = at::exp2(state.m - m_ref);
    const at::Tensor p = at::exp2(t - m_ref);
    state.l = state.l * rescale + p.sum(-1, /*keepdim=*/true);
    const at::Tensor p_scaled = fp8 ? p * kFp8Max : p;
    const at::Tensor p_rounded = round_p(p_scaled, fp8);
    const at::Tensor v_tile = v_values.narrow(2, start, size);
    state.acc = state.acc * rescale + at::matmul(p_rounded, v_tile);
    if (fp8) state.slack = state.slack * rescale + at::matmul(rounding_doubt(p_scaled, p_rounded), v_tile.abs());
    state.m = m_new;
  }

  // Epilogue: normalize, undo the V scaling and smoothing, back to q's dtype and layout.
  const at::Tensor l_safe = state.l.masked_fill(state.l == 0, 1.0);
  at::Tensor out = state.acc / l_safe, slack = state.slack / l_safe;
  if (fp8) {
    const at::Tensor v_scale = divide(expand_heads(pre.v.scales, group), kFp8Max).unsqueeze(2);
    out = out * v_scale, slack = slack * v_scale;
  }
  if (pre.v_mean.defined()) out = out + expand_heads(pre.v_mean, group).unsqueeze(2);
  out = out.to(q.scalar_type());
  if (options.layout == Layout::bnhd) out = out.permute({0, 2, 1, 3}), slack = slack.permute({0, 2, 1, 3});

  Simulated result;
  result.out = out.contiguous();
  result.slack = slack.contiguous();
  if (options.return_lse) {
    // Natural-log LSE of the kernel's scores, plus what smoothing K removed: sm_scale · q_i · k̄.
    at::Tensor lse = (state.m + at::log2(l_safe)) / kLog2e;
    if (pre.k_mean.defined()) {
      lse = lse + at::matmul(qf, expand_heads(pre.k_mean, group).unsqueeze(-1)) * sm_scale;
    }
    result.lse = lse.squeeze(-1).contiguous();
  }
  return result;
}

}  // namespace sagevid::kernels::sage2::reference
