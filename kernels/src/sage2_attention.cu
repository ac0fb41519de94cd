// The mma.sync SageAttention2 kernel (sm_80/86/89, also runs on sm_90). One CTA = 4 warps x 16 query rows
// against 64-key tiles, K/V double-buffered through cp.async. Per tile, a warp:
//   1. S = Q_int · K_intᵀ (INT8 m16n8k32 or INT4 m16n8k64) into int32 registers;
//   2. dequantizes: one q-scale x k-scale multiply per element (per-thread groups), + ΔS, + bias, mask;
//   3. online softmax in base 2 (scale and log2 e folded into the dequant factor);
//   4. P̃·V: P̃ from the S registers straight into A fragments, FP8 (x448, V per channel) or FP16,
//      accumulated in a fresh accumulator that is added into the FP32 output buffer every flush_tiles tiles.
#include "sage2_kernels.h"
#include "sage2_mma.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <stdexcept>

namespace sagevid::kernels::sage2::detail {
namespace {

constexpr int kThreads = kWarps * 32;
constexpr float kNegInf = -INFINITY;

template <int kHeadDim, bool kInt4, bool kFp8Pv>
struct Tiles {
  static constexpr int kQkRowBytes = kInt4 ? kHeadDim / 2 : kHeadDim;
  static constexpr int kQkSteps = kQkRowBytes / 32;   // INT8 k32 and INT4 k64 both consume 32 bytes
  static constexpr int kQkStride = kQkRowBytes + 16;  // +16 B per row: conflict-free ldmatrix
  static constexpr int kVRows = kFp8Pv ? kHeadDim : kCtaK;             // Vᵀ rows are channels
  static constexpr int kVRowBytes = kFp8Pv ? kCtaK : kHeadDim * 2;     // V rows are keys (fp16)
  static constexpr int kVStride = kVRowBytes + 16;
  static constexpr int kQBytes = kCtaQ * kQkStride;
  static constexpr int kKBytes = kCtaK * kQkStride;
  static constexpr int kVBytes = kVRows * kVStride;
  static constexpr int kSmemBytes = kQBytes + 2 * (kKBytes + kVBytes);
  static constexpr int kDimTiles = kHeadDim / 8;
};

// int32 -> float in two full-rate ALU ops instead of a conversion-unit op (which on Hopper shares the
// exponential's throughput): exact for |x| < 2^22, which bounds every Q·Kᵀ dot product (127² · 128 < 2^21).
__device__ __forceinline__ float exact_int_to_float(int32_t x) {
  return __int_as_float(0x4B400000 + x) - 12582912.0f;
}

// Copies rows x row_bytes from global (row pitch src_pitch bytes) into padded shared rows.
__device__ __forceinline__ void copy_tile(uint8_t* smem, int smem_stride, const uint8_t* global, int64_t src_pitch,
                                          int rows, int row_bytes) {
  const int chunks_per_row = row_bytes / 16;
  for (int i = threadIdx.x; i < rows * chunks_per_row; i += kThreads) {
    const int r = i / chunks_per_row, c = i % chunks_per_row;
    mma::cp_async_16(smem + r * smem_stride + c * 16, global + r * src_pitch + c * 16);
  }
}

// kDeferredFlush (FP8 only): keep each tile's P̃·V in a second register accumulator for pv_flush_tiles tiles
// before adding it into the FP32 buffer. Without it every tile's product goes straight into the buffer, one
// pair of dim tiles at a time, which needs only 8 extra registers instead of D/2.
template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttentionArgs args) {
  using T = Tiles<kHeadDim, kInt4, kFp8Pv>;
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t* q_smem = smem;
  const auto k_smem = [&](int stage) { return smem + T::kQBytes + stage * T::kKBytes; };
  const auto v_smem = [&](int stage) { return smem + T::kQBytes + 2 * T::kKBytes + stage * T::kVBytes; };

  const int q_block = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int kv_head = head / (args.q_heads / args.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, quad_col = lane % 4;
  const int64_t q_head_index = int64_t(batch) * args.q_heads + head;
  const int64_t kv_head_index = int64_t(batch) * args.kv_heads + kv_head;
  const int q_blocks = gridDim.x;
  const int64_t q_padded = int64_t(q_blocks) * kCtaQ;
  const int k_tiles_total = (args.kv_len + kCtaK - 1) / kCtaK;
  const int64_t k_padded = int64_t(k_tiles_total) * kCtaK;
  const int k_tiles = args.causal ? min(k_tiles_total, q_block + 1) : k_tiles_total;

  const uint8_t* q_global = reinterpret_cast<const uint8_t*>(args.q) + (q_head_index * q_padded + q_block * kCtaQ) * T::kQkRowBytes;
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

  copy_tile(q_smem, T::kQkStride, q_global, T::kQkRowBytes, kCtaQ, T::kQkRowBytes);
  load_kv(0, 0);
  mma::cp_async_commit();

  // Rows this lane owns in the accumulators: row0 and row0 + 8 of the warp's 16.
  const int row0 = q_block * kCtaQ + warp * kWarpQ + lane / 4, row1 = row0 + 8;
  const int q_groups = int(q_groups_per_block(args.granularity)) * q_blocks;
  const float q_scale0 = args.q_scale[q_head_index * q_groups + q_group(row0, args.granularity)] * args.score_scale;
  const float q_scale1 = args.q_scale[q_head_index * q_groups + q_group(row1, args.granularity)] * args.score_scale;
  const int k_groups = int(k_groups_per_block(args.granularity)) * k_tiles_total;
  const float* delta_s = args.delta_s ? args.delta_s + (q_head_index * q_blocks + q_block) * int64_t(args.kv_len) : nullptr;

  uint32_t q_frag[T::kQkSteps][4];
  float out_acc[T::kDimTiles][4] = {};
  float pv_acc[kDeferredFlush ? T::kDimTiles : 1][4] = {};
  float row_max[2] = {kNegInf, kNegInf}, row_sum[2] = {0.0f, 0.0f};

  for (int tile = 0; tile < k_tiles; ++tile) {
    const int stage = tile & 1;
    if (tile + 1 < k_tiles) load_kv(tile + 1, stage ^ 1);
    mma::cp_async_commit();
    mma::cp_async_wait<1>();
    __syncthreads();

    if (tile == 0) {
#pragma unroll
      for (int step = 0; step < T::kQkSteps; ++step) {
        const int m = lane / 8, r = warp * kWarpQ + lane % 8 + (m & 1) * 8;
        mma::ldmatrix_x4(q_frag[step], q_smem + r * T::kQkStride + step * 32 + (m >> 1) * 16);
      }
    }

    // 1. S = Q Kᵀ
    int32_t s_int[8][4] = {};
#pragma unroll
    for (int step = 0; step < T::kQkSteps; ++step) {
#pragma unroll
      for (int pair = 0; pair < 4; ++pair) {
        uint32_t b[4];
        const int m = lane / 8, key = pair * 16 + lane % 8 + (m >> 1) * 8;
        mma::ldmatrix_x4(b, k_smem(stage) + key * T::kQkStride + step * 32 + (m & 1) * 16);
        if constexpr (kInt4) {
          mma::int4_m16n8k64(s_int[2 * pair], q_frag[step], b[0], b[1]);
          mma::int4_m16n8k64(s_int[2 * pair + 1], q_frag[step], b[2], b[3]);
        } else {
          mma::int8_m16n8k32(s_int[2 * pair], q_frag[step], b[0], b[1]);
          mma::int8_m16n8k32(s_int[2 * pair + 1], q_frag[step], b[2], b[3]);
        }
      }
    }

    // 2. Dequantize to base-2 scores: one multiply per element. Only tiles at the end of the keys or on the
    //    causal diagonal, and calls with ΔS or a bias, take the per-element path that adds and masks.
    const float k_scale = args.k_scale[kv_head_index * k_groups + k_group(int64_t(tile) * kCtaK + 2 * quad_col, args.granularity)];
    const float scale0 = q_scale0 * k_scale, scale1 = q_scale1 * k_scale;
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = exact_int_to_float(s_int[n][e]) * (e < 2 ? scale0 : scale1);
    const bool edge_tile = (tile + 1) * kCtaK > args.kv_len || (args.causal && tile >= q_block);
    if (edge_tile || delta_s || args.bias) {
#pragma unroll
      for (int n = 0; n < 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = e < 2 ? row0 : row1, col = tile * kCtaK + n * 8 + 2 * quad_col + (e & 1);
          if (col < args.kv_len) {
            if (delta_s) s[n][e] += delta_s[col] * args.score_scale;
            if (args.bias && row < args.q_len)
              s[n][e] += args.bias[batch * args.bias_sb + head * args.bias_sh + row * args.bias_si + col] * float(M_LOG2E);
          }
          if (col >= args.kv_len || (args.causal && col > row)) s[n][e] = kNegInf;
        }
      }
    }

    // 3. Online softmax: each row's 64 scores live in the 4 lanes of a quad.
    float rescale[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float tile_max = kNegInf;
#pragma unroll
      for (int n = 0; n < 8; ++n) tile_max = fmaxf(tile_max, fmaxf(s[n][2 * half], s[n][2 * half + 1]));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      const float new_max = fmaxf(row_max[half], tile_max);
      const float reference = new_max == kNegInf ? 0.0f : new_max;  // a fully masked row so far
      rescale[half] = mma::fast_exp2(row_max[half] - reference);
      row_max[half] = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        s[n][2 * half] = mma::fast_exp2(s[n][2 * half] - reference);
        s[n][2 * half + 1] = mma::fast_exp2(s[n][2 * half + 1] - reference);
        sum += s[n][2 * half] + s[n][2 * half + 1];
      }
      row_sum[half] = row_sum[half] * rescale[half] + sum;
    }
#pragma unroll
    for (int n = 0; n < T::kDimTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        out_acc[n][e] *= rescale[e / 2];
        if constexpr (kDeferredFlush) pv_acc[n][e] *= rescale[e / 2];
      }
    }

    // 4. P̃ · V
    if constexpr (kFp8Pv) {
      uint32_t a[2][4];
#pragma unroll
      for (int step = 0; step < 2; ++step) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int n0 = 4 * step + (i >> 1) * 2, e = (i & 1) * 2;  // a0: row0 n0,n0+1; a1: row1; a2/a3: n0+2
          const uint32_t lo = mma::pack_e4m3x2(s[n0][e] * kFp8Max, s[n0][e + 1] * kFp8Max);
          const uint32_t hi = mma::pack_e4m3x2(s[n0 + 1][e] * kFp8Max, s[n0 + 1][e + 1] * kFp8Max);
          a[step][i] = lo | (hi << 16);
        }
      }
#pragma unroll
      for (int pair = 0; pair < T::kDimTiles / 2; ++pair) {
        float fresh[2][4] = {};
        float(&acc0)[4] = kDeferredFlush ? pv_acc[(2 * pair) % (kDeferredFlush ? T::kDimTiles : 1)] : fresh[0];
        float(&acc1)[4] = kDeferredFlush ? pv_acc[(2 * pair + 1) % (kDeferredFlush ? T::kDimTiles : 1)] : fresh[1];
#pragma unroll
        for (int step = 0; step < 2; ++step) {
          uint32_t b[4];
          const int m = lane / 8, channel = pair * 16 + lane % 8 + (m >> 1) * 8;
          mma::ldmatrix_x4(b, v_smem(stage) + channel * T::kVStride + step * 32 + (m & 1) * 16);
          mma::fp8_m16n8k32(acc0, a[step], b[0], b[1]);
          mma::fp8_m16n8k32(acc1, a[step], b[2], b[3]);
        }
        if constexpr (!kDeferredFlush) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            out_acc[2 * pair][e] += fresh[0][e];
            out_acc[2 * pair + 1][e] += fresh[1][e];
          }
        }
      }
      if constexpr (kDeferredFlush) {
        if ((tile + 1) % args.pv_flush_tiles == 0 || tile + 1 == k_tiles) {
#pragma unroll
          for (int n = 0; n < T::kDimTiles; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              out_acc[n][e] += pv_acc[n][e];
              pv_acc[n][e] = 0.0f;
            }
        }
      }
    } else {
#pragma unroll
      for (int step = 0; step < 4; ++step) {
        const uint32_t a[4] = {mma::pack_half2(s[2 * step][0], s[2 * step][1]),
                               mma::pack_half2(s[2 * step][2], s[2 * step][3]),
                               mma::pack_half2(s[2 * step + 1][0], s[2 * step + 1][1]),
                               mma::pack_half2(s[2 * step + 1][2], s[2 * step + 1][3])};
#pragma unroll
        for (int pair = 0; pair < T::kDimTiles / 2; ++pair) {
          uint32_t b[4];
          const int m = lane / 8, key = step * 16 + lane % 8 + (m & 1) * 8, channel = pair * 16 + (m >> 1) * 8;
          mma::ldmatrix_x4_trans(b, v_smem(stage) + key * T::kVStride + channel * 2);
          mma::fp16_m16n8k16(out_acc[2 * pair], a, b[0], b[1]);
          mma::fp16_m16n8k16(out_acc[2 * pair + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's copy overwrites this stage
  }

  // Epilogue: normalize, undo the V scaling, add the V mean back, store.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 1);
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 2);
  }
  const float* v_scale = args.v_scale ? args.v_scale + kv_head_index * kHeadDim : nullptr;
  const float* v_mean = args.v_mean ? args.v_mean + kv_head_index * kHeadDim : nullptr;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = half == 0 ? row0 : row1;
    if (row >= args.q_len) continue;
    const float inv_sum = row_sum[half] > 0.0f ? 1.0f / row_sum[half] : 0.0f;
    const int64_t base = batch * args.out_sb + head * args.out_sh + row * args.out_si;
#pragma unroll
    for (int n = 0; n < T::kDimTiles; ++n) {
      const int c = n * 8 + 2 * quad_col;
      float x0 = out_acc[n][2 * half] * inv_sum, x1 = out_acc[n][2 * half + 1] * inv_sum;
      if (v_scale) {
        x0 *= v_scale[c] * (1.0f / kFp8Max);
        x1 *= v_scale[c + 1] * (1.0f / kFp8Max);
      }
      if (v_mean) {
        x0 += v_mean[c];
        x1 += v_mean[c + 1];
      }
      if (args.out_type == InputType::fp16)
        *reinterpret_cast<__half2*>(static_cast<__half*>(args.out) + base + c) = __floats2half2_rn(x0, x1);
      else
        *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(args.out) + base + c) =
            __floats2bfloat162_rn(x0, x1);
    }
    if (args.lse && quad_col == 0)
      args.lse[q_head_index * args.q_len + row] = (row_max[half] == kNegInf ? 0.0f : row_max[half]) + log2f(row_sum[half]);
  }
}

template <int kHeadDim, bool kInt4, bool kFp8Pv, bool kDeferredFlush = false>
void launch(const AttentionArgs& args, cudaStream_t stream) {
  using T = Tiles<kHeadDim, kInt4, kFp8Pv>;
  const auto kernel = attention_kernel<kHeadDim, kInt4, kFp8Pv, kDeferredFlush>;
  SAGEVID_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes));
  const dim3 grid(unsigned((args.q_len + kCtaQ - 1) / kCtaQ), unsigned(args.q_heads), unsigned(args.batch));
  kernel<<<grid, kThreads, T::kSmemBytes, stream>>>(args);
  SAGEVID_CUDA_CHECK_LAUNCH();
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

}  // namespace sagevid::kernels::sage2::detail
