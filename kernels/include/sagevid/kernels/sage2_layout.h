#pragma once
// The data layout shared by the SageAttention2 preprocessing kernels, both attention kernel families and
// the CPU reference (which must produce bit-identical quantized values and scales). Pure constants and
// index maps, usable from host and device code.
//
// Blocks. Q and K are quantized in blocks of kQBlock / kKBlock rows (64 each: four 16-row MMA fragments
// for queries), and padded to those multiples; padding rows quantize to 0 and never take part in a scale.
// The attention kernels tile in multiples of these blocks: each family's tiles (tiling() below) travel
// with the options, the quantized tensors and the reference's softmax.
//
// Quantization groups (symmetric, scale = max|x| / qmax over the group, round to nearest even, clamp):
//   Q, per-thread:  within each kWarpQ-row warp tile, rows with equal (row % 8) share a scale: the rows one
//                   lane holds in an MMA A fragment or accumulator (lane/4 and lane/4 + 8), for mma.sync
//                   and wgmma alike. Group of row r: (r / kWarpQ) * 8 + r % 8.
//   Q, per-warp:    one scale per kWarpQ rows.          Group: r / kWarpQ.
//   Q, per-block:   one scale per kQBlock rows.         Group: r / kQBlock.
//   K, per-thread:  within each kKBlock-row block, rows with equal (row % 8) / 2 share a scale: the key
//                   columns one lane holds in the accumulator (2*(lane%4) and 2*(lane%4)+1 of each 8-column
//                   slice). Group of row r: (r / kKBlock) * 4 + (r % 8) / 2.
//   K, per-warp and per-block: one scale per kKBlock rows (every warp reads the whole key tile).
//                   Group: r / kKBlock.
//   Q and K, per-token: one scale per row (query or key); cuts the INT8 Q·Kᵀ error by about a sixth on
//                   Gaussian inputs, which is what FP16 P·V (whose own error is small) is limited by.
//                   Group: r.
// K smoothing subtracts the mean of every kKeyMeanStride-th key (keys 0, 8, 16, ...): one vector subtracted from
// every key leaves the softmax as it is (the LSE adds q · mean back), so the mean only has to centre K for its
// INT8/INT4 range, which a sample of the keys does as well as all of them, and the preprocessing's statistics
// pass then reads an eighth of K.
// Q smoothing subtracts the mean of each kQBlock block; the mma.sync kernels add ΔS = mean · K'ᵀ back from the
// means quantized to INT8 (per-token groups over the means' rows) and K' in INT8 (sage2_reference.h).
//
// V's FP8 scale is per channel, from the absmax of every kVScaleStride-th key times kVScaleMargin (the keys K's mean
// samples): E4M3 is a float, so a scale under 448 / absmax rounds each value to the same relative precision unless it
// falls under E4M3's smallest normal, and the sampled absmax spares the statistics pass all but an eighth of V. A head
// where a value of V lies past that bound (an outlier the sample missed) takes each channel's exact absmax instead.
// The margin trades the two ways it can cost: a wider one redoes fewer heads with heavy-tailed channels, and pushes
// more of their small values under E4M3's smallest normal (docs/PERFORMANCE.md, 2026-12-05 from 06:34 and 2026-12-06
// from 06:04).
// Smoothed V takes the exact absmax of V − mean.
// V for an FP8 P·V MMA is stored transposed, [B, H_kv, D, N_kv padded to kKBlock], FP8 E4M3 with one scale
// per channel, and with the keys of every 32-key chunk permuted (kv_permuted_position) so that the
// lane's S accumulator registers are directly its P A-fragment registers. For FP16 P·V the mma.sync
// family reads V as it is, [B, H_kv, N_pad, D] fp16; the wgmma family reads it transposed like the FP8 V
// (keys contiguous, not permuted), since its tensor cores take both operands K-major.
#include "sagevid/kernels/host_device.h"

#include <cstdint>

namespace sagevid::kernels::sage2 {

inline constexpr int kWarpQ = 16;
inline constexpr int kWarps = 4;
inline constexpr int kQBlock = kWarpQ * kWarps;  // 64
inline constexpr int kKBlock = 64;
inline constexpr int kKeyMeanStride = 8;
SAGEVID_HD constexpr int key_mean_samples(int kv_len) { return (kv_len + kKeyMeanStride - 1) / kKeyMeanStride; }
inline constexpr int kVScaleStride = kKeyMeanStride;
inline constexpr float kVScaleMargin = 16.0f;  // a power of two
inline constexpr int kInt8Max = 127;
inline constexpr int kInt4Max = 7;
inline constexpr float kFp8Max = 448.0f;  // E4M3
inline constexpr double kLog2e = 1.4426950408889634;

enum class Granularity : int { per_thread = 0, per_warp = 1, per_block = 2, per_token = 3 };

// The attention kernel families: mma.sync (sm_80 and newer) and wgmma + TMA (sm_90a only).
enum class KernelFamily : int { mma_sync = 0, wgmma = 1 };

struct Tiling {
  int key_tile;       // keys per softmax step, a multiple of kKBlock (the reference steps alike)
  bool v_transposed;  // FP16 P·V reads fp16 Vᵀ
};
SAGEVID_HD constexpr Tiling tiling(KernelFamily family) {
  return family == KernelFamily::wgmma ? Tiling{128, true} : Tiling{64, false};
}

SAGEVID_HD inline int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

SAGEVID_HD inline int64_t q_groups_per_block(Granularity g) {
  switch (g) {
    case Granularity::per_thread: return (kQBlock / kWarpQ) * 8;
    case Granularity::per_warp: return kQBlock / kWarpQ;
    case Granularity::per_token: return kQBlock;
    default: return 1;
  }
}
SAGEVID_HD inline int64_t k_groups_per_block(Granularity g) {
  return g == Granularity::per_thread ? 4 : g == Granularity::per_token ? kKBlock : 1;
}

SAGEVID_HD inline int64_t q_group(int64_t row, Granularity g) {
  switch (g) {
    case Granularity::per_thread: return (row / kWarpQ) * 8 + row % 8;
    case Granularity::per_warp: return row / kWarpQ;
    case Granularity::per_token: return row;
    default: return row / kQBlock;
  }
}
SAGEVID_HD inline int64_t k_group(int64_t row, Granularity g) {
  switch (g) {
    case Granularity::per_thread: return (row / kKBlock) * 4 + (row % 8) / 2;
    case Granularity::per_token: return row;
    default: return row / kKBlock;
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
