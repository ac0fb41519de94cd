// SageAttention2 preprocessing: Q/K smoothing + per-group INT8/INT4 quantization, V as padded fp16 for the
// FP16 P·V MMA, and per-channel FP8 quantization of V into the transposed, key-permuted layout the FP8 P·V MMA
// reads. Memory-bound kernels: each reads its input once (the FP8 V path twice: absmax, then quantize).
#include "sage2_kernels.h"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace sagevid::kernels::sage2::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxHeadDim = 128;

__device__ __forceinline__ float load_input(const void* data, InputType type, int64_t index) {
  return type == InputType::fp16 ? __half2float(static_cast<const __half*>(data)[index])
                                 : __bfloat162float(static_cast<const __nv_bfloat16*>(data)[index]);
}

// Eight consecutive channels of one row: the unit every thread loads, smooths and quantizes. Whole chunks are
// one 16-byte load when the input is aligned for it (the host checks), else eight scalar loads.
constexpr int kChunk = 8;
// 64-row tiles per quantization CTA: enough that each thread has four 16-byte loads in flight.
SAGEVID_HD constexpr int tiles_per_cta(int head_dim) { return 128 / head_dim; }

__device__ __forceinline__ void load_chunk(const StridedInput& x, int64_t index, bool vector_loads, float (&out)[kChunk]) {
  if (vector_loads) {
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(x.data) + index);
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (x.type == InputType::fp16) {
        const float2 pair = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
        out[2 * i] = pair.x, out[2 * i + 1] = pair.y;
      } else {
        const float2 pair = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[i]));
        out[2 * i] = pair.x, out[2 * i + 1] = pair.y;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < kChunk; ++i) out[i] = load_input(x.data, x.type, index + i);
  }
}

// One CTA quantizes kTiles 64-row tiles of one (batch, head): two at head dim 64, one at 128, so that every
// thread holds four 8-channel chunks (t, t + 256, ... in row-major order, the lanes of a row adjacent). It
// issues all its loads first, then smooths them; the row absmax is a shuffle reduction over the row's lanes,
// each group's absmax a shared atomic max over its rows, and the thread then rounds its own chunks. Reads and
// writes each element once.
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(StridedInput x, bool vector_loads, const float* mean,
                                                                 bool mean_per_block, bool is_key,
                                                                 Granularity granularity, bool int4,
                                                                 int8_t* values, float* scales) {
  constexpr int kTile = kQBlock;  // == kKBlock: Q and K tiles are both 64 rows
  static_assert(kQBlock == kKBlock, "one tile size for Q and K");
  constexpr int kTiles = tiles_per_cta(kHeadDim);
  constexpr int d = kHeadDim, chunks_per_row = d / kChunk;
  constexpr int kChunksPerThread = kTiles * kTile * chunks_per_row / kThreads;
  __shared__ unsigned group_amax_bits[kTiles][kTile];  // non-negative floats order like their bit patterns

  const int head = blockIdx.y, batch = blockIdx.z;
  const int first_block = blockIdx.x * kTiles, num_blocks = (x.len + kTile - 1) / kTile;
  const int64_t in_base = batch * x.stride_b + head * x.stride_h;
  const int64_t head_index = int64_t(batch) * x.heads + head;
  const float* head_mean = mean ? mean + head_index * (mean_per_block ? num_blocks : 1) * d : nullptr;
  if (threadIdx.x < kTiles * kTile) group_amax_bits[threadIdx.x / kTile][threadIdx.x % kTile] = 0;
  __syncthreads();

  // Load (all of the thread's chunks in flight together), then smooth; rows past the sequence are padding
  // (zero, so they never raise a group's absmax).
  float v[kChunksPerThread][kChunk];
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / chunks_per_row, c = (chunk % chunks_per_row) * kChunk, row = first_block * kTile + r;
    if (row < x.len) {
      load_chunk(x, in_base + row * x.stride_n + c, vector_loads, v[j]);
    } else {
#pragma unroll
      for (int i = 0; i < kChunk; ++i) v[j][i] = 0.0f;
    }
  }
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / chunks_per_row, c = (chunk % chunks_per_row) * kChunk, row = first_block * kTile + r;
    const int tile = r / kTile;
    float amax = 0.0f;
    if (row < x.len) {
      const float* mean_row = head_mean ? head_mean + (mean_per_block ? int64_t(first_block + tile) * d : 0) : nullptr;
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        if (mean_row) v[j][i] = v[j][i] - mean_row[c + i];
        amax = fmaxf(amax, fabsf(v[j][i]));
      }
    }
    for (int offset = 1; offset < chunks_per_row; offset <<= 1)  // the row's lanes: aligned, a power of two
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    if (chunk % chunks_per_row == 0) {
      const int group = int(is_key ? k_group(r % kTile, granularity) : q_group(r % kTile, granularity));
      atomicMax(&group_amax_bits[tile][group], __float_as_uint(amax));
    }
  }
  __syncthreads();

  const int groups = int(is_key ? k_groups_per_block(granularity) : q_groups_per_block(granularity));
  const float qmax = int4 ? float(kInt4Max) : float(kInt8Max);
  if (threadIdx.x < kTiles * groups) {
    const int tile = threadIdx.x / groups, group = threadIdx.x % groups, block = first_block + tile;
    const float amax = __uint_as_float(group_amax_bits[tile][group]);
    if (block < num_blocks) scales[(head_index * num_blocks + block) * groups + group] = amax > 0.0f ? amax / qmax : 1.0f;
  }

  // Round: eight int8 values are one 8-byte store, eight int4 ones a 4-byte store.
  const int64_t padded_len = int64_t(num_blocks) * kTile;
  const int64_t row_bytes = int4 ? d / 2 : d;
  int8_t* out = values + (head_index * padded_len + int64_t(first_block) * kTile) * row_bytes;
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / chunks_per_row;
    if (first_block * kTile + r >= padded_len) break;  // the last CTA's second tile may lie past the padding
    const int group = int(is_key ? k_group(r % kTile, granularity) : q_group(r % kTile, granularity));
    const float amax = __uint_as_float(group_amax_bits[r / kTile][group]);
    const float inv = amax > 0.0f ? qmax / amax : 0.0f;
    int q[kChunk];
#pragma unroll
    for (int i = 0; i < kChunk; ++i) q[i] = max(-int(qmax), min(int(qmax), __float2int_rn(v[j][i] * inv)));
    if (!int4) {
      uint2 packed;
      packed.x = (q[0] & 0xFF) | (q[1] & 0xFF) << 8 | (q[2] & 0xFF) << 16 | uint32_t(q[3] & 0xFF) << 24;
      packed.y = (q[4] & 0xFF) | (q[5] & 0xFF) << 8 | (q[6] & 0xFF) << 16 | uint32_t(q[7] & 0xFF) << 24;
      reinterpret_cast<uint2*>(out)[chunk] = packed;
    } else {
      uint32_t packed = 0;
#pragma unroll
      for (int i = 0; i < kChunk; ++i) packed |= uint32_t(q[i] & 0xF) << (4 * i);  // low nibble = even channel
      reinterpret_cast<uint32_t*>(out)[chunk] = packed;
    }
  }
}

// V for the FP16 P·V MMA: v - mean as fp16, [B, H, N_pad, D], padding keys 0. One CTA per 64-key tile.
__global__ void __launch_bounds__(kThreads) convert_v_fp16_kernel(StridedInput v, bool vector_loads,
                                                                  const float* mean, __half* values) {
  const int tile = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int d = v.head_dim, chunks_per_row = d / kChunk;
  const int64_t head_index = int64_t(batch) * v.heads + head;
  const int64_t in_base = batch * v.stride_b + head * v.stride_h;
  const float* mean_row = mean ? mean + head_index * d : nullptr;
  __half* out = values + (head_index * gridDim.x + tile) * int64_t(kKBlock) * d;
  for (int chunk = threadIdx.x; chunk < kKBlock * chunks_per_row; chunk += kThreads) {
    const int r = chunk / chunks_per_row, c = (chunk % chunks_per_row) * kChunk, row = tile * kKBlock + r;
    float x[kChunk] = {};
    if (row < v.len) {
      load_chunk(v, in_base + row * v.stride_n + c, vector_loads, x);
      if (mean_row)
#pragma unroll
        for (int i = 0; i < kChunk; ++i) x[i] = x[i] - mean_row[c + i];
    }
    uint4 packed;
    uint32_t* words = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __half2 pair = __floats2half2_rn(x[2 * i], x[2 * i + 1]);
      words[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    reinterpret_cast<uint4*>(out)[chunk] = packed;
  }
}

// Per-channel max|v - mean| over rows_per_cta rows: thread t reads the 8-channel chunk t % (D/8) of every
// (256 / (D/8))-th row; the CTA's maxima meet in shared memory, then once per channel in device memory.
// Non-negative floats order like their bit patterns, so an unsigned atomic max finds the float max.
__global__ void __launch_bounds__(kThreads) channel_absmax_kernel(StridedInput v, bool vector_loads,
                                                                  const float* mean, float* absmax,
                                                                  int rows_per_cta) {
  __shared__ unsigned channel_bits[kMaxHeadDim];
  const int head = blockIdx.y, batch = blockIdx.z;
  const int d = v.head_dim, chunks_per_row = d / kChunk, rows_per_pass = kThreads / chunks_per_row;
  const int64_t head_index = int64_t(batch) * v.heads + head;
  const int64_t in_base = batch * v.stride_b + head * v.stride_h;
  const int c = (threadIdx.x % chunks_per_row) * kChunk;
  if (threadIdx.x < d) channel_bits[threadIdx.x] = 0;
  __syncthreads();
  float m[kChunk], amax[kChunk];
#pragma unroll
  for (int i = 0; i < kChunk; ++i) m[i] = mean ? mean[head_index * d + c + i] : 0.0f, amax[i] = 0.0f;
  const int first = blockIdx.x * rows_per_cta, last = min(v.len, first + rows_per_cta);
  for (int row = first + int(threadIdx.x) / chunks_per_row; row < last; row += rows_per_pass) {
    float x[kChunk];
    load_chunk(v, in_base + row * v.stride_n + c, vector_loads, x);
#pragma unroll
    for (int i = 0; i < kChunk; ++i) amax[i] = fmaxf(amax[i], fabsf(x[i] - m[i]));
  }
#pragma unroll
  for (int i = 0; i < kChunk; ++i) atomicMax(&channel_bits[c + i], __float_as_uint(amax[i]));
  __syncthreads();
  if (threadIdx.x < d) atomicMax(reinterpret_cast<unsigned*>(absmax + head_index * d) + threadIdx.x, channel_bits[threadIdx.x]);
}

// One CTA writes one 64-key block of Vᵀ, [D][64 key positions]: FP8 scaled per channel with the keys of each
// 32-key chunk permuted (kv_key_at_position names the key at a position), or fp16 in key order. The block
// is staged through shared memory: read as 8-channel chunks of a key, written as four consecutive positions
// of a channel per store.
template <bool kFp8>
__global__ void __launch_bounds__(kThreads) transpose_v_kernel(StridedInput v, bool vector_loads, const float* mean,
                                                               const float* absmax, void* values) {
  __shared__ float tile[kKBlock][kMaxHeadDim + 1];  // +1: column reads spread over the banks
  __shared__ float channel_mean[kMaxHeadDim], channel_scale[kMaxHeadDim];  // once per CTA, not per element
  const int tile_index = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int d = v.head_dim, chunks_per_row = d / kChunk;
  const int64_t head_index = int64_t(batch) * v.heads + head;
  const int64_t in_base = batch * v.stride_b + head * v.stride_h;
  if (threadIdx.x < d) {
    channel_mean[threadIdx.x] = mean ? mean[head_index * d + threadIdx.x] : 0.0f;
    if constexpr (kFp8) {
      const float amax = absmax[head_index * d + threadIdx.x];
      channel_scale[threadIdx.x] = amax > 0.0f ? kFp8Max / amax : 0.0f;
    }
  }
  __syncthreads();
  for (int chunk = threadIdx.x; chunk < kKBlock * chunks_per_row; chunk += kThreads) {
    const int key = chunk / chunks_per_row, c = (chunk % chunks_per_row) * kChunk, row = tile_index * kKBlock + key;
    float x[kChunk] = {};
    if (row < v.len) {
      load_chunk(v, in_base + row * v.stride_n + c, vector_loads, x);
#pragma unroll
      for (int i = 0; i < kChunk; ++i) {
        const float value = mean ? x[i] - channel_mean[c + i] : x[i];
        x[i] = kFp8 ? value * channel_scale[c + i] : value;
      }
    }
#pragma unroll
    for (int i = 0; i < kChunk; ++i) tile[key][c + i] = x[i];
  }
  __syncthreads();
  const int64_t padded_len = int64_t(gridDim.x) * kKBlock;
  const int64_t first = head_index * d * padded_len + int64_t(tile_index) * kKBlock;
  constexpr int kGroups = kKBlock / 4;  // four positions per store
  for (int i = threadIdx.x; i < d * kGroups; i += kThreads) {
    const int c = i / kGroups, position = (i % kGroups) * 4;
    const int64_t at = first + int64_t(c) * padded_len + position;
    if constexpr (kFp8) {
      uint32_t packed = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int key = (position & ~31) | kv_key_at_position((position + j) & 31);
        packed |= uint32_t(__nv_fp8_e4m3(tile[key][c]).__x) << (8 * j);
      }
      *reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(values) + at) = packed;
    } else {
      const __half2 lo = __floats2half2_rn(tile[position][c], tile[position + 1][c]);
      const __half2 hi = __floats2half2_rn(tile[position + 2][c], tile[position + 3][c]);
      *reinterpret_cast<uint2*>(static_cast<__half*>(values) + at) =
          make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
    }
  }
}

// Whether every 8-channel chunk of x starts on a 16-byte boundary (then one vector load reads it).
bool chunks_aligned(const StridedInput& x) {
  const bool strides = x.stride_b % kChunk == 0 && x.stride_h % kChunk == 0 && x.stride_n % kChunk == 0;
  return strides && reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
}

}  // namespace

void quantize_rows(const StridedInput& x, const float* mean, bool mean_per_block, bool is_key,
                   Granularity granularity, bool int4, int8_t* values, float* scales, cudaStream_t stream) {
  const int tiles = x.head_dim == 64 ? tiles_per_cta(64) : tiles_per_cta(128);
  const int64_t rows_per_cta = int64_t(tiles) * kQBlock;
  const dim3 grid(unsigned((x.len + rows_per_cta - 1) / rows_per_cta), unsigned(x.heads), unsigned(x.batch));
  const auto kernel = x.head_dim == 64 ? quantize_rows_kernel<64> : quantize_rows_kernel<128>;
  kernel<<<grid, kThreads, 0, stream>>>(x, chunks_aligned(x), mean, mean_per_block, is_key, granularity, int4, values,
                                        scales);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

void convert_v_fp16(const StridedInput& v, const float* mean, bool transposed, void* values, cudaStream_t stream) {
  const dim3 grid(unsigned((v.len + kKBlock - 1) / kKBlock), unsigned(v.heads), unsigned(v.batch));
  if (transposed)
    transpose_v_kernel<false><<<grid, kThreads, 0, stream>>>(v, chunks_aligned(v), mean, nullptr, values);
  else
    convert_v_fp16_kernel<<<grid, kThreads, 0, stream>>>(v, chunks_aligned(v), mean, static_cast<__half*>(values));
  SAGEVID_CUDA_CHECK_LAUNCH();
}

void channel_absmax(const StridedInput& v, const float* mean, float* absmax, cudaStream_t stream) {
  SAGEVID_CUDA_CHECK(
      cudaMemsetAsync(absmax, 0, sizeof(float) * size_t(v.batch) * v.heads * v.head_dim, stream));
  constexpr int rows_per_cta = 256;
  const dim3 grid(unsigned((v.len + rows_per_cta - 1) / rows_per_cta), unsigned(v.heads), unsigned(v.batch));
  channel_absmax_kernel<<<grid, kThreads, 0, stream>>>(v, chunks_aligned(v), mean, absmax, rows_per_cta);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

void quantize_v_fp8(const StridedInput& v, const float* mean, const float* absmax, uint8_t* values,
                    cudaStream_t stream) {
  const dim3 grid(unsigned((v.len + kKBlock - 1) / kKBlock), unsigned(v.heads), unsigned(v.batch));
  transpose_v_kernel<true><<<grid, kThreads, 0, stream>>>(v, chunks_aligned(v), mean, absmax, values);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace sagevid::kernels::sage2::detail
