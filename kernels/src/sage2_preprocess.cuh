#pragma once
// Device helpers of the preprocessing kernels (sage2_statistics.cu, sage2_quant.cu): 16-byte loads of eight
// channels of one token, and the fold of partial channel statistics.
#include "sage2_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sagevid::kernels::sage2::detail {

constexpr int kPreprocessThreads = 256;
constexpr int kMaxHeadDim = 128;

// Eight consecutive channels of one row: the unit every thread loads, smooths and quantizes, held as loaded
// (four 32-bit words of fp16/bf16 pairs: half the registers of floats) until used. Whole chunks are one
// 16-byte load when the input is aligned for it (chunks_aligned), else eight 2-byte loads.
constexpr int kChunk = 8;

__device__ __forceinline__ uint4 load_chunk(const uint16_t* p, bool vector_loads) {
  if (vector_loads) return *reinterpret_cast<const uint4*>(p);
  return make_uint4(p[0] | uint32_t(p[1]) << 16, p[2] | uint32_t(p[3]) << 16, p[4] | uint32_t(p[5]) << 16,
                    p[6] | uint32_t(p[7]) << 16);
}

__device__ __forceinline__ uint4 load_chunk(const StridedInput& x, int64_t index, bool vector_loads) {
  return load_chunk(static_cast<const uint16_t*>(x.data) + index, vector_loads);
}

template <InputType kType>
__device__ __forceinline__ void unpack_chunk(uint4 raw, float (&out)[kChunk]) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (kType == InputType::bf16) {  // a bf16 is the high half of its float
      out[2 * i] = __uint_as_float(words[i] << 16), out[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
    } else {
      const float2 pair = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
      out[2 * i] = pair.x, out[2 * i + 1] = pair.y;
    }
  }
}

__device__ __forceinline__ void unpack_chunk(uint4 raw, InputType type, float (&out)[kChunk]) {
  type == InputType::bf16 ? unpack_chunk<InputType::bf16>(raw, out) : unpack_chunk<InputType::fp16>(raw, out);
}

// Whether every 8-channel chunk of x starts on a 16-byte boundary (then one vector load reads it).
inline bool chunks_aligned(const StridedInput& x) {
  const bool strides = x.stride_b % kChunk == 0 && x.stride_h % kChunk == 0 && x.stride_n % kChunk == 0;
  return strides && reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
}

// Channel c of (batch, head) head_index from its partials, in part order (every reader gets the same bits).
__device__ __forceinline__ float fold_mean(const ChannelPartials& p, int64_t head_index, int head_dim, int c) {
  const float* x = p.data + head_index * p.parts * head_dim + c;
  float sum = 0.0f;
#pragma unroll 8  // the loads in flight together; the sum keeps part order
  for (int i = 0; i < p.parts; ++i) sum += x[int64_t(i) * head_dim];
  return sum / p.divisor;
}

__device__ __forceinline__ float fold_max(const ChannelPartials& p, int64_t head_index, int head_dim, int c) {
  const float* x = p.data + head_index * p.parts * head_dim + c;
  float amax = 0.0f;
#pragma unroll 8
  for (int i = 0; i < p.parts; ++i) amax = fmaxf(amax, x[int64_t(i) * head_dim]);
  return amax;
}

}  // namespace sagevid::kernels::sage2::detail
