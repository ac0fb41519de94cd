#pragma once
// The data layout shared by the SageAttention2 preprocessing kernels, the attention kernel and the CPU
// reference (which must produce bit-identical quantized values and scales). Pure constants and index
// maps, usable from host and device code.
//
// Tiles. A CTA processes kCtaQ query rows (kWarps warps of kWarpQ rows each) against key tiles of kCtaK.
// Sequences are padded to these multiples in the quantized tensors; padding rows quantize to 0 and never
// take part in a scale.
//
// Quantization groups (symmetric, scale = max|x| / qmax over the group, round to nearest even, clamp):
//   Q, per-thread:  within each kWarpQ-row warp tile, rows with equal (row % 8) share a scale: the rows one
//                   lane holds in the m16n8k32 / m16n8k64 A fragment (lane/4 and lane/4 + 8).
//                   Group of row r: (r / kWarpQ) * 8 + r % 8.
//   Q, per-warp:    one scale per kWarpQ rows.          Group: r / kWarpQ.
//   Q, per-block:   one scale per kCtaQ rows.           Group: r / kCtaQ.
//   K, per-thread:  within each kCtaK-row tile, rows with equal (row % 8) / 2 share a scale: the key columns
//                   one lane holds in the accumulator (2*(lane%4) and 2*(lane%4)+1 of each 8-column tile).
//                   Group of row r: (r / kCtaK) * 4 + (r % 8) / 2.
//   K, per-warp and per-block: one scale per kCtaK rows (every warp reads the whole key tile).
//                   Group: r / kCtaK.
//   Q and K, per-token: one scale per row (query or key). Costs the attention kernel 16 k-scale loads per
//                   key tile (~3% at CogVideoX-2B on H100); cuts the INT8 Q·Kᵀ error by about a sixth on
//                   Gaussian inputs, which is what FP16 P·V (whose own error is small) is limited by.
//                   Group: r.
// Q smoothing subtracts the mean of each kCtaQ block (the rows of one CTA).
//
// V for the FP8 P·V MMA is stored transposed, [B, H_kv, D, N_kv padded to kCtaK], FP8 E4M3 with one scale
// per channel, and with the keys of every 32-key chunk permuted (kv_permuted_position) so that the
// lane's S accumulator registers are directly its P A-fragment registers (see the attention kernel).
#include <cstdint>

#if defined(__CUDACC__)
#define SAGEVID_HD __host__ __device__
#else
#define SAGEVID_HD
#endif

namespace sagevid::kernels::sage2 {

inline constexpr int kWarpQ = 16;
inline constexpr int kWarps = 4;
inline constexpr int kCtaQ = kWarpQ * kWarps;  // 64
inline constexpr int kCtaK = 64;
inline constexpr int kInt8Max = 127;
inline constexpr int kInt4Max = 7;
inline constexpr float kFp8Max = 448.0f;  // E4M3
inline constexpr double kLog2e = 1.4426950408889634;

enum class Granularity : int { per_thread = 0, per_warp = 1, per_block = 2, per_token = 3 };

SAGEVID_HD inline int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

SAGEVID_HD inline int64_t q_groups_per_block(Granularity g) {
  switch (g) {
    case Granularity::per_thread: return (kCtaQ / kWarpQ) * 8;
    case Granularity::per_warp: return kCtaQ / kWarpQ;
    case Granularity::per_token: return kCtaQ;
    default: return 1;
  }
}
SAGEVID_HD inline int64_t k_groups_per_block(Granularity g) {
  return g == Granularity::per_thread ? 4 : g == Granularity::per_token ? kCtaK : 1;
}

SAGEVID_HD inline int64_t q_group(int64_t row, Granularity g) {
  switch (g) {
    case Granularity::per_thread: return (row / kWarpQ) * 8 + row % 8;
    case Granularity::per_warp: return row / kWarpQ;
    case Granularity::per_token: return row;
    default: return row / kCtaQ;
  }
}
SAGEVID_HD inline int64_t k_group(int64_t row, Granularity g) {
  switch (g) {
    case Granularity::per_thread: return (row / kCtaK) * 4 + (row % 8) / 2;
    case Granularity::per_token: return row;
    default: return row / kCtaK;
  }
}

// Where key `key` (0..31 within a 32-key chunk) sits along the k axis of the FP8 P·V MMA. Lane t (= lane%4)
// holds S columns {2t, 2t+1, 8+2t, 9+2t} of the first 16 keys, and needs them at A-fragment positions
// 4t..4t+3; likewise for keys 16..31 at positions 16+4t..16+4t+3.
SAGEVID_HD inline int kv_permuted_position(int key) {
  const int half = key & 16, k = key & 15;
  const int t = (k & 7) >> 1, within = (k & 1) | ((k & 8) >> 2);
  return half | (t * 4 + within);
}

// The inverse: the key (0..31 within its chunk) at `position`. Positions 4t..4t+3 hold keys 2t, 2t+1, 8+2t,
// 9+2t of their 16-key half, so four consecutive positions are one 32-bit store of the FP8 Vᵀ.
SAGEVID_HD inline int kv_key_at_position(int position) {
  const int half = position & 16, t = (position & 15) >> 2, within = position & 3;
  return half | (t * 2) | (within & 1) | ((within & 2) << 2);
}

}  // namespace sagevid::kernels::sage2
