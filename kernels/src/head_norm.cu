// layer_norm_heads on CUDA: each row (one token of one head) is held by d/8 lanes of a warp, 8 elements (16
// bytes) per lane, so a row is read once, reduced with shuffles and written once.
#include "head_norm_kernel.h"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPerLane = 8;

template <typename T>
struct Pack {  // 8 elements of T in 16 bytes
  using Pair = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  Pair pairs[kPerLane / 2];

  __device__ void to_float(float (&v)[kPerLane]) const {
#pragma unroll
    for (int i = 0; i < kPerLane / 2; ++i) {
      float2 f;
      if constexpr (std::is_same_v<T, __half>) f = __half22float2(pairs[i]);
      else f = __bfloat1622float2(pairs[i]);
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
    }
  }
  __device__ static Pack from_float(const float (&v)[kPerLane]) {
    Pack p;
#pragma unroll
    for (int i = 0; i < kPerLane / 2; ++i) {
      if constexpr (std::is_same_v<T, __half>) p.pairs[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
      else p.pairs[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
    }
    return p;
  }
};

template <typename T>
__device__ __forceinline__ void load_floats(const T* p, float (&v)[kPerLane]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  reinterpret_cast<const Pack<T>&>(raw).to_float(v);
}

// The sum over the lanes of one row (aligned groups of `lanes`, a power of two); every lane of the warp calls.
__device__ __forceinline__ float row_sum(float s, int lanes) {
  for (int offset = lanes / 2; offset > 0; offset /= 2) s += __shfl_xor_sync(0xffffffffu, s, offset);
  return s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_heads_kernel(const HeadNormArgs a) {
  const int lanes = a.dim / kPerLane;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / lanes) + threadIdx.x / lanes;
  const int first = (threadIdx.x % lanes) * kPerLane;  // this lane's first element of the row
  const bool active = row < a.rows;  // inactive lanes still take part in the shuffles
  const int64_t token = row % a.length, head = row / a.length % a.heads, batch = row / a.length / a.heads;

  float v[kPerLane] = {};
  if (active)
    load_floats(
        static_cast<const T*>(a.x) + batch * a.stride_batch + head * a.stride_head + token * a.stride_token + first, v);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) sum += v[i];
  const float mean = row_sum(sum, lanes) / a.dim;
  float squares = 0.0f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) squares += (v[i] - mean) * (v[i] - mean);
  const float rstd = rsqrtf(row_sum(squares, lanes) / a.dim + a.eps);
  if (!active) return;

  float w[kPerLane], b[kPerLane];
  load_floats(static_cast<const T*>(a.weight) + first, w);
  load_floats(static_cast<const T*>(a.bias) + first, b);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) v[i] = (v[i] - mean) * rstd * w[i] + b[i];
  if (a.cos != nullptr && token >= a.first_token) {
    Pack<T>::from_float(v).to_float(v);  // the norm's output is rounded to T before the rotation, as in torch
    const int64_t at = (token - a.first_token) * a.dim + first;
    float c[kPerLane], s[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; i += 4) {
      *reinterpret_cast<float4*>(c + i) = *reinterpret_cast<const float4*>(a.cos + at + i);
      *reinterpret_cast<float4*>(s + i) = *reinterpret_cast<const float4*>(a.sin + at + i);
    }
    // x * cos + (-im, re) * sin, each product and the sum rounded on their own as torch's separate ops are.
#pragma unroll
    for (int i = 0; i < kPerLane; i += 2) {
      const float re = v[i], im = v[i + 1];
      v[i] = __fadd_rn(__fmul_rn(re, c[i]), __fmul_rn(-im, s[i]));
      v[i + 1] = __fadd_rn(__fmul_rn(im, c[i + 1]), __fmul_rn(re, s[i + 1]));
    }
  }
  *reinterpret_cast<Pack<T>*>(static_cast<T*>(a.out) + row * a.dim + first) = Pack<T>::from_float(v);
}

template <typename T>
void launch(const HeadNormArgs& args, cudaStream_t stream) {
  const int64_t rows_per_cta = kThreads / (args.dim / kPerLane);
  const int64_t ctas = (args.rows + rows_per_cta - 1) / rows_per_cta;
  layer_norm_heads_kernel<T><<<unsigned(ctas), kThreads, 0, stream>>>(args);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

void layer_norm_heads(const HeadNormArgs& args, HeadElement element, cudaStream_t stream) {
  if (args.rows == 0) return;
  if (element == HeadElement::fp16) launch<__half>(args, stream);
  else launch<__nv_bfloat16>(args, stream);
}

}  // namespace sagevid::kernels::detail
