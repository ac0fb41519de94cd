// The mma.sync SageAttention2 kernel (sm_80/86/89, also runs on sm_90). One CTA = 4 warps x 16 query rows
// (x kMTiles) against 64-key tiles, K/V double-buffered through cp.async. Per tile, a warp:
//   1. S = Q_int · K_intᵀ (INT8 m16n8k32 or INT4 m16n8k64) into int32 registers;
//   2. dequantizes: one k-scale multiply per element; the row's q-scale (x sm_scale x log2 e) is deferred
//      into the softmax's FMA, or with Q smoothing applied in one FMA with ΔS (delta_scores.cuh); edge tiles
//      and bias calls scale fully, add and mask;
//   3. online softmax in base 2, P̃ packed into the P·V MMA's A fragments as soon as a tile's rows are done;
//   4. P̃·V: FP8 (x448, V per channel) or FP16, accumulated in a fresh accumulator that is added into the
//      FP32 output buffer every flush_tiles tiles.
// Registers are the limit (255 per thread, two CTAs per SM): the output accumulator and a tile's scores take
// 64 each at head dim 64 with two MMA tiles, so the kernel keeps little else across the tile loop (see
// kernels/CMakeLists.txt: a spill fails the build).
#include "attention_mma.h"
#include "delta_scores.cuh"
#include "mma.cuh"
#include "../cp_async.cuh"
#include "../sage2_device.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <cmath>
#include <stdexcept>

namespace sagevid::kernels::sage2::mma {
namespace {

using detail::AttentionArgs;

constexpr int kThreads = kWarps * 32;
constexpr int kCtaK = tiling(KernelFamily::mma_sync).key_tile;
constexpr int kSlices = kCtaK / 8;  // 8-key accumulator slices per key tile

template <int kHeadDim, bool kInt4, bool kFp8Pv, int kMTiles, bool kSmoothQ, bool kSerial>
struct Tiles {
  static constexpr int kCtaRows = kWarps * kWarpQ * kMTiles;  // a multiple of the 64-row quantization block
  static constexpr int kQkRowBytes = kInt4 ? kHeadDim / 2 : kHeadDim;
  static constexpr int kQkSteps = kQkRowBytes / 32;   // INT8 k32 and INT4 k64 both consume 32 bytes
  static constexpr int kQkStride = kQkRowBytes + 16;  // +16 B per row: conflict-free ldmatrix
  static constexpr int kVRows = kFp8Pv ? kHeadDim : kCtaK;             // Vᵀ rows are channels
  static constexpr int kVRowBytes = kFp8Pv ? kCtaK : kHeadDim * 2;     // V rows are keys (fp16)
  static constexpr int kVStride = kVRowBytes + 16;
  static constexpr int kQBytes = kCtaRows * kQkStride;
  static constexpr int kKBytes = kCtaK * kQkStride;
  static constexpr int kVBytes = kVRows * kVStride;
  // Q smoothing with INT4 Q·Kᵀ: the key tile in INT8 too, for ΔS (delta_scores.cuh).
  static constexpr int kK8Stride = kHeadDim + 16;
  static constexpr int kK8Bytes = kInt4 && kSmoothQ ? kCtaK * kK8Stride : 0;
  // Q smoothing: each warp's block mean (D INT8 values, then its fp32 scale), read every tile; with MMA tiles
  // taken one at a time, the tile's ΔS too (16 floats per lane) for the tiles after the first, and the CTA's
  // k-scale offset (that variant is one register short of holding it).
  static constexpr int kMeanStride = kHeadDim + 16;
  static constexpr int kDsStride = kSerial && kSmoothQ ? 32 * 16 * 4 + 16 : 0;  // + the k-scale offset
  static constexpr int kMeanBytes = kSmoothQ ? kWarps * (kMeanStride + kDsStride) : 0;
  static constexpr int kSmemBytes = kQBytes + 2 * (kKBytes + kVBytes + kK8Bytes) + kMeanBytes;
  static constexpr int kDimTiles = kHeadDim / 8;
  // P̃ as A fragments: FP8 takes 32 keys per MMA step, FP16 16.
  static constexpr int kPvSteps = kFp8Pv ? kCtaK / 32 : kCtaK / 16;
};

__device__ __forceinline__ float exact_int_to_float(int32_t x) { return magic_float(x) - kMagic; }

__device__ __forceinline__ int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// x, as a value the compiler cannot see through: what is derived from it is computed where it is used rather
// than hoisted out of the tile loop or shared with the prologue, and held in registers across the loop.
__device__ __forceinline__ int opaque(int x) {
  asm volatile("" : "+r"(x));
  return x;
}

// Where a thread works: its CTA's (batch, head, kv head) and first query row, its warp and lane. Read through
// opaque() by each part of the kernel that needs them (prologue, edge tiles, epilogue), which recomputes them
// in a few integer ops instead of holding them and what derives from them across the tile loop.
template <int kCtaRows>
struct Position {
  int head, batch, kv_head, cta_row, warp, lane;
  int64_t q_head_index, kv_head_index;

  __device__ __forceinline__ explicit Position(const AttentionArgs& args)
      : head(opaque(blockIdx.y)),
        batch(opaque(blockIdx.z)),
        kv_head(head / (args.q_heads / args.kv_heads)),
        cta_row(opaque(blockIdx.x) * kCtaRows),
        warp(opaque(threadIdx.x) / 32),
        lane(opaque(threadIdx.x) % 32),
        q_head_index(int64_t(batch) * args.q_heads + head),
        kv_head_index(int64_t(batch) * args.kv_heads + kv_head) {}
};

// Copies rows x row_bytes from global (row pitch src_pitch bytes) into padded shared rows.
__device__ __forceinline__ void copy_tile(uint8_t* smem, int smem_stride, const uint8_t* global, int64_t src_pitch,
                                          int rows, int row_bytes) {
  const int chunks_per_row = row_bytes / 16;
  for (int i = threadIdx.x; i < rows * chunks_per_row; i += kThreads) {
    const int r = i / chunks_per_row, c = i % chunks_per_row;
    copy_async_16(smem + r * smem_stride + c * 16, global + r * src_pitch + c * 16);
  }
}

// The copy of a whole kRows x kRowBytes tile (K or V) that every key tile repeats: the thread's first 16-byte
// chunk is fixed once (row and column of threadIdx), its others lie kThreads chunks = kRowStep rows further on.
// What the tile loop keeps is one shared and one global offset per thread.
template <int kRows, int kRowBytes, int kSmemStride>
struct TileCopy {
  static constexpr int kChunksPerRow = kRowBytes / 16;
  static constexpr int kRowStep = kThreads / kChunksPerRow;
  static constexpr int kChunks = kRows / kRowStep;
  static_assert(kThreads % kChunksPerRow == 0 && kRows % kRowStep == 0, "whole chunks for every thread");
  int smem_offset;
  int64_t global_offset;

  __device__ __forceinline__ TileCopy(int64_t pitch) {
    const int row = threadIdx.x / kChunksPerRow, column = threadIdx.x % kChunksPerRow * 16;
    smem_offset = row * kSmemStride + column;
    global_offset = row * pitch + column;
  }
  __device__ __forceinline__ void issue(uint8_t* smem, const uint8_t* global, int64_t pitch) const {
#pragma unroll
    for (int j = 0; j < kChunks; ++j)
      copy_async_16(smem + smem_offset + j * kRowStep * kSmemStride, global + global_offset + j * kRowStep * pitch);
  }
};

// 1. S = Q·Kᵀ for kM MMA tiles (the 16-row tiles starting at q_rows) against one key tile: each K fragment
//    feeds all kM tiles. Q fragments are read from shared memory at every k-step rather than held across the
//    tile loop, where they would cost 4 registers per MMA tile and k-step.
template <class T, bool kInt4, int kM>
__device__ __forceinline__ void qk_scores(int32_t (&s)[kM][kSlices][4], const uint8_t* q_rows, const uint8_t* k_tile,
                                          int lane) {
#pragma unroll
  for (int m = 0; m < kM; ++m)
#pragma unroll
    for (int n = 0; n < kSlices; ++n) s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0;
  const int g = lane / 8;
#pragma unroll
  for (int step = 0; step < T::kQkSteps; ++step) {
    uint32_t a[kM][4];
#pragma unroll
    for (int m = 0; m < kM; ++m)
      ldmatrix_x4(a[m], q_rows + (m * kWarpQ + lane % 8 + (g & 1) * 8) * T::kQkStride + step * 32 + (g >> 1) * 16);
#pragma unroll
    for (int pair = 0; pair < kSlices / 2; ++pair) {
      uint32_t b[4];
      ldmatrix_x4(b, k_tile + (pair * 16 + lane % 8 + (g >> 1) * 8) * T::kQkStride + step * 32 + (g & 1) * 16);
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        if constexpr (kInt4) {
          int4_m16n8k64(s[m][2 * pair], a[m], b[0], b[1]);
          int4_m16n8k64(s[m][2 * pair + 1], a[m], b[2], b[3]);
        } else {
          int8_m16n8k32(s[m][2 * pair], a[m], b[0], b[1]);
          int8_m16n8k32(s[m][2 * pair + 1], a[m], b[2], b[3]);
        }
      }
    }
  }
}

// 2. Dequantize with the k-scale (it differs between the lanes of a row's quad: per-thread groups, per-token
//    columns). k_scale: this key tile's first scale for this lane; q_scale: each row's q-scale x the score
//    scale. Without Q smoothing the q-scale is left to the softmax's FMA (row_scale); with it, ΔS (ds, in
//    score units) joins here in the same FMA, the q-scale with it, and row_scale is 1.
template <int kM, bool kSmoothQ>
__device__ __forceinline__ void dequantize(float (&s)[kM][kSlices][4], float (&row_scale)[kM][2],
                                           const int32_t (&s_int)[kM][kSlices][4], const AttentionArgs& args,
                                           const float* k_scale, const float (&q_scale)[kM][2],
                                           const float (&ds)[kSlices][2]) {
  // One score: x · k-scale, or x · k-scale · q-scale + ΔS.
  const auto scale = [&](int32_t x, float key_scale, int m, int n, int e) {
    if constexpr (kSmoothQ) return fmaf(exact_int_to_float(x), key_scale * q_scale[m][e / 2], ds[n][e & 1]);
    else return exact_int_to_float(x) * key_scale;
  };
#pragma unroll
  for (int m = 0; m < kM; ++m)
#pragma unroll
    for (int half = 0; half < 2; ++half) row_scale[m][half] = kSmoothQ ? 1.0f : q_scale[m][half];
  if (args.granularity == Granularity::per_token) {
    // The scales of the two key columns this lane holds in slice n, loaded as they are used so that they
    // take two registers, not sixteen.
#pragma unroll
    for (int n = 0; n < kSlices; ++n) {
      const float2 key_scale = *reinterpret_cast<const float2*>(k_scale + n * 8);
#pragma unroll
      for (int m = 0; m < kM; ++m)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[m][n][e] = scale(s_int[m][n][e], (e & 1) ? key_scale.y : key_scale.x, m, n, e);
    }
  } else {
    const float key_scale = *k_scale;
#pragma unroll
    for (int m = 0; m < kM; ++m)
#pragma unroll
      for (int n = 0; n < kSlices; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[m][n][e] = scale(s_int[m][n][e], key_scale, m, n, e);
  }
}

// Where the key tile ends past the keys or crosses the causal diagonal, or the call adds a bias, or the
// scale is not positive (which would flip the max): the scores are scaled fully here, added to and masked,
// and row_scale becomes 1. m0: the first of the warp's kM MMA tiles.
template <int kCtaRows, int kM>
__device__ __forceinline__ void full_scores(float (&s)[kM][kSlices][4], float (&row_scale)[kM][2],
                                            const AttentionArgs& args, int m0, int tile) {
  const Position<kCtaRows> at(args);
  const int quad_col = at.lane % 4, first_col = tile * kCtaK + 2 * quad_col;
  const int first_row = at.cta_row + at.warp * (kCtaRows / kWarps) + m0 * kWarpQ + at.lane / 4;
  const float* bias = args.bias ? args.bias + at.batch * args.bias_sb + at.head * args.bias_sh + first_col : nullptr;
#pragma unroll
  for (int m = 0; m < kM; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      // One row's bias, read at constant offsets from its first column: one pointer per row, not per score.
      const int row = first_row + m * kWarpQ + 8 * half;
      const float* bias_row = bias && row < args.q_len ? bias + row * args.bias_si : nullptr;
#pragma unroll
      for (int n = 0; n < kSlices; ++n) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          float& x = s[m][n][2 * half + c];
          const int col = first_col + n * 8 + c;
          x *= row_scale[m][half];
          if (bias_row && col < args.kv_len) x += bias_row[n * 8 + c] * float(M_LOG2E);
          if (col >= args.kv_len || (args.causal && col > row)) x = kNegInf;
        }
      }
      row_scale[m][half] = 1.0f;
    }
  }
}

// 3. Online softmax of one MMA tile's rows (each row's 64 scores live in the 4 lanes of a quad): P̃ =
//    exp2(s · row_scale − max) in place; rescale gets the factor the row's earlier output must be scaled by.
__device__ __forceinline__ void online_softmax(float (&s)[kSlices][4], const float (&row_scale)[2], float (&row_max)[2],
                                               float (&row_sum)[2], float (&rescale)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float tile_max = kNegInf;
#pragma unroll
    for (int n = 0; n < kSlices; ++n) tile_max = fmaxf(tile_max, fmaxf(s[n][2 * half], s[n][2 * half + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2)) * row_scale[half];  // scale > 0
    const float new_max = fmaxf(row_max[half], tile_max);
    const float reference = new_max == kNegInf ? 0.0f : new_max;  // a fully masked row so far
    rescale[half] = fast_exp2(row_max[half] - reference);
    row_max[half] = new_max;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kSlices; ++n) {
      s[n][2 * half] = fast_exp2(fmaf(s[n][2 * half], row_scale[half], -reference));
      s[n][2 * half + 1] = fast_exp2(fmaf(s[n][2 * half + 1], row_scale[half], -reference));
      sum += s[n][2 * half] + s[n][2 * half + 1];
    }
    row_sum[half] = row_sum[half] * rescale[half] + sum;
  }
}

// P̃ of one MMA tile as the A fragments of the P·V MMA. FP8 (x448): the keys of V are permuted
// (kv_permuted_position) so that a lane's accumulator values are its own A fragment bytes.
template <bool kFp8Pv>
__device__ __forceinline__ void pack_p(uint32_t (&a)[kFp8Pv ? 2 : 4][4], const float (&p)[kSlices][4]) {
  if constexpr (kFp8Pv) {
#pragma unroll
    for (int step = 0; step < 2; ++step)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n0 = 4 * step + (i >> 1) * 2, e = (i & 1) * 2;  // a0: row0 n0,n0+1; a1: row1; a2/a3: n0+2
        const uint32_t lo = pack_e4m3x2(p[n0][e] * kFp8Max, p[n0][e + 1] * kFp8Max);
        const uint32_t hi = pack_e4m3x2(p[n0 + 1][e] * kFp8Max, p[n0 + 1][e + 1] * kFp8Max);
        a[step][i] = lo | (hi << 16);
      }
  } else {
#pragma unroll
    for (int step = 0; step < 4; ++step) {
      a[step][0] = pack_half2(p[2 * step][0], p[2 * step][1]);
      a[step][1] = pack_half2(p[2 * step][2], p[2 * step][3]);
      a[step][2] = pack_half2(p[2 * step + 1][0], p[2 * step + 1][1]);
      a[step][3] = pack_half2(p[2 * step + 1][2], p[2 * step + 1][3]);
    }
  }
}

// 4. P̃·V in FP8 for the kCount MMA tiles from m0, each V fragment feeding all of them (a: their P̃).
//    Deferred: into pv_acc, which the caller adds into out_acc every pv_flush_tiles tiles; else a fresh
//    accumulator per pair of dim tiles, added at once (8 registers instead of D/2).
template <class T, bool kDeferredFlush, int kCount, int kM>
__device__ __forceinline__ void pv_fp8(float (&out_acc)[kM][T::kDimTiles][4],
                                       float (&pv_acc)[kM][kDeferredFlush ? T::kDimTiles : 1][4],
                                       const uint32_t (&a)[kCount][2][4], int m0, const uint8_t* v_tile, int lane) {
  const int g = lane / 8;
#pragma unroll
  for (int pair = 0; pair < T::kDimTiles / 2; ++pair) {
    float fresh[kCount][2][4] = {};
#pragma unroll
    for (int step = 0; step < 2; ++step) {
      uint32_t b[4];
      ldmatrix_x4(b, v_tile + (pair * 16 + lane % 8 + (g >> 1) * 8) * T::kVStride + step * 32 + (g & 1) * 16);
#pragma unroll
      for (int i = 0; i < kCount; ++i) {
        if constexpr (kDeferredFlush) {
          fp8_m16n8k32(pv_acc[m0 + i][2 * pair], a[i][step], b[0], b[1]);
          fp8_m16n8k32(pv_acc[m0 + i][2 * pair + 1], a[i][step], b[2], b[3]);
        } else {
          fp8_m16n8k32(fresh[i][0], a[i][step], b[0], b[1]);
          fp8_m16n8k32(fresh[i][1], a[i][step], b[2], b[3]);
        }
      }
    }
    if constexpr (!kDeferredFlush) {
#pragma unroll
      for (int i = 0; i < kCount; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          out_acc[m0 + i][2 * pair][e] += fresh[i][0][e];
          out_acc[m0 + i][2 * pair + 1][e] += fresh[i][1][e];
        }
    }
  }
}

// 4. P̃·V in FP16 (V as it is, keys as rows: transposing ldmatrix), straight into the FP32 output.
template <class T, int kCount, int kM>
__device__ __forceinline__ void pv_fp16(float (&out_acc)[kM][T::kDimTiles][4], const uint32_t (&a)[kCount][4][4],
                                        int m0, const uint8_t* v_tile, int lane) {
  const int g = lane / 8;
#pragma unroll
  for (int step = 0; step < 4; ++step) {
#pragma unroll
    for (int pair = 0; pair < T::kDimTiles / 2; ++pair) {
      uint32_t b[4];
      const int key = step * 16 + lane % 8 + (g & 1) * 8, channel = pair * 16 + (g >> 1) * 8;
      ldmatrix_x4_trans(b, v_tile + key * T::kVStride + channel * 2);
#pragma unroll
      for (int i = 0; i < kCount; ++i) {
        fp16_m16n8k16(out_acc[m0 + i][2 * pair], a[i][step], b[0], b[1]);
        fp16_m16n8k16(out_acc[m0 + i][2 * pair + 1], a[i][step], b[2], b[3]);
      }
    }
  }
}

// Epilogue: normalize, undo the V scaling, add the V mean back, store; the LSE (base 2) if asked for.
template <class T, int kMTiles>
__device__ __forceinline__ void store_output(const AttentionArgs& args,
                                             const float (&out_acc)[kMTiles][T::kDimTiles][4],
                                             const float (&row_max)[kMTiles][2], const float (&row_sum)[kMTiles][2]) {
  const Position<T::kCtaRows> at(args);
  const int quad_col = at.lane % 4, first_row = at.cta_row + at.warp * kMTiles * kWarpQ + at.lane / 4;
  constexpr int kHeadDim = T::kDimTiles * 8;
  // Channels loaded pair by pair: the preload that paid in the sm_90 kernel at head dim 128 (sage2_device.cuh) is
  // not measured on the sm_8x GPUs these kernels are for.
  const OutputChannels<T::kDimTiles, false> channels(
      args.v_scale ? args.v_scale + at.kv_head_index * kHeadDim : nullptr, 1.0f / kFp8Max,
      args.v_mean ? args.v_mean + at.kv_head_index * kHeadDim : nullptr, 2 * quad_col);
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float sum = row_sum[m][half];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int row = first_row + m * kWarpQ + 8 * half;
      if (row >= args.q_len) continue;
      const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int64_t base = at.batch * args.out_sb + at.head * args.out_sh + row * args.out_si;
#pragma unroll
      for (int n = 0; n < T::kDimTiles; ++n)
        channels.store(args, base, n, out_acc[m][n][2 * half] * inv_sum, out_acc[m][n][2 * half + 1] * inv_sum);
      if (args.lse && quad_col == 0)
        args.lse[at.q_head_index * args.q_len + row] =
            (row_max[m][half] == kNegInf ? 0.0f : row_max[m][half]) + log2f(sum);
    }
  }
}

// Q smoothing: the INT8 mean of this warp's 64-row Q block (its MMA tiles never straddle one) and its scale.
template <int kCtaRows>
__device__ __forceinline__ const int8_t* block_mean(const AttentionArgs& args, float& scale) {
  const Position<kCtaRows> at(args);
  const int q_blocks = (args.q_len + kQBlock - 1) / kQBlock;
  const int block = min((at.cta_row + at.warp * (kCtaRows / kWarps)) / kQBlock, q_blocks - 1);
  const int64_t index = at.q_head_index * round_up(q_blocks, kQBlock) + block;  // means padded like Q rows
  scale = args.q_mean_scale[index];
  return args.q_mean + index * args.head_dim;
}

// kMTiles: 16-row MMA tiles per warp. Two tiles (head dim 64) reuse every K and V fragment loaded from shared
// memory twice and give each warp two independent dependency chains to interleave.
// kDeferredFlush (FP8 only): keep each tile's P̃·V in a second register accumulator for pv_flush_tiles tiles
// before adding it into the FP32 buffer. That accumulator takes D/2 registers per MMA tile, so with two MMA
// tiles the scores are computed one MMA tile at a time (K fragments read twice): 32 score registers live
// instead of 64.
// kSmoothQ: Q was smoothed (each 64-row block's mean subtracted); ΔS = q̄·K'ᵀ is added back per key tile
// (delta_scores.cuh), from the INT8 key tile or, with INT4 Q·Kᵀ, an INT8 copy of it loaded alongside.
// Two CTAs per SM is the design point (255 registers each); without saying so, ptxas trims some variants to
// 168 registers for a third CTA that shared memory cannot host, and spills to get there.
template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush, int kMTiles, bool kSmoothQ>
__global__ void __launch_bounds__(kThreads, 2) attention_kernel(const AttentionArgs args) {
  constexpr int kQkGroup = kDeferredFlush ? 1 : kMTiles;  // MMA tiles whose scores are live at once
  using T = Tiles<kHeadDim, kInt4, kFp8Pv, kMTiles, kSmoothQ, (kQkGroup < kMTiles)>;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* q_smem = smem;
  const auto k_smem = [&](int stage) { return smem + T::kQBytes + stage * T::kKBytes; };
  const auto v_smem = [&](int stage) { return smem + T::kQBytes + 2 * T::kKBytes + stage * T::kVBytes; };
  const auto k8_smem = [&](int stage) {  // the INT8 key tile ΔS reads: the K tile itself in INT8 mode
    return kInt4 ? smem + T::kQBytes + 2 * (T::kKBytes + T::kVBytes) + stage * T::kK8Bytes : k_smem(stage);
  };
  const auto mean_smem = [&] {  // this warp's; recomputed where used, not held across the tile loop
    return smem + T::kQBytes + 2 * (T::kKBytes + T::kVBytes + T::kK8Bytes) +
           opaque(threadIdx.x) / 32 * (T::kMeanStride + T::kDsStride);
  };

  const Position<T::kCtaRows> at(args);
  const int lane = at.lane, quad_col = lane % 4, cta_row = at.cta_row;
  const int64_t q_head_index = at.q_head_index, kv_head_index = at.kv_head_index;
  const int q_blocks = (args.q_len + kQBlock - 1) / kQBlock;  // 64-row blocks of the quantized Q layout
  const int64_t q_padded = int64_t(q_blocks) * kQBlock;
  const int cta_last_row = min(cta_row + T::kCtaRows, args.q_len) - 1;
  const int k_tiles_total = (args.kv_len + kCtaK - 1) / kCtaK;
  const int64_t k_padded = int64_t(k_tiles_total) * kCtaK;
  const int k_tiles = args.causal ? min(k_tiles_total, cta_last_row / kCtaK + 1) : k_tiles_total;

  const uint8_t* q_global =
      reinterpret_cast<const uint8_t*>(args.q) + (q_head_index * q_padded + cta_row) * T::kQkRowBytes;
  const uint8_t* k_global = reinterpret_cast<const uint8_t*>(args.k) + kv_head_index * k_padded * T::kQkRowBytes;
  const uint8_t* v_global = static_cast<const uint8_t*>(args.v) +
                            (kFp8Pv ? kv_head_index * kHeadDim * k_padded : kv_head_index * k_padded * kHeadDim * 2);
  // K tiles are contiguous [64 keys, row bytes]; FP8 Vᵀ tiles are 64-key column blocks of [D, N_pad]; FP16 V
  // tiles contiguous [64 keys, D].
  const int64_t v_pitch = kFp8Pv ? k_padded : kHeadDim * 2, v_tile_bytes = kFp8Pv ? kCtaK : kCtaK * kHeadDim * 2;
  const TileCopy<kCtaK, T::kQkRowBytes, T::kQkStride> k_copy(T::kQkRowBytes);
  const TileCopy<T::kVRows, T::kVRowBytes, T::kVStride> v_copy(v_pitch);
  const TileCopy<kCtaK, kHeadDim, T::kK8Stride> k8_copy(kHeadDim);
  const auto load_kv = [&](int tile, int stage) {
    k_copy.issue(k_smem(stage), k_global + int64_t(tile) * kCtaK * T::kQkRowBytes, T::kQkRowBytes);
    v_copy.issue(v_smem(stage), v_global + tile * v_tile_bytes, v_pitch);
    if constexpr (T::kK8Bytes > 0) {
      const uint8_t* k8_global = reinterpret_cast<const uint8_t*>(args.k_int8) + kv_head_index * k_padded * kHeadDim;
      k8_copy.issue(k8_smem(stage), k8_global + int64_t(tile) * kCtaK * kHeadDim, kHeadDim);
    }
  };

  // Rows past the padded Q (the last CTA when the 64-row blocks are odd) are never stored: not loaded either.
  copy_tile(q_smem, T::kQkStride, q_global, T::kQkRowBytes, int(min_i64(T::kCtaRows, q_padded - cta_row)),
            T::kQkRowBytes);
  load_kv(0, 0);
  commit_copies();
  if constexpr (kSmoothQ) {  // this warp's block mean into shared memory (the first tile's barrier publishes it)
    float mean_scale;
    const int8_t* mean = block_mean<T::kCtaRows>(args, mean_scale);
    uint8_t* mean_row = mean_smem();
    if (lane < kHeadDim / 16)
      *reinterpret_cast<uint4*>(mean_row + 16 * lane) = *reinterpret_cast<const uint4*>(mean + 16 * lane);
    if (lane == 0) *reinterpret_cast<float*>(mean_row + kHeadDim) = mean_scale;
  }

  // This lane owns rows first_row + 16m and first_row + 16m + 8 of the warp's MMA tiles m.
  const int warp_row = at.warp * kMTiles * kWarpQ, first_row = cta_row + warp_row + lane / 4;
  float q_scale[kMTiles][2];
  const int q_groups = int(q_groups_per_block(args.granularity)) * q_blocks;
#pragma unroll
  for (int m = 0; m < kMTiles; ++m)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = int(min_i64(first_row + m * kWarpQ + 8 * half, q_padded - 1));
      q_scale[m][half] = args.q_scale[q_head_index * q_groups + q_group(row, args.granularity)] * args.score_scale;
    }
  // The k-scales of key tile t for this lane start at element k_scale + t * k_scale_step (per-token: + 8 n for
  // slice n) of args.k_scale (and of args.k_int8_scale). An element offset: scale arrays hold a few per key.
  // The MMA-tile-at-a-time smoothing variant is one register short of holding it: it keeps the CTA's part in
  // shared memory and recomputes the lane's per tile.
  const int k_scale_step = int(k_groups_per_block(args.granularity));
  const int cta_k_scale = int(kv_head_index * k_scale_step * k_tiles_total);
  const int k_scale = cta_k_scale + int(k_group(2 * quad_col, args.granularity));
  const auto stashed_k_scale = [&] { return reinterpret_cast<int*>(mean_smem() + T::kMeanStride + T::kDsStride) - 4; };
  if constexpr (T::kDsStride > 0) *stashed_k_scale() = cta_k_scale;  // the same in every lane of the warp
  const auto tile_k_scale_of = [&](int tile) {
    if constexpr (T::kDsStride > 0)
      return *stashed_k_scale() + int(k_group(2 * (opaque(threadIdx.x) % 4), args.granularity)) + tile * k_scale_step;
    else return k_scale + tile * k_scale_step;
  };

  float out_acc[kMTiles][T::kDimTiles][4] = {};
  float pv_acc[kMTiles][kDeferredFlush ? T::kDimTiles : 1][4] = {};
  float row_max[kMTiles][2], row_sum[kMTiles][2];
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) row_max[m][0] = row_max[m][1] = kNegInf, row_sum[m][0] = row_sum[m][1] = 0.0f;

  for (int tile = 0; tile < k_tiles; ++tile) {
    const int stage = tile & 1;
    if (tile + 1 < k_tiles) load_kv(tile + 1, stage ^ 1);
    commit_copies();
    wait_copies<1>();
    __syncthreads();

    const bool edge_tile = (tile + 1) * kCtaK > args.kv_len || (args.causal && tile * kCtaK + kCtaK - 1 > cta_row);
    const bool full = edge_tile || args.bias || !(args.score_scale > 0.0f);
    const int tile_k_scale = tile_k_scale_of(tile);
    float ds[kSlices][2];  // Q smoothing: this tile's ΔS at this lane's key columns, in score units
#pragma unroll
    for (int m0 = 0; m0 < kMTiles; m0 += kQkGroup) {
      int32_t s_int[kQkGroup][kSlices][4];
      qk_scores<T, kInt4, kQkGroup>(s_int, q_smem + (warp_row + m0 * kWarpQ) * T::kQkStride, k_smem(stage), lane);
      if constexpr (kSmoothQ) {
        uint8_t* mean_row = mean_smem();
        float4* ds_stash = reinterpret_cast<float4*>(mean_row + T::kMeanStride) + lane;  // [4][32 lanes] float4
        if (m0 == 0) {
          const float mean_scale = *reinterpret_cast<const float*>(mean_row + kHeadDim) * args.score_scale;
          const float* k8_scale = (kInt4 ? args.k_int8_scale : args.k_scale) + tile_k_scale;
          delta_scores<kHeadDim>(ds, k8_smem(stage), T::kK8Stride, reinterpret_cast<const int8_t*>(mean_row),
                                 mean_scale, k8_scale, args.granularity == Granularity::per_token, lane);
          if constexpr (T::kDsStride > 0)  // kept for the next MMA tiles in shared memory, not in registers
#pragma unroll
            for (int i = 0; i < 4; ++i)
              ds_stash[32 * i] = make_float4(ds[2 * i][0], ds[2 * i][1], ds[2 * i + 1][0], ds[2 * i + 1][1]);
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const float4 x = ds_stash[32 * i];
            ds[2 * i][0] = x.x, ds[2 * i][1] = x.y, ds[2 * i + 1][0] = x.z, ds[2 * i + 1][1] = x.w;
          }
        }
      }
      float group_q_scale[kQkGroup][2];
#pragma unroll
      for (int m = 0; m < kQkGroup; ++m)
        group_q_scale[m][0] = q_scale[m0 + m][0], group_q_scale[m][1] = q_scale[m0 + m][1];
      float s[kQkGroup][kSlices][4];
      float row_scale[kQkGroup][2];
      dequantize<kQkGroup, kSmoothQ>(s, row_scale, s_int, args, args.k_scale + tile_k_scale, group_q_scale, ds);
      if (full) full_scores<T::kCtaRows, kQkGroup>(s, row_scale, args, m0, tile);

      uint32_t p[kQkGroup][T::kPvSteps][4];
#pragma unroll
      for (int i = 0; i < kQkGroup; ++i) {
        const int m = m0 + i;
        float rescale[2];
        online_softmax(s[i], row_scale[i], row_max[m], row_sum[m], rescale);
        pack_p<kFp8Pv>(p[i], s[i]);
#pragma unroll
        for (int n = 0; n < T::kDimTiles; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            out_acc[m][n][e] *= rescale[e / 2];
            if constexpr (kDeferredFlush) pv_acc[m][n][e] *= rescale[e / 2];
          }
      }
      if constexpr (kFp8Pv) pv_fp8<T, kDeferredFlush, kQkGroup>(out_acc, pv_acc, p, m0, v_smem(stage), lane);
      else pv_fp16<T, kQkGroup>(out_acc, p, m0, v_smem(stage), lane);
    }
    if constexpr (kDeferredFlush) {
      if ((tile + 1) % args.pv_flush_tiles == 0 || tile + 1 == k_tiles) {
#pragma unroll
        for (int m = 0; m < kMTiles; ++m)
#pragma unroll
          for (int n = 0; n < T::kDimTiles; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              out_acc[m][n][e] += pv_acc[m][n][e];
              pv_acc[m][n][e] = 0.0f;
            }
      }
    }
    __syncthreads();  // the next iteration's copy overwrites this stage
  }

  store_output<T, kMTiles>(args, out_acc, row_max, row_sum);
}

template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush, int kMTiles, bool kSmoothQ>
void launch_tiles(const AttentionArgs& args, cudaStream_t stream) {
  using T = Tiles<kHeadDim, kInt4, kFp8Pv, kMTiles, kSmoothQ, (kDeferredFlush && kMTiles > 1)>;
  const auto kernel = attention_kernel<kHeadDim, kInt4, kFp8Pv, kDeferredFlush, kMTiles, kSmoothQ>;
  SAGEVID_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes));
  const dim3 grid(unsigned((args.q_len + T::kCtaRows - 1) / T::kCtaRows), unsigned(args.q_heads), unsigned(args.batch));
  kernel<<<grid, kThreads, T::kSmemBytes, stream>>>(args);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush = false>
void launch(const AttentionArgs& args, cudaStream_t stream) {
  // Two MMA tiles per warp where the registers allow it: head dim 64 (measured on H100 at the CogVideoX-2B
  // shape: 238 TOPS with two, 214 with one); head dim 128 would spill.
  constexpr int kMTiles = kHeadDim <= 64 ? 2 : 1;
  if (args.q_mean) return launch_tiles<kHeadDim, kInt4, kFp8Pv, kDeferredFlush, kMTiles, true>(args, stream);
  launch_tiles<kHeadDim, kInt4, kFp8Pv, kDeferredFlush, kMTiles, false>(args, stream);
}

template <int kHeadDim>
void launch_for_head_dim(const AttentionArgs& args, cudaStream_t stream) {
  const bool deferred = args.fp8_pv && args.pv_flush_tiles > 1;
  if (args.int4) {
    if (!args.fp8_pv) return launch<kHeadDim, true, false>(args, stream);
    deferred ? launch<kHeadDim, true, true, true>(args, stream) : launch<kHeadDim, true, true>(args, stream);
  } else {
    if (!args.fp8_pv) return launch<kHeadDim, false, false>(args, stream);
    deferred ? launch<kHeadDim, false, true, true>(args, stream) : launch<kHeadDim, false, true>(args, stream);
  }
}

}  // namespace

void attention(const AttentionArgs& args, cudaStream_t stream) {
  switch (args.head_dim) {
    case 64: return launch_for_head_dim<64>(args, stream);
    case 128: return launch_for_head_dim<128>(args, stream);
    default:
      throw std::invalid_argument("sage2 attention: head dim " + std::to_string(args.head_dim) + " has no kernel");
  }
}

}  // namespace sagevid::kernels::sage2::mma
