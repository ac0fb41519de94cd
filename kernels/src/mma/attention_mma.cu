// The mma.sync SageAttention2 kernel (sm_80/86/89, also runs on sm_90). One CTA = 4 warps x 16 query rows
// against 64-key tiles, K/V double-buffered through cp.async. Per tile, a warp:
//   1. S = Q_int · K_intᵀ (INT8 m16n8k32 or INT4 m16n8k64) into int32 registers;
//   2. dequantizes: one k-scale multiply per element; the row's q-scale (x sm_scale x log2 e) is deferred
//      into the softmax's FMA; edge tiles and ΔS/bias calls scale fully, add and mask;
//   3. online softmax in base 2;
//   4. P̃·V: P̃ from the S registers straight into A fragments, FP8 (x448, V per channel) or FP16,
//      accumulated in a fresh accumulator that is added into the FP32 output buffer every flush_tiles tiles.
#include "attention_mma.h"
#include "mma.cuh"
#include "../sage2_device.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <cmath>
#include <stdexcept>

namespace sagevid::kernels::sage2::mma {
namespace {

using detail::AttentionArgs;

constexpr int kThreads = kWarps * 32;
constexpr int kCtaK = tiling(KernelFamily::mma_sync).key_tile;

template <int kHeadDim, bool kInt4, bool kFp8Pv, int kMTiles>
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
  static constexpr int kSmemBytes = kQBytes + 2 * (kKBytes + kVBytes);
  static constexpr int kDimTiles = kHeadDim / 8;
};

__device__ __forceinline__ float exact_int_to_float(int32_t x) { return magic_float(x) - kMagic; }

__device__ __forceinline__ int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

// Copies rows x row_bytes from global (row pitch src_pitch bytes) into padded shared rows.
__device__ __forceinline__ void copy_tile(uint8_t* smem, int smem_stride, const uint8_t* global, int64_t src_pitch,
                                          int rows, int row_bytes) {
  const int chunks_per_row = row_bytes / 16;
  for (int i = threadIdx.x; i < rows * chunks_per_row; i += kThreads) {
    const int r = i / chunks_per_row, c = i % chunks_per_row;
    cp_async_16(smem + r * smem_stride + c * 16, global + r * src_pitch + c * 16);
  }
}

// kMTiles: 16-row MMA tiles per warp. Two tiles (head dim 64) reuse every K and V fragment loaded from shared
// memory twice and give each warp two independent dependency chains to interleave.
// kDeferredFlush (FP8 only): keep each tile's P̃·V in a second register accumulator for pv_flush_tiles tiles
// before adding it into the FP32 buffer. Without it every tile's product goes straight into the buffer, one
// pair of dim tiles at a time, which needs only 8 extra registers instead of D/2.
template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush, int kMTiles>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttentionArgs args) {
  using T = Tiles<kHeadDim, kInt4, kFp8Pv, kMTiles>;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* q_smem = smem;
  const auto k_smem = [&](int stage) { return smem + T::kQBytes + stage * T::kKBytes; };
  const auto v_smem = [&](int stage) { return smem + T::kQBytes + 2 * T::kKBytes + stage * T::kVBytes; };

  const int head = blockIdx.y, batch = blockIdx.z;
  const int kv_head = head / (args.q_heads / args.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad_col = lane % 4;
  const int64_t q_head_index = int64_t(batch) * args.q_heads + head;
  const int64_t kv_head_index = int64_t(batch) * args.kv_heads + kv_head;
  const int q_blocks = (args.q_len + kQBlock - 1) / kQBlock;  // 64-row blocks of the quantized Q layout
  const int64_t q_padded = int64_t(q_blocks) * kQBlock;
  const int cta_row = blockIdx.x * T::kCtaRows;
  const int cta_last_row = min(cta_row + T::kCtaRows, args.q_len) - 1;
  const int k_tiles_total = (args.kv_len + kCtaK - 1) / kCtaK;
  const int64_t k_padded = int64_t(k_tiles_total) * kCtaK;
  const int k_tiles = args.causal ? min(k_tiles_total, cta_last_row / kCtaK + 1) : k_tiles_total;

  const uint8_t* q_global = reinterpret_cast<const uint8_t*>(args.q) + (q_head_index * q_padded + cta_row) * T::kQkRowBytes;
  const uint8_t* k_global = reinterpret_cast<const uint8_t*>(args.k) + kv_head_index * k_padded * T::kQkRowBytes;
  const uint8_t* v_global = static_cast<const uint8_t*>(args.v) +
                            (kFp8Pv ? kv_head_index * kHeadDim * k_padded : kv_head_index * k_padded * kHeadDim * 2);
  const auto load_kv = [&](int tile, int stage) {
    copy_tile(k_smem(stage), T::kQkStride, k_global + int64_t(tile) * kCtaK * T::kQkRowBytes, T::kQkRowBytes, kCtaK,
              T::kQkRowBytes);
    if constexpr (kFp8Pv)
      copy_tile(v_smem(stage), T::kVStride, v_global + int64_t(tile) * kCtaK, k_padded, kHeadDim, kCtaK);
    else
      copy_tile(v_smem(stage), T::kVStride, v_global + int64_t(tile) * kCtaK * kHeadDim * 2, kHeadDim * 2, kCtaK,
                kHeadDim * 2);
  };

  // Rows past the padded Q (the last CTA when the 64-row blocks are odd) are never stored: not loaded either.
  copy_tile(q_smem, T::kQkStride, q_global, T::kQkRowBytes, int(min_i64(T::kCtaRows, q_padded - cta_row)),
            T::kQkRowBytes);
  load_kv(0, 0);
  cp_async_commit();

  // Per MMA tile m, this lane owns rows row0[m] and row0[m] + 8.
  int row0[kMTiles];
  float q_scale[kMTiles][2];
  const float* delta_s[kMTiles];
  const int q_groups = int(q_groups_per_block(args.granularity)) * q_blocks;
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) {
    row0[m] = cta_row + (warp * kMTiles + m) * kWarpQ + lane / 4;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = int(min_i64(row0[m] + 8 * half, q_padded - 1));
      q_scale[m][half] = args.q_scale[q_head_index * q_groups + q_group(row, args.granularity)] * args.score_scale;
    }
    const int block = int(min_i64(row0[m] / kQBlock, q_blocks - 1));
    delta_s[m] = args.delta_s ? args.delta_s + (q_head_index * q_blocks + block) * int64_t(args.kv_len) : nullptr;
  }
  const int k_groups = int(k_groups_per_block(args.granularity)) * k_tiles_total;

  uint32_t q_frag[kMTiles][T::kQkSteps][4];
  float out_acc[kMTiles][T::kDimTiles][4] = {};
  float pv_acc[kMTiles][kDeferredFlush ? T::kDimTiles : 1][4] = {};
  float row_max[kMTiles][2], row_sum[kMTiles][2];
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) row_max[m][0] = row_max[m][1] = kNegInf, row_sum[m][0] = row_sum[m][1] = 0.0f;

  for (int tile = 0; tile < k_tiles; ++tile) {
    const int stage = tile & 1;
    if (tile + 1 < k_tiles) load_kv(tile + 1, stage ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    if (tile == 0) {
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int step = 0; step < T::kQkSteps; ++step) {
          const int g = lane / 8, r = (warp * kMTiles + m) * kWarpQ + lane % 8 + (g & 1) * 8;
          ldmatrix_x4(q_frag[m][step], q_smem + r * T::kQkStride + step * 32 + (g >> 1) * 16);
        }
    }

    // 1. S = Q Kᵀ: each K fragment feeds every MMA tile of the warp.
    int32_t s_int[kMTiles][8][4] = {};
#pragma unroll
    for (int step = 0; step < T::kQkSteps; ++step) {
#pragma unroll
      for (int pair = 0; pair < 4; ++pair) {
        uint32_t b[4];
        const int g = lane / 8, key = pair * 16 + lane % 8 + (g >> 1) * 8;
        ldmatrix_x4(b, k_smem(stage) + key * T::kQkStride + step * 32 + (g & 1) * 16);
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          if constexpr (kInt4) {
            int4_m16n8k64(s_int[m][2 * pair], q_frag[m][step], b[0], b[1]);
            int4_m16n8k64(s_int[m][2 * pair + 1], q_frag[m][step], b[2], b[3]);
          } else {
            int8_m16n8k32(s_int[m][2 * pair], q_frag[m][step], b[0], b[1]);
            int8_m16n8k32(s_int[m][2 * pair + 1], q_frag[m][step], b[2], b[3]);
          }
        }
      }
    }

    // 2. Dequantize: the k-scale multiplies here (it differs between the lanes of a row's quad: per-thread
    //    groups, per-token columns); the row's q-scale is deferred into the softmax, exp2(s · q_scale − max)
    //    as one FMA, and into the row max (one multiply per row). Tiles at the end of the keys or on the
    //    causal diagonal, calls with ΔS or a bias, and a non-positive scale (which would flip the max) scale
    //    fully here, add, mask, and defer nothing.
    const bool edge_tile = (tile + 1) * kCtaK > args.kv_len || (args.causal && tile * kCtaK + kCtaK - 1 > cta_row);
    const bool full_scores = edge_tile || args.delta_s || args.bias || !(args.score_scale > 0.0f);
    float s[kMTiles][8][4];
    float row_scale[kMTiles][2];
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) row_scale[m][0] = q_scale[m][0], row_scale[m][1] = q_scale[m][1];
    if (args.granularity == Granularity::per_token) {
      // The scales of the two key columns this lane holds in slice n, loaded as they are used so that they
      // take two registers, not sixteen (the FP8 kernels are at the register limit).
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const float2 key_scale = *reinterpret_cast<const float2*>(args.k_scale + kv_head_index * k_groups +
                                                                  tile * kCtaK + n * 8 + 2 * quad_col);
#pragma unroll
        for (int m = 0; m < kMTiles; ++m)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            s[m][n][e] = exact_int_to_float(s_int[m][n][e]) * ((e & 1) ? key_scale.y : key_scale.x);
      }
    } else {
      const float k_scale =
          args.k_scale[kv_head_index * k_groups + k_group(int64_t(tile) * kCtaK + 2 * quad_col, args.granularity)];
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[m][n][e] = exact_int_to_float(s_int[m][n][e]) * k_scale;
    }
    if (full_scores) {
#pragma unroll
      for (int m = 0; m < kMTiles; ++m) {
#pragma unroll
        for (int n = 0; n < 8; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int row = row0[m] + (e < 2 ? 0 : 8), col = tile * kCtaK + n * 8 + 2 * quad_col + (e & 1);
            s[m][n][e] *= row_scale[m][e / 2];
            if (col < args.kv_len) {
              if (delta_s[m]) s[m][n][e] += delta_s[m][col] * args.score_scale;
              if (args.bias && row < args.q_len)
                s[m][n][e] += args.bias[batch * args.bias_sb + head * args.bias_sh + row * args.bias_si + col] * float(M_LOG2E);
            }
            if (col >= args.kv_len || (args.causal && col > row)) s[m][n][e] = kNegInf;
          }
        }
        row_scale[m][0] = row_scale[m][1] = 1.0f;
      }
    }

    // 3. Online softmax: each row's 64 scores live in the 4 lanes of a quad.
#pragma unroll
    for (int m = 0; m < kMTiles; ++m) {
      float rescale[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float tile_max = kNegInf;
#pragma unroll
        for (int n = 0; n < 8; ++n) tile_max = fmaxf(tile_max, fmaxf(s[m][n][2 * half], s[m][n][2 * half + 1]));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2)) * row_scale[m][half];  // scale > 0
        const float new_max = fmaxf(row_max[m][half], tile_max);
        const float reference = new_max == kNegInf ? 0.0f : new_max;  // a fully masked row so far
        rescale[half] = fast_exp2(row_max[m][half] - reference);
        row_max[m][half] = new_max;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          s[m][n][2 * half] = fast_exp2(fmaf(s[m][n][2 * half], row_scale[m][half], -reference));
          s[m][n][2 * half + 1] = fast_exp2(fmaf(s[m][n][2 * half + 1], row_scale[m][half], -reference));
          sum += s[m][n][2 * half] + s[m][n][2 * half + 1];
        }
        row_sum[m][half] = row_sum[m][half] * rescale[half] + sum;
      }
#pragma unroll
      for (int n = 0; n < T::kDimTiles; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          out_acc[m][n][e] *= rescale[e / 2];
          if constexpr (kDeferredFlush) pv_acc[m][n][e] *= rescale[e / 2];
        }
      }
    }

    // 4. P̃ · V: each V fragment feeds every MMA tile of the warp.
    if constexpr (kFp8Pv) {
      uint32_t a[kMTiles][2][4];
#pragma unroll
      for (int m = 0; m < kMTiles; ++m)
#pragma unroll
        for (int step = 0; step < 2; ++step)
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            const int n0 = 4 * step + (i >> 1) * 2, e = (i & 1) * 2;  // a0: row0 n0,n0+1; a1: row1; a2/a3: n0+2
            const uint32_t lo = pack_e4m3x2(s[m][n0][e] * kFp8Max, s[m][n0][e + 1] * kFp8Max);
            const uint32_t hi = pack_e4m3x2(s[m][n0 + 1][e] * kFp8Max, s[m][n0 + 1][e + 1] * kFp8Max);
            a[m][step][i] = lo | (hi << 16);
          }
#pragma unroll
      for (int pair = 0; pair < T::kDimTiles / 2; ++pair) {
        float fresh[kMTiles][2][4] = {};
#pragma unroll
        for (int step = 0; step < 2; ++step) {
          uint32_t b[4];
          const int g = lane / 8, channel = pair * 16 + lane % 8 + (g >> 1) * 8;
          ldmatrix_x4(b, v_smem(stage) + channel * T::kVStride + step * 32 + (g & 1) * 16);
#pragma unroll
          for (int m = 0; m < kMTiles; ++m) {
            float(&acc0)[4] = kDeferredFlush ? pv_acc[m][(2 * pair) % (kDeferredFlush ? T::kDimTiles : 1)] : fresh[m][0];
            float(&acc1)[4] = kDeferredFlush ? pv_acc[m][(2 * pair + 1) % (kDeferredFlush ? T::kDimTiles : 1)] : fresh[m][1];
            fp8_m16n8k32(acc0, a[m][step], b[0], b[1]);
            fp8_m16n8k32(acc1, a[m][step], b[2], b[3]);
          }
        }
        if constexpr (!kDeferredFlush) {
#pragma unroll
          for (int m = 0; m < kMTiles; ++m)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              out_acc[m][2 * pair][e] += fresh[m][0][e];
              out_acc[m][2 * pair + 1][e] += fresh[m][1][e];
            }
        }
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
    } else {
#pragma unroll
      for (int step = 0; step < 4; ++step) {
        uint32_t a[kMTiles][4];
#pragma unroll
        for (int m = 0; m < kMTiles; ++m) {
          a[m][0] = pack_half2(s[m][2 * step][0], s[m][2 * step][1]);
          a[m][1] = pack_half2(s[m][2 * step][2], s[m][2 * step][3]);
          a[m][2] = pack_half2(s[m][2 * step + 1][0], s[m][2 * step + 1][1]);
          a[m][3] = pack_half2(s[m][2 * step + 1][2], s[m][2 * step + 1][3]);
        }
#pragma unroll
        for (int pair = 0; pair < T::kDimTiles / 2; ++pair) {
          uint32_t b[4];
          const int g = lane / 8, key = step * 16 + lane % 8 + (g & 1) * 8, channel = pair * 16 + (g >> 1) * 8;
          ldmatrix_x4_trans(b, v_smem(stage) + key * T::kVStride + channel * 2);
#pragma unroll
          for (int m = 0; m < kMTiles; ++m) {
            fp16_m16n8k16(out_acc[m][2 * pair], a[m], b[0], b[1]);
            fp16_m16n8k16(out_acc[m][2 * pair + 1], a[m], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // the next iteration's copy overwrites this stage
  }

  // Epilogue: normalize, undo the V scaling, add the V mean back, store.
  const float* v_scale = args.v_scale ? args.v_scale + kv_head_index * kHeadDim : nullptr;
  const float* v_mean = args.v_mean ? args.v_mean + kv_head_index * kHeadDim : nullptr;
#pragma unroll
  for (int m = 0; m < kMTiles; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float sum = row_sum[m][half];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int row = row0[m] + 8 * half;
      if (row >= args.q_len) continue;
      const float inv_sum = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int64_t base = batch * args.out_sb + head * args.out_sh + row * args.out_si;
#pragma unroll
      for (int n = 0; n < T::kDimTiles; ++n) {
        const int c = n * 8 + 2 * quad_col;
        store_output_pair(args, base, c, out_acc[m][n][2 * half] * inv_sum, out_acc[m][n][2 * half + 1] * inv_sum,
                          v_scale, 1.0f / kFp8Max, v_mean);
      }
      if (args.lse && quad_col == 0)
        args.lse[q_head_index * args.q_len + row] =
            (row_max[m][half] == kNegInf ? 0.0f : row_max[m][half]) + log2f(sum);
    }
  }
}

template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush, int kMTiles>
void launch_tiles(const AttentionArgs& args, cudaStream_t stream) {
  using T = Tiles<kHeadDim, kInt4, kFp8Pv, kMTiles>;
  const auto kernel = attention_kernel<kHeadDim, kInt4, kFp8Pv, kDeferredFlush, kMTiles>;
  SAGEVID_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes));
  const dim3 grid(unsigned((args.q_len + T::kCtaRows - 1) / T::kCtaRows), unsigned(args.q_heads), unsigned(args.batch));
  kernel<<<grid, kThreads, T::kSmemBytes, stream>>>(args);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush = false>
void launch(const AttentionArgs& args, cudaStream_t stream) {
  // Two MMA tiles per warp where the registers allow it: head dim 64 (measured on H100 at the CogVideoX-2B
  // shape: 238 TOPS with two, 214 with one); head dim 128 would spill.
  launch_tiles<kHeadDim, kInt4, kFp8Pv, kDeferredFlush, kHeadDim <= 64 ? 2 : 1>(args, stream);
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
    default: throw std::invalid_argument("sage2 attention: head dim " + std::to_string(args.head_dim) + " has no kernel");
  }
}

}  // namespace sagevid::kernels::sage2::mma
