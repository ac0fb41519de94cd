// Per-row FP8 quantization of activations, one CTA per row. Rows of fp16/bf16 in 16-byte pieces that fit the
// CTA's registers are read once and kept there between the absmax and the rounding; other rows are read twice
// (the second read hits the cache).
#include "fp8_rows_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_fp8.h>

#include <type_traits>

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPiecesPerThread = 8;  // rows up to kThreads * 64 elements stay in registers

// torch's tanh GELU in fp32 (0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))), rounded to T as torch stores it.
template <typename T>
__device__ __forceinline__ float activated(float v, bool gelu) {
  if (!gelu) return v;
  const float inner = 0.7978845608028654f * (v + 0.044715f * (v * v * v));
  return rounded<T>(0.5f * v * (1.0f + tanhf(inner)));
}

// Any element type and alignment: the row read twice.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    quantize_rows_kernel(const T* x, int64_t row_stride, int cols, bool gelu, __nv_fp8_e4m3* values, float* scales) {
  const T* row = x + blockIdx.x * row_stride;
  float amax = 0.0f;
  for (int c = threadIdx.x; c < cols; c += kThreads) amax = fmaxf(amax, fabsf(activated<T>(to_float(row[c]), gelu)));
  const float scale = fp8_row_scale(cta_reduce<kThreads>(amax, Max()));
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  __nv_fp8_e4m3* out = values + int64_t(blockIdx.x) * cols;
  with_divisor(scale, [&](const auto& divide) {
    for (int c = threadIdx.x; c < cols; c += kThreads) out[c] = to_fp8(activated<T>(to_float(row[c]), gelu), divide);
  });
}

// fp16/bf16 rows of whole 16-byte pieces, at most kThreads * kPiecesPerThread of them: read once into registers.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    quantize_rows_in_registers_kernel(const T* x, int64_t row_stride, int cols, bool gelu, __nv_fp8_e4m3* values,
                                      float* scales) {
  const int pieces = cols / kPieceElements;
  const T* row = x + blockIdx.x * row_stride;
  float v[kPiecesPerThread][kPieceElements];
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < kPiecesPerThread; ++i) {
    const int piece = threadIdx.x + i * kThreads;
    if (piece >= pieces) break;
    load_piece(row + piece * kPieceElements, v[i]);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) {
      v[i][e] = activated<T>(v[i][e], gelu);
      amax = fmaxf(amax, fabsf(v[i][e]));
    }
  }
  const float scale = fp8_row_scale(cta_reduce<kThreads>(amax, Max()));
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  __nv_fp8_e4m3* out = values + int64_t(blockIdx.x) * cols;
  with_divisor(scale, [&](const auto& divide) {
#pragma unroll
    for (int i = 0; i < kPiecesPerThread; ++i) {
      const int piece = threadIdx.x + i * kThreads;
      if (piece >= pieces) break;
      *reinterpret_cast<uint2*>(out + piece * kPieceElements) = fp8_piece(v[i], divide);
    }
  });
}

template <typename T>
void launch(const void* x, int rows, int64_t row_stride, int cols, bool gelu, uint8_t* values, float* scales,
            cudaStream_t stream) {
  const T* typed = static_cast<const T*>(x);
  auto* out = reinterpret_cast<__nv_fp8_e4m3*>(values);
  if constexpr (!std::is_same_v<T, float>) {
    const bool in_pieces = cols % kPieceElements == 0 && row_stride % kPieceElements == 0 &&
                           reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                           cols <= kThreads * kPiecesPerThread * kPieceElements;
    if (in_pieces) {
      quantize_rows_in_registers_kernel<T>
          <<<unsigned(rows), kThreads, 0, stream>>>(typed, row_stride, cols, gelu, out, scales);
      SAGEVID_CUDA_CHECK_LAUNCH();
      return;
    }
  }
  quantize_rows_kernel<T><<<unsigned(rows), kThreads, 0, stream>>>(typed, row_stride, cols, gelu, out, scales);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

void quantize_rows_fp8(const void* x, RowElement element, int rows, int64_t row_stride, int cols, bool gelu,
                       uint8_t* values, float* scales, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  switch (element) {
    case RowElement::fp32: return launch<float>(x, rows, row_stride, cols, gelu, values, scales, stream);
    case RowElement::fp16: return launch<__half>(x, rows, row_stride, cols, gelu, values, scales, stream);
    case RowElement::bf16: return launch<__nv_bfloat16>(x, rows, row_stride, cols, gelu, values, scales, stream);
  }
}

}  // namespace sagevid::kernels::detail
