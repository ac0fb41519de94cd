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
  const T* elements = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) v[e] = to_float(elements[e]);
}

template <typename T>
__device__ __forceinline__ uint4 pack_piece(const float (&v)[kPieceElements]) {
  uint4 raw;
  T* elements = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) elements[e] = from_float<T>(v[e]);
  return raw;
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

// A piece of a row as its 8 E4M3 bytes.
template <typename Divide>
__device__ __forceinline__ uint2 fp8_piece(const float (&v)[kPieceElements], const Divide& divide) {
  __nv_fp8_e4m3 bytes[kPieceElements];
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) bytes[e] = to_fp8(v[e], divide);
  return *reinterpret_cast<const uint2*>(bytes);
}

}  // namespace sagevid::kernels::detail
