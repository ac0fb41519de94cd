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

// Quantizes Q or K into int8 [B, H, N_pad, D] or packed int4 [B, H, N_pad, D/2] (low nibble = even
// channel), after subtracting `mean` (optional, fp32: [B, H, D] when mean_per_block is false, else
// [B, H, ceil(N/64), D]). Scales [B, H, groups] as in sage2_layout.h. is_key picks the K grouping.
void quantize_rows(const StridedInput& x, const float* mean, bool mean_per_block, bool is_key,
                   Granularity granularity, bool int4, int8_t* values, float* scales, cudaStream_t stream);

// V for the FP16 P·V path: v - mean (optional, [B, H, D] fp32) as fp16 [B, H, N_pad, D], or transposed,
// [B, H, D, N_pad]; padding keys are 0.
void convert_v_fp16(const StridedInput& v, const float* mean, bool transposed, void* values, cudaStream_t stream);

// Per-channel max|v - mean| over tokens: [B, H, D] fp32 (output zeroed by the launcher).
void channel_absmax(const StridedInput& v, const float* mean, float* absmax, cudaStream_t stream);

// V' = v - mean as FP8 E4M3 scaled per channel (448 / absmax), transposed to [B, H, D, N_pad] with the keys
// of each 32-key chunk permuted (kv_permuted_position); padding keys are 0.
void quantize_v_fp8(const StridedInput& v, const float* mean, const float* absmax, uint8_t* values,
                    cudaStream_t stream);

struct AttentionArgs {
  const int8_t* q;         // quantized Q [B, H_q, Nq_pad, D or D/2]
  const float* q_scale;    // [B, H_q, q groups]
  const int8_t* k;         // quantized K [B, H_kv, Nk_pad, D or D/2]
  const float* k_scale;    // [B, H_kv, k groups]
  const void* v;           // FP8 Vᵀ [B, H_kv, D, Nk_pad], fp16 V [B, H_kv, Nk_pad, D] or fp16 Vᵀ (sage2_layout.h)
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
  int pv_flush_tiles;
  float score_scale;       // sm_scale * log2(e)
};

// Whether this build holds the family's kernels (the wgmma ones exist only in builds for sm_90a).
bool built(KernelFamily family);
void attention(KernelFamily family, const AttentionArgs& args, cudaStream_t stream);

}  // namespace sagevid::kernels::sage2::detail
