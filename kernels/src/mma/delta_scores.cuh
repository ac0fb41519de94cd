#pragma once
// Q smoothing inside the mma.sync kernel: ΔS = q̄·K'ᵀ, the part of the scores that subtracting each 64-row Q
// block's mean q̄ removed, for one key tile, from the block's mean quantized to INT8 and K' in INT8 (the key
// tile itself in INT8 mode, an INT8 copy of it when Q·Kᵀ runs in INT4). Each warp computes its block's 64
// values per key tile on the tensor cores, so no [.., N/64, N] ΔS tensor exists.
#include "mma.cuh"
#include "../sage2_device.cuh"

namespace sagevid::kernels::sage2::mma {

// ΔS of one 64-key tile for the key columns this lane holds in the score accumulators: ds[n][c] for key
// 8n + 2·(lane % 4) + c, times `scale` (the mean's scale, and any factor common to all scores) and the key's
// k-scale (k_scale: this tile's first scale for this lane; per-token: + 8n + c for slice n). The MMA runs
// transposed, keys as rows: A = 16 keys x 32 channels of K' from shared memory (rows k_stride bytes apart),
// B column 0 = the block's mean (columns 1-7 zero), so that one INT8 MMA gives 16 keys and lane 4j holds keys
// j and j + 8 of each 16-key group; 16 shuffles then move each key to the lanes that hold its scores.
template <int kHeadDim>
__device__ __forceinline__ void delta_scores(float (&ds)[8][2], const uint8_t* k_tile, int k_stride,
                                             const int8_t* q_mean, float scale, const float* k_scale, bool per_token_k,
                                             int lane) {
  int32_t dots[4][4] = {};  // [16-key group][accumulator element]; column 0 is in elements 0 and 2
  const int g = lane / 8;
#pragma unroll
  for (int step = 0; step < kHeadDim / 32; ++step) {
    uint32_t b0 = 0, b1 = 0;  // B[k][0] = q̄[32 step + k]: lane t < 4 holds k = 4t..4t+3 and 16 + 4t..16 + 4t+3
    if (lane < 4) {
      b0 = *reinterpret_cast<const uint32_t*>(q_mean + step * 32 + 4 * lane);
      b1 = *reinterpret_cast<const uint32_t*>(q_mean + step * 32 + 16 + 4 * lane);
    }
#pragma unroll
    for (int group = 0; group < 4; ++group) {
      uint32_t a[4];
      ldmatrix_x4(a, k_tile + (group * 16 + lane % 8 + (g & 1) * 8) * k_stride + step * 32 + (g >> 1) * 16);
      int8_m16n8k32(dots[group], a, b0, b1);
    }
  }
  const int t = lane % 4;
  int32_t moved[8][2];
#pragma unroll
  for (int n = 0; n < 8; ++n)
#pragma unroll
    for (int c = 0; c < 2; ++c)  // key 8n + 2t + c: row 8·(n % 2) + 2t + c of group n / 2, at lane 4·(2t + c)
      moved[n][c] = __shfl_sync(0xffffffffu, dots[n / 2][2 * (n % 2)], 4 * (2 * t + c));
  if (per_token_k) {
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const float2 key_scale = *reinterpret_cast<const float2*>(k_scale + n * 8);
      ds[n][0] = (magic_float(moved[n][0]) - kMagic) * (scale * key_scale.x);
      ds[n][1] = (magic_float(moved[n][1]) - kMagic) * (scale * key_scale.y);
    }
  } else {
    const float key_scale = scale * *k_scale;
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int c = 0; c < 2; ++c) ds[n][c] = (magic_float(moved[n][c]) - kMagic) * key_scale;
  }
}

}  // namespace sagevid::kernels::sage2::mma
