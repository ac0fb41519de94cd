// SageAttention2 preprocessing: Q/K smoothing + per-group INT8/INT4 quantization, and per-channel FP8
// quantization of V into the transposed, key-permuted layout the P·V MMA reads. Memory-bound kernels:
// each reads its input once (the V path twice: absmax, then quantize).
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

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// One CTA quantizes one 64-row tile of one (batch, head): smooth, find each group's absmax, round.
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(StridedInput x, const float* mean,
                                                                 bool mean_per_block, bool is_key,
                                                                 Granularity granularity, bool int4,
                                                                 int8_t* values, float* scales) {
  constexpr int kTile = kCtaQ;  // == kCtaK: Q and K tiles are both 64 rows
  static_assert(kCtaQ == kCtaK, "one tile size for Q and K");
  __shared__ float tile[kTile][kMaxHeadDim];
  __shared__ float row_absmax[kTile];
  __shared__ float group_scale[kTile];  // per-token: one group per row

  const int block = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int d = x.head_dim, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t in_base = batch * x.stride_b + head * x.stride_h;
  const int num_blocks = gridDim.x;
  const float* mean_row = nullptr;
  if (mean) mean_row = mean + (int64_t(batch) * x.heads + head) * (mean_per_block ? num_blocks : 1) * d +
                       (mean_per_block ? int64_t(block) * d : 0);

  // Load and smooth; rows past the sequence are padding (zero, excluded from every absmax).
  for (int i = threadIdx.x; i < kTile * d; i += kThreads) {
    const int r = i / d, c = i % d, row = block * kTile + r;
    float value = 0.0f;
    if (row < x.len) {
      value = load_input(x.data, x.type, in_base + row * x.stride_n + c);
      if (mean_row) value = value - mean_row[c];
    }
    tile[r][c] = value;
  }
  __syncthreads();
  for (int r = warp; r < kTile; r += kThreads / 32) {
    float m = 0.0f;
    for (int c = lane; c < d; c += 32) m = fmaxf(m, fabsf(tile[r][c]));
    m = warp_max(m);
    if (lane == 0) row_absmax[r] = m;
  }
  __syncthreads();

  const int groups = int(is_key ? k_groups_per_block(granularity) : q_groups_per_block(granularity));
  const float qmax = int4 ? float(kInt4Max) : float(kInt8Max);
  const int64_t head_index = int64_t(batch) * x.heads + head;
  if (threadIdx.x < groups) {
    const int g = threadIdx.x;
    float amax = 0.0f;
    for (int r = 0; r < kTile; ++r) {
      const int64_t local = is_key ? k_group(r, granularity) : q_group(r, granularity);
      if (local == g) amax = fmaxf(amax, row_absmax[r]);
    }
    group_scale[g] = amax;
    scales[(head_index * num_blocks + block) * groups + g] = amax > 0.0f ? amax / qmax : 1.0f;
  }
  __syncthreads();

  const int64_t padded_len = int64_t(num_blocks) * kTile;
  if (!int4) {
    int8_t* out = values + (head_index * padded_len + int64_t(block) * kTile) * d;
    for (int i = threadIdx.x; i < kTile * d; i += kThreads) {
      const int r = i / d, c = i % d;
      const float amax = group_scale[is_key ? k_group(r, granularity) : q_group(r, granularity)];
      const float inv = amax > 0.0f ? qmax / amax : 0.0f;
      out[i] = int8_t(max(-int(qmax), min(int(qmax), __float2int_rn(tile[r][c] * inv))));
    }
  } else {
    int8_t* out = values + (head_index * padded_len + int64_t(block) * kTile) * (d / 2);
    for (int i = threadIdx.x; i < kTile * d / 2; i += kThreads) {
      const int r = i / (d / 2), c = 2 * (i % (d / 2));
      const float amax = group_scale[is_key ? k_group(r, granularity) : q_group(r, granularity)];
      const float inv = amax > 0.0f ? qmax / amax : 0.0f;
      const int lo = max(-7, min(7, __float2int_rn(tile[r][c] * inv)));
      const int hi = max(-7, min(7, __float2int_rn(tile[r][c + 1] * inv)));
      out[i] = int8_t((lo & 0xF) | ((hi & 0xF) << 4));
    }
  }
}

// Non-negative floats order like their bit patterns, so an integer atomicMax finds the float max.
__global__ void channel_absmax_kernel(StridedInput v, const float* mean, float* absmax, int rows_per_cta) {
  const int head = blockIdx.y, batch = blockIdx.z;
  const int64_t head_index = int64_t(batch) * v.heads + head;
  const int64_t in_base = batch * v.stride_b + head * v.stride_h;
  const int first = blockIdx.x * rows_per_cta, last = min(v.len, first + rows_per_cta);
  for (int c = threadIdx.x; c < v.head_dim; c += blockDim.x) {
    const float m = mean ? mean[head_index * v.head_dim + c] : 0.0f;
    float amax = 0.0f;
    for (int row = first; row < last; ++row)
      amax = fmaxf(amax, fabsf(load_input(v.data, v.type, in_base + row * v.stride_n + c) - m));
    atomicMax(reinterpret_cast<int*>(absmax + head_index * v.head_dim + c), __float_as_int(amax));
  }
}

// One CTA writes one 64-key tile of Vᵀ: [D][64 permuted key positions] FP8. The tile is staged through shared
// memory so that both the reads (along channels) and the writes (along keys) are coalesced.
__global__ void __launch_bounds__(kThreads) quantize_v_fp8_kernel(StridedInput v, const float* mean,
                                                                  const float* absmax, uint8_t* values) {
  __shared__ float tile[kCtaK][kMaxHeadDim + 1];  // +1: column reads hit 32 different banks
  const int tile_index = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int d = v.head_dim;
  const int64_t head_index = int64_t(batch) * v.heads + head;
  const int64_t in_base = batch * v.stride_b + head * v.stride_h;
  for (int i = threadIdx.x; i < kCtaK * d; i += kThreads) {
    const int key = i / d, c = i % d, row = tile_index * kCtaK + key;
    float scaled = 0.0f;
    if (row < v.len) {
      const float amax = absmax[head_index * d + c];
      const float inv = amax > 0.0f ? kFp8Max / amax : 0.0f;
      float value = load_input(v.data, v.type, in_base + row * v.stride_n + c);
      if (mean) value = value - mean[head_index * d + c];
      scaled = value * inv;
    }
    tile[key][c] = scaled;
  }
  __syncthreads();
  const int64_t padded_len = int64_t(gridDim.x) * kCtaK;
  uint8_t* out = values + head_index * d * padded_len + int64_t(tile_index) * kCtaK;
  for (int i = threadIdx.x; i < kCtaK * d; i += kThreads) {
    const int key = i % kCtaK, c = i / kCtaK;
    const int position = (key & ~31) | kv_permuted_position(key & 31);
    out[int64_t(c) * padded_len + position] = __nv_fp8_e4m3(tile[key][c]).__x;
  }
}

}  // namespace

void quantize_rows(const StridedInput& x, const float* mean, bool mean_per_block, bool is_key,
                   Granularity granularity, bool int4, int8_t* values, float* scales, cudaStream_t stream) {
  const dim3 grid(unsigned((x.len + kCtaQ - 1) / kCtaQ), unsigned(x.heads), unsigned(x.batch));
  quantize_rows_kernel<<<grid, kThreads, 0, stream>>>(x, mean, mean_per_block, is_key, granularity, int4,
                                                      values, scales);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

void channel_absmax(const StridedInput& v, const float* mean, float* absmax, cudaStream_t stream) {
  SAGEVID_CUDA_CHECK(
      cudaMemsetAsync(absmax, 0, sizeof(float) * size_t(v.batch) * v.heads * v.head_dim, stream));
  constexpr int rows_per_cta = 256;
  const dim3 grid(unsigned((v.len + rows_per_cta - 1) / rows_per_cta), unsigned(v.heads), unsigned(v.batch));
  channel_absmax_kernel<<<grid, 128, 0, stream>>>(v, mean, absmax, rows_per_cta);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

void quantize_v_fp8(const StridedInput& v, const float* mean, const float* absmax, uint8_t* values,
                    cudaStream_t stream) {
  const dim3 grid(unsigned((v.len + kCtaK - 1) / kCtaK), unsigned(v.heads), unsigned(v.batch));
  quantize_v_fp8_kernel<<<grid, kThreads, 0, stream>>>(v, mean, absmax, values);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace sagevid::kernels::sage2::detail
