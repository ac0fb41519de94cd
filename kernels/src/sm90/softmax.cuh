#pragma once
// The online softmax of the wgmma kernel, per thread: its two query rows' slices of a 64 x 128 score tile.
#include "../sage2_device.cuh"

#include <cstdint>

namespace sagevid::kernels::sage2::sm90 {

// Accumulator element i of a thread sits in row (i / 2) % 2 (of its two rows), column 8 (i / 4) + 2 t + i % 2
// of the key tile (t = lane % 4): the 64 x 128 wgmma accumulator layout.

// float(x) · scale in an integer add and an FMA (magic_float); the FMA's offset rounds at a fraction of one
// unit of x.
__device__ __forceinline__ float scaled_score(int32_t x, float scale) {
  return fmaf(magic_float(x), scale, -kMagic * scale);
}

// One online-softmax step for the lane's two rows over scores already scaled by their k-scales (masked
// ones −inf); the row's q-scale (positive) rides in the exponent's FMA, and so does P's own scale
// (p_log2_scale: FP8 P is stored as 448·p). Leaves the scaled p in s, adds it into row_sum, and gives the
// factors by which the rows' earlier output must shrink in rescale.
__device__ __forceinline__ void softmax(float (&s)[64], const float (&q_scale)[2], float p_log2_scale,
                                        float (&row_max)[2], float (&row_sum)[2], float (&rescale)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float tile_max = kNegInf;
#pragma unroll
    for (int j = 0; j < 16; ++j) tile_max = fmaxf(tile_max, fmaxf(s[4 * j + 2 * half], s[4 * j + 2 * half + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2)) * q_scale[half];
    const float new_max = fmaxf(row_max[half], tile_max);
    const float reference = new_max == kNegInf ? 0.0f : new_max;  // a fully masked row so far
    rescale[half] = fast_exp2(row_max[half] - reference);
    row_max[half] = new_max;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 2 * half; e < 2 * half + 2; ++e) {
        s[4 * j + e] = fast_exp2(fmaf(s[4 * j + e], q_scale[half], p_log2_scale - reference));
        sum += s[4 * j + e];
      }
    row_sum[half] = row_sum[half] * rescale[half] + sum;
  }
}

// The same step for an unmasked tile whose k-scale is uniform over each 64-key half (every granularity but
// per-token), one row (0 or 1 of the lane's two) at a time and in two parts, so that the P·V of a tile's first
// 64 keys can be issued before the exponentials of its last 64. The scores come as the bits of the floats
// kMagic + score (the kernel starts their accumulators from kMagicBits), whose order as integers is the scores'.
// uniform_row_maximum takes the row max over those integers, shrinks the row's sum by its rescale factor and gives
// each 64-key half the exponent's scale and offset; uniform_row_exponentials then turns the row's scores in one
// 64-key half into p at one FMA and the exponential each.
struct RowExponent {
  float scale[2], offset[2];  // per 64-key half
};

__device__ __forceinline__ RowExponent uniform_row_maximum(const int32_t (&x)[64], int row, const float (&key_scale)[2],
                                                           const float (&q_scale)[2], float p_log2_scale,
                                                           float (&row_max)[2], float (&row_sum)[2],
                                                           float (&rescale)[2]) {
  int32_t int_max[2] = {INT32_MIN, INT32_MIN};  // per 64-key half
#pragma unroll
  for (int j = 0; j < 16; ++j) int_max[j / 8] = max(int_max[j / 8], max(x[4 * j + 2 * row], x[4 * j + 2 * row + 1]));
  float tile_max = fmaxf((__int_as_float(int_max[0]) - kMagic) * key_scale[0],
                         (__int_as_float(int_max[1]) - kMagic) * key_scale[1]);
  tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
  tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2)) * q_scale[row];
  const float new_max = fmaxf(row_max[row], tile_max);
  rescale[row] = fast_exp2(row_max[row] - new_max);
  row_max[row] = new_max;
  row_sum[row] *= rescale[row];
  RowExponent exponent;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    exponent.scale[k] = key_scale[k] * q_scale[row];
    exponent.offset[k] = p_log2_scale - fmaf(kMagic, exponent.scale[k], new_max);
  }
  return exponent;
}

__device__ __forceinline__ void uniform_row_exponentials(const int32_t (&x)[64], int row, const RowExponent& exponent,
                                                         int key_half, float (&p)[64], float (&row_sum)[2]) {
  float sum = 0.0f;
#pragma unroll
  for (int j = 8 * key_half; j < 8 * key_half + 8; ++j)
#pragma unroll
    for (int e = 2 * row; e < 2 * row + 2; ++e) {
      p[4 * j + e] = fast_exp2(fmaf(__int_as_float(x[4 * j + e]), exponent.scale[key_half], exponent.offset[key_half]));
      sum += p[4 * j + e];
    }
  row_sum[row] += sum;
}

}  // namespace sagevid::kernels::sage2::sm90
