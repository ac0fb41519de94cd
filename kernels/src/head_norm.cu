// layer_norm_heads on CUDA: each row (one token of one head) is held by d/8 lanes of a warp, 8 elements (16
// bytes) per lane, so a row is read once, reduced with shuffles and written once.
#include "head_norm_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;

// The sum over the lanes of one row (aligned groups of `lanes`, a power of two); every lane of the warp calls.
__device__ __forceinline__ float row_sum(float s, int lanes) {
  for (int offset = lanes / 2; offset > 0; offset /= 2) s += __shfl_xor_sync(0xffffffffu, s, offset);
  return s;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_heads_kernel(const HeadNormArgs a) {
  const int lanes = a.dim / kPieceElements;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / lanes) + threadIdx.x / lanes;
  const int first = (threadIdx.x % lanes) * kPieceElements;  // this lane's first element of the row
  const bool active = row < a.rows;  // inactive lanes still take part in the shuffles
  const int64_t token = row % a.length, head = row / a.length % a.heads, batch = row / a.length / a.heads;

  float v[kPieceElements] = {};
  if (active)
    load_piece(
        static_cast<const T*>(a.x) + batch * a.stride_batch + head * a.stride_head + token * a.stride_token + first, v);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPieceElements; ++i) sum += v[i];
  const float mean = row_sum(sum, lanes) / a.dim;
  float squares = 0.0f;
#pragma unroll
  for (int i = 0; i < kPieceElements; ++i) squares += (v[i] - mean) * (v[i] - mean);
  const float rstd = rsqrtf(row_sum(squares, lanes) / a.dim + a.eps);
  if (!active) return;

  float w[kPieceElements], b[kPieceElements];
  load_piece(static_cast<const T*>(a.weight) + first, w);
  load_piece(static_cast<const T*>(a.bias) + first, b);
#pragma unroll
  for (int i = 0; i < kPieceElements; ++i) v[i] = (v[i] - mean) * rstd * w[i] + b[i];
  if (a.cos != nullptr && token >= a.first_token) {
#pragma unroll
    for (int i = 0; i < kPieceElements; ++i) v[i] = rounded<T>(v[i]);  // the norm's output, as torch stores it
    const int64_t at = (token - a.first_token) * a.dim + first;
    float c[kPieceElements], s[kPieceElements];
#pragma unroll
    for (int i = 0; i < kPieceElements; i += 4) {
      *reinterpret_cast<float4*>(c + i) = *reinterpret_cast<const float4*>(a.cos + at + i);
      *reinterpret_cast<float4*>(s + i) = *reinterpret_cast<const float4*>(a.sin + at + i);
    }
    // x * cos + (-im, re) * sin, each product and the sum rounded on their own as torch's separate ops are.
#pragma unroll
    for (int i = 0; i < kPieceElements; i += 2) {
      const float re = v[i], im = v[i + 1];
      v[i] = __fadd_rn(__fmul_rn(re, c[i]), __fmul_rn(-im, s[i]));
      v[i + 1] = __fadd_rn(__fmul_rn(im, c[i + 1]), __fmul_rn(re, s[i + 1]));
    }
  }
  store_piece(static_cast<T*>(a.out) + row * a.dim + first, v);
}

template <typename T>
void launch(const HeadNormArgs& args, cudaStream_t stream) {
  const int64_t rows_per_cta = kThreads / (args.dim / kPieceElements);
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
