// Per-row FP8 quantization of activations: one CTA per row reads it twice (the absmax, then the values; the
// second read hits the cache).
#include "fp8_rows_kernel.h"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <type_traits>

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr float kFp8Max = 448.0f;

template <typename T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, float>) return x;
  else if constexpr (std::is_same_v<T, __half>) return __half2float(x);
  else return __bfloat162float(x);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(const T* x, int64_t row_stride, int cols,
                                                                  __nv_fp8_e4m3* values, float* scales) {
  const T* row = x + blockIdx.x * row_stride;
  float amax = 0.0f;
  for (int c = threadIdx.x; c < cols; c += kThreads) amax = fmaxf(amax, fabsf(to_float(row[c])));
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  __shared__ float warp_amax[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_amax[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = 0.0f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) amax = fmaxf(amax, warp_amax[w]);
  const float scale = amax > 0.0f ? amax / kFp8Max : 1.0f;
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  __nv_fp8_e4m3* out = values + int64_t(blockIdx.x) * cols;
  // x / scale lies within ±448 up to rounding, and E4M3 rounds that to its largest value.
  for (int c = threadIdx.x; c < cols; c += kThreads) out[c] = __nv_fp8_e4m3(to_float(row[c]) / scale);
}

template <typename T>
void launch(const void* x, int rows, int64_t row_stride, int cols, uint8_t* values, float* scales,
            cudaStream_t stream) {
  quantize_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(static_cast<const T*>(x), row_stride, cols,
                                                                reinterpret_cast<__nv_fp8_e4m3*>(values), scales);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

void quantize_rows_fp8(const void* x, RowElement element, int rows, int64_t row_stride, int cols, uint8_t* values,
                       float* scales, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  switch (element) {
    case RowElement::fp32: return launch<float>(x, rows, row_stride, cols, values, scales, stream);
    case RowElement::fp16: return launch<__half>(x, rows, row_stride, cols, values, scales, stream);
    case RowElement::bf16: return launch<__nv_bfloat16>(x, rows, row_stride, cols, values, scales, stream);
  }
}

}  // namespace sagevid::kernels::detail
