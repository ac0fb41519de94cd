#pragma once
// Launchers of the SageAttention2 CUDA kernels (private to kernels/): the preprocessing, and the one entry
// to the attention kernel families (mma/, sm90/). All take raw device pointers and element strides, and
// launch on the given stream. Tensor-level logic lives in sage2_api.cpp.
#include "sagevid/kernels/sage2_layout.h"

#include <cstdint>
#include <cuda_runtime_api.h>

namespace sagevid::kernels::sage2::detail {

enum class InputType { fp16, bf16 };

// Strided [B, H, N, D] view of an fp16/bf16 input (D contiguous).
struct StridedInput {
  const void* data;
  InputType type;
  int64_t stride_b, stride_h, stride_n;
  int batch, heads, len, head_dim;
};

// A per-(batch, head) channel vector [B, H, D] given as `parts` partial results [B, H, parts, D] that each
// reader folds in a fixed order: summed then divided by `divisor` (a token mean from partial sums), or maxed
// (an absmax). One part with divisor 1 is a final vector. data null: no vector.
struct ChannelPartials {
  const float* data = nullptr;
  int parts = 1;
  float divisor = 1.0f;
};

// The token statistics quantization needs before it can start, one pass over K and V: per chunk of
// kStatisticsRows tokens, K's channel sums and V's channel max|v| (over every kKeyMeanStride-th key: sage2_layout.h)
// and V's channel sums, each [B, H_kv, chunks, D] fp32 (a null pointer: not wanted). Deterministic: fixed summation
// order. The pass also zeroes `zeroed`, words the quantization pass accumulates into (SampledVScale), so that they
// need no launch of their own.
constexpr int kStatisticsRows = 1024;
struct TokenStatistics {
  float* k_sum = nullptr;
  float* v_sum = nullptr;
  float* v_absmax = nullptr;
  int* zeroed = nullptr;
  int64_t zeroed_words = 0;
};
int statistics_chunks(int len);
void token_statistics(const StridedInput& k, const StridedInput& v, const TokenStatistics& out, cudaStream_t stream);

// Per-channel max|v − mean| over tokens, [B, H, D] fp32 (zeroed by the launcher): the FP8 scale when V is
// smoothed, which needs the mean first.
void channel_absmax(const StridedInput& v, const ChannelPartials& mean, float* absmax, cudaStream_t stream);

// Q or K into int8 [B, H, N_pad, D] or packed int4 [B, H, N_pad, D/2] (low nibble = even channel) after
// subtracting a mean: per kQBlock block (Q smoothing, fp32 [B, H, ceil(N/64), D]) or per token (K smoothing).
// Scales [B, H, groups] as in sage2_layout.h. mean_out: the folded token mean, [B, H, D] (or null).
struct RowsJob {
  StridedInput x;
  const float* block_mean = nullptr;
  ChannelPartials token_mean;
  int8_t* values = nullptr;
  float* scales = nullptr;
  float* mean_out = nullptr;
};

// V for the P·V MMA after subtracting its token mean (optional): FP8 E4M3 scaled per channel (448 / absmax)
// as Vᵀ [B, H, D, N_pad] with the keys of each 32-key chunk permuted (kv_permuted_position); fp16 Vᵀ in key
// order; or fp16 V [B, H, N_pad, D]. Padding keys are 0. scales_out (FP8: absmax / 448, 1 for an all-zero
// channel) and mean_out are [B, H, D] (or null).
enum class VFormat { fp8_transposed, fp16_transposed, fp16 };
// FP8 V whose absmax is the sampled keys' (sage2_layout.h): the bound is kVScaleMargin times it, and a head with a
// value past its bound is flagged, with each channel's exact absmax, for requantize_flagged_v. Zeroed before the
// quantization pass (TokenStatistics::zeroed); null pointers: the absmax is exact.
struct SampledVScale {
  float* exact_absmax = nullptr;  // [B, H, D], as the bits of an atomic max
  int* flagged = nullptr;         // [B, H]
};
struct VJob {
  StridedInput v;
  VFormat format;
  ChannelPartials mean, absmax;
  void* values = nullptr;
  float* scales_out = nullptr;
  float* mean_out = nullptr;
  SampledVScale sampled;
};

// Q, K and V quantized in one launch (one head dim and element type for all; a job without values is skipped).
void quantize_qkv(const RowsJob& q, const RowsJob& k, const VJob& v, Granularity granularity, bool int4,
                  cudaStream_t stream);
// The flagged heads of a sampled-scale FP8 V job quantized again with their exact absmax (its scales and values
// overwritten; a head not flagged is left as it is).
void requantize_flagged_v(const VJob& sampled, cudaStream_t stream);

// AttentionArgs::linear_p_share for all of P from linear bytes or bits (PExponent::linear's place in its order).
constexpr int kLinearAll = 3;

struct AttentionArgs {
  const int8_t* q;         // quantized Q [B, H_q, Nq_pad, D or D/2]
  const float* q_scale;    // [B, H_q, q groups]
  const int8_t* k;         // quantized K [B, H_kv, Nk_pad, D or D/2]
  const float* k_scale;    // [B, H_kv, k groups]
  const void* v;           // FP8 Vᵀ [B, H_kv, D, Nk_pad], fp16 V [B, H_kv, Nk_pad, D] or Vᵀ (sage2_layout.h)
  const float* v_scale;    // [B, H_kv, D] (FP8 path) or null
  const float* v_mean;     // [B, H_kv, D] or null
  // Q smoothing (mma.sync only; null: none). Each 64-row Q block's mean in INT8, [B, H_q, Q blocks padded to a
  // multiple of 64, D], one scale per block; the kernel adds ΔS = q̄·K'ᵀ from it and K' in INT8: k itself in
  // INT8 mode, else k_int8 [B, H_kv, Nk_pad, D] with scales grouped like k_scale.
  const int8_t* q_mean;
  const float* q_mean_scale;
  const int8_t* k_int8;
  const float* k_int8_scale;
  const float* bias;       // fp32, element (b, h, i, j) at b*bias_sb + h*bias_sh + i*bias_si + j
  int64_t bias_sb, bias_sh, bias_si;
  void* out;               // fp16/bf16, element (b, h, i, c) at b*out_sb + h*out_sh + i*out_si + c
  InputType out_type;
  int64_t out_sb, out_sh, out_si;
  float* lse;              // [B, H_q, N_q] base-2 log-sum-exp of the kernel's scores, or null
  int batch, q_heads, kv_heads, q_len, kv_len, head_dim;
  Granularity granularity;
  bool int4, fp8_pv, causal;
  int linear_p_share;      // wgmma, FP8, no LSE: 0 exact P, 1 a quarter of it linear bytes, 2 half (both head
                           // dim 64), kLinearAll all
  int pv_flush_tiles;
  float score_scale;       // sm_scale * log2(e)
  // wgmma: two ints of the call's own (stream-ordered) that the persistent kernels' launch zeroes and their CTAs claim
  // their work tiles from (an allocation in the launch would go back to the driver at the next synchronization):
  // the main kernel's and the ragged tail's; and scratch of the call's own where the ragged tail's warpgroups merge
  // their rows, partial_rows_floats of it.
  int* work_counter;
  float* partial_rows;
};

// Whether this build holds the family's kernels (the wgmma ones exist only in builds for sm_90a).
bool built(KernelFamily family);
void attention(KernelFamily family, const AttentionArgs& args, cudaStream_t stream);
// The floats of AttentionArgs::partial_rows that a call of the family needs (0: none).
int64_t partial_rows_floats(KernelFamily family, const AttentionArgs& args);

}  // namespace sagevid::kernels::sage2::detail
