#pragma once
// Device helpers of the row-wise kernels (norms, quantization): element conversions, 16-byte pieces of
// fp16/bf16 as 8 floats, sums and maxima over lanes of a warp or over a CTA, and rows to FP8 E4M3 with a scale
// each (sagevid/kernels/fp8_rows.h).
#include "sagevid/kernels/scale_divisor.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

namespace sagevid::kernels::detail {

constexpr int kPieceElements = 8;  // fp16/bf16 elements in 16 bytes

template <typename T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else if constexpr (std::is_same_v<T, __half>) return __half2float(x);
  else return __bfloat162float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(x);
  else return __float2bfloat16_rn(x);
}

// x as T stores it: what a torch op writing T leaves for the next op to read.
template <typename T>
__device__ __forceinline__ float rounded(float x) {
  return to_float(from_float<T>(x));
}

// A 16-byte piece of 8 fp16/bf16 elements, as floats and back: a row can stay in registers as pieces, half the
// registers of its floats, where its values are exactly T's.
template <typename T>
__device__ __forceinline__ void unpack_piece(const uint4& raw, float (&v)[kPieceElements]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // a bf16 is a float's upper half: one instruction each
    const uint32_t* pairs = reinterpret_cast<const uint32_t*>(&raw);
#pragma unroll
    for (int p = 0; p < kPieceElements / 2; ++p) {
      v[2 * p] = __uint_as_float(pairs[p] << 16);
      v[2 * p + 1] = __uint_as_float(pairs[p] & 0xffff0000u);
    }
  } else {
    const T* elements = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) v[e] = to_float(elements[e]);
  }
}

template <typename T>
__device__ __forceinline__ uint4 pack_piece(const float (&v)[kPieceElements]) {
  uint4 raw;
  T* elements = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) elements[e] = from_float<T>(v[e]);
  return raw;
}

// Each of v rounded to T, as rounded() does one value, but converted in pairs on the FMA pipe (one value's
// conversion goes to the multi-function unit, which the row kernels' reciprocals and exponentials need).
template <typename T>
__device__ __forceinline__ void round_piece(float (&v)[kPieceElements]) {
  unpack_piece<T>(pack_piece<T>(v), v);
}

// 8 elements of fp16/bf16 at a 16-byte aligned address, as floats.
template <typename T>
__device__ __forceinline__ void load_piece(const T* p, float (&v)[kPieceElements]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);  // one 16-byte load, not eight through the reference
  unpack_piece<T>(raw, v);
}

template <typename T>
__device__ __forceinline__ void store_piece(T* p, const float (&v)[kPieceElements]) {
  *reinterpret_cast<uint4*>(p) = pack_piece<T>(v);
}

// op over the v of each aligned group of `lanes` lanes (a power of two, at most 32), in every lane of the group.
// Every lane of the warp calls.
template <typename Op>
__device__ __forceinline__ float lanes_reduce(float v, Op op, int lanes = 32) {
  for (int offset = lanes / 2; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// op over every thread's v, in every thread of a CTA of kThreads. Call from all threads, as any number of
// times as needed: the shared partials are reused only after every thread has read them.
template <int kThreads, typename Op>
__device__ __forceinline__ float cta_reduce(float v, Op op) {
  v = lanes_reduce(v, op);
  __shared__ float partial[kThreads / 32];
  __syncthreads();
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = partial[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) v = op(v, partial[w]);
  return v;
}

struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

constexpr float kFp8Max = 448.0f;  // E4M3's largest finite value

// A row's FP8 scale from its absmax: the absmax lands on 448; an all-zero row keeps 1.
__device__ __forceinline__ float fp8_row_scale(float amax) { return amax > 0.0f ? amax / kFp8Max : 1.0f; }

// f(divide) with `divide` the row's v -> v / scale: a ScaleDivisor where it gives the division's quotients, else
// the division itself (f is compiled for both; the choice is made once per row).
template <typename F>
__device__ __forceinline__ void with_divisor(float scale, F f) {
  const ScaleDivisor divisor(scale);
  if (divisor.exact()) f(divisor);
  else f(Division{scale});
}

// v / scale lies within ±448 up to rounding, and E4M3's conversion saturates that to its largest value.
template <typename Divide>
__device__ __forceinline__ __nv_fp8_e4m3 to_fp8(float v, const Divide& divide) {
  return __nv_fp8_e4m3(divide(v));
}

// A piece of a row as its 8 E4M3 bytes, converted in pairs (one instruction each; E4M3's conversion of one
// value is a pair's with a zero beside it).
template <typename Divide>
__device__ __forceinline__ uint2 fp8_piece(const float (&v)[kPieceElements], const Divide& divide) {
  __nv_fp8x2_storage_t pairs[kPieceElements / 2];
#pragma unroll
  for (int e = 0; e < kPieceElements; e += 2)
    pairs[e / 2] = __nv_cvt_float2_to_fp8x2(make_float2(divide(v[e]), divide(v[e + 1])), __NV_SATFINITE, __NV_E4M3);
  return *reinterpret_cast<const uint2*>(pairs);
}

}  // namespace sagevid::kernels::detail
