#pragma once
// The rows of a query block whose key tiles several warpgroups of one CTA shared (work_plan.h's QueryShare): each
// sharer's online softmax ends with its own rows (outputs, maxima, sums) over its key tiles; the later sharers
// leave theirs in the CTA's slots of the call's scratch (AttentionArgs::partial_rows, in L2), and the
// block's first sharer adds them into its own before its epilogue, as two tiles of one softmax would be: each
// side's outputs and sums scaled by 2^(its maximum − the merged maximum).
#include "../sage2_device.cuh"

namespace sagevid::kernels::sage2::sm90 {

// A thread's floats in a slot: its kOut outputs, then its two rows' maxima, then their sums; field-major (thread
// fastest), so that a warpgroup stores and loads each field in one coalesced row.
template <int kOut>
constexpr int kPartialRowFloats = kOut + 4;
// A CTA's slots: one for each of its warpgroups but the first.
template <int kOut, int kWarpgroups, int kThreads>
constexpr int kPartialRowCtaFloats = (kWarpgroups - 1) * kPartialRowFloats<kOut> * kThreads;

template <int kOut, int kThreads>
__device__ __forceinline__ void store_partial_rows(float* slot, int thread, const float (&out)[kOut],
                                                   const float (&row_max)[2], const float (&row_sum)[2]) {
#pragma unroll
  for (int i = 0; i < kOut; ++i) __stcg(slot + i * kThreads + thread, out[i]);
#pragma unroll
  for (int row = 0; row < 2; ++row) {
    __stcg(slot + (kOut + row) * kThreads + thread, row_max[row]);
    __stcg(slot + (kOut + 2 + row) * kThreads + thread, row_sum[row]);
  }
}

// Accumulator element i of the thread's outputs belongs to its row (i / 2) % 2 (softmax.cuh).
template <int kOut, int kThreads>
__device__ __forceinline__ void add_partial_rows(const float* slot, int thread, float (&out)[kOut], float (&row_max)[2],
                                                 float (&row_sum)[2]) {
  // A side whose row saw no key yet (maximum −inf) holds zeros: its weight is 0, even when both are.
  const auto weight = [](float side_max, float merged_max) {
    return side_max == kNegInf ? 0.0f : exp2f(side_max - merged_max);
  };
  float own_weight[2], other_weight[2];
#pragma unroll
  for (int row = 0; row < 2; ++row) {
    const float other_max = __ldcg(slot + (kOut + row) * kThreads + thread);
    const float merged_max = fmaxf(row_max[row], other_max);
    own_weight[row] = weight(row_max[row], merged_max), other_weight[row] = weight(other_max, merged_max);
    row_sum[row] =
        row_sum[row] * own_weight[row] + __ldcg(slot + (kOut + 2 + row) * kThreads + thread) * other_weight[row];
    row_max[row] = merged_max;
  }
#pragma unroll
  for (int i = 0; i < kOut; ++i) {
    const int row = (i / 2) & 1;
    out[i] = out[i] * own_weight[row] + __ldcg(slot + i * kThreads + thread) * other_weight[row];
  }
}

}  // namespace sagevid::kernels::sage2::sm90
