// Per-row FP8 quantization of activations. fp16/bf16 rows of 16-byte pieces are read once by a warp (rows up to
// 3072 wide) or a CTA (up to 16384): their activated values stay in registers, packed as the element type that
// rounds them, from the absmax to the rounding. Other rows are read twice by a CTA each (the second read hits the
// cache).
#include "fp8_rows_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_fp8.h>

#include <type_traits>

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPiecesPerThread = 8;  // rows up to kThreads * 64 elements stay in a CTA's registers

// The tanh GELU, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), written as x·sigmoid(2·inner) =
// x / (1 + 2^(-2·log2(e)·inner)): one exponential and one reciprocal on the MUFU pipe and four FMA-pipe
// instructions, where tanhf costs about twenty. Both terms of 1 + 2^(...) are positive, so unlike 1 + tanh
// there is no cancellation for negative x: the value is within a few fp32 ulps of the exact one.
__device__ __forceinline__ float gelu_tanh(float x) {
  constexpr float kInner = 0.7978845608028654f, kCubic = 0.044715f, kLog2e = 1.4426950408889634f;
  constexpr float k = -2.0f * kLog2e * kInner;
  float exponential;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(exponential) : "f"(x * fmaf(x * x, k * kCubic, k)));
  return __fdividef(x, 1.0f + exponential);  // 0 (signed as x) where the exponential overflows: the GELU's limit
}

// The largest |element| of a piece of fp16/bf16, from its packed pairs: exact, and the piece need not be unpacked
// (nor its floats kept for the second phase).
template <typename T>
__device__ __forceinline__ float piece_absmax(const uint4& raw) {
  using Pair = std::conditional_t<std::is_same_v<T, __half>, __half2, __nv_bfloat162>;
  const Pair* pairs = reinterpret_cast<const Pair*>(&raw);
  Pair largest = __habs2(pairs[0]);
#pragma unroll
  for (int p = 1; p < kPieceElements / 2; ++p) largest = __hmax2(largest, __habs2(pairs[p]));
  return fmaxf(__low2float(largest), __high2float(largest));
}

// Any element type and alignment: the row read twice, each activated value rounded to T as torch stores it.
// Rare shapes only, so the activation is a parameter rather than a template argument.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    quantize_rows_kernel(const T* x, int64_t row_stride, int cols, bool gelu, __nv_fp8_e4m3* values, float* scales) {
  const T* row = x + blockIdx.x * row_stride;
  const auto value = [&](int c) { return gelu ? rounded<T>(gelu_tanh(to_float(row[c]))) : to_float(row[c]); };
  float amax = 0.0f;
  for (int c = threadIdx.x; c < cols; c += kThreads) amax = fmaxf(amax, fabsf(value(c)));
  const float scale = fp8_row_scale(cta_reduce<kThreads>(amax, Max()));
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  __nv_fp8_e4m3* out = values + int64_t(blockIdx.x) * cols;
  with_divisor(scale, [&](const auto& divide) {
    for (int c = threadIdx.x; c < cols; c += kThreads) out[c] = to_fp8(value(c), divide);
  });
}

// Who holds a row in registers: a warp for rows up to kWarpRowPieces pieces (eight rows a CTA, reduced by
// shuffles, no barrier: narrow rows would leave most of a CTA idle), else the whole CTA.
template <int kRowThreads>
struct RowGroup {
  static constexpr int kRowsPerCta = kThreads / kRowThreads;
  static constexpr int kPieces = kRowThreads == 32 ? 12 : kPiecesPerThread;  // pieces a thread holds at most
  // A row goes through its phases (load, absmax, reduction, store) one after another: co-resident CTAs hide the
  // latency. Four a multiprocessor where a thread holds eight pieces; a warp's twelve need the registers of three.
  static constexpr int kCtasPerMultiprocessor = kRowThreads == 32 ? 3 : 4;
  static __device__ __forceinline__ float max_over_row(float v) {
    if constexpr (kRowThreads == 32) return lanes_reduce(v, Max());
    else return cta_reduce<kThreads>(v, Max());
  }
};
constexpr int kWarpRowPieces = 32 * RowGroup<32>::kPieces;

// fp16/bf16 rows of whole 16-byte pieces that a RowGroup holds: read once. With the GELU the absmax is taken
// before its values are rounded to T: rounding is monotonic, so the rounded absmax is the rounded values' absmax.
template <typename T, bool kGelu, int kRowThreads>
__global__ void __launch_bounds__(kThreads, RowGroup<kRowThreads>::kCtasPerMultiprocessor)
    quantize_rows_in_registers_kernel(const T* x, int rows, int64_t row_stride, int cols, __nv_fp8_e4m3* values,
                                      float* scales) {
  using Group = RowGroup<kRowThreads>;
  const int64_t r = int64_t(blockIdx.x) * Group::kRowsPerCta + threadIdx.x / kRowThreads;
  if (r >= rows) return;  // a whole group: a warp (a CTA's row always exists)
  const int t = threadIdx.x % kRowThreads, pieces = cols / kPieceElements;
  const T* row = x + r * row_stride;
  uint4 held[Group::kPieces];
#pragma unroll
  for (int i = 0; i < Group::kPieces; ++i) {
    const int piece = t + i * kRowThreads;
    if (piece < pieces) held[i] = *reinterpret_cast<const uint4*>(row + piece * kPieceElements);
  }
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < Group::kPieces; ++i) {
    if (t + i * kRowThreads >= pieces) break;
    if constexpr (kGelu) {
      float v[kPieceElements];
      unpack_piece<T>(held[i], v);
#pragma unroll
      for (int e = 0; e < kPieceElements; ++e) {
        v[e] = gelu_tanh(v[e]);
        amax = fmaxf(amax, fabsf(v[e]));
      }
      held[i] = pack_piece<T>(v);
    } else {
      amax = fmaxf(amax, piece_absmax<T>(held[i]));
    }
  }
  const float scale = fp8_row_scale(rounded<T>(Group::max_over_row(amax)));
  if (t == 0) scales[r] = scale;
  __nv_fp8_e4m3* out = values + r * cols;
  with_divisor(scale, [&](const auto& divide) {
#pragma unroll
    for (int i = 0; i < Group::kPieces; ++i) {
      const int piece = t + i * kRowThreads;
      if (piece >= pieces) break;
      float v[kPieceElements];
      unpack_piece<T>(held[i], v);
      *reinterpret_cast<uint2*>(out + piece * kPieceElements) = fp8_piece(v, divide);
    }
  });
}

template <typename T, int kRowThreads>
void launch_in_registers(const T* x, int rows, int64_t row_stride, int cols, bool gelu, __nv_fp8_e4m3* values,
                         float* scales, cudaStream_t stream) {
  const auto kernel = gelu ? quantize_rows_in_registers_kernel<T, true, kRowThreads>
                           : quantize_rows_in_registers_kernel<T, false, kRowThreads>;
  const unsigned ctas =
      unsigned((int64_t(rows) + RowGroup<kRowThreads>::kRowsPerCta - 1) / RowGroup<kRowThreads>::kRowsPerCta);
  kernel<<<ctas, kThreads, 0, stream>>>(x, rows, row_stride, cols, values, scales);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch(const void* x, int rows, int64_t row_stride, int cols, bool gelu, uint8_t* values, float* scales,
            cudaStream_t stream) {
  const T* typed = static_cast<const T*>(x);
  auto* out = reinterpret_cast<__nv_fp8_e4m3*>(values);
  if constexpr (!std::is_same_v<T, float>) {
    const bool in_pieces =
        cols % kPieceElements == 0 && row_stride % kPieceElements == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
    if (in_pieces && cols <= kWarpRowPieces * kPieceElements)
      return launch_in_registers<T, 32>(typed, rows, row_stride, cols, gelu, out, scales, stream);
    if (in_pieces && cols <= kThreads * kPiecesPerThread * kPieceElements)
      return launch_in_registers<T, kThreads>(typed, rows, row_stride, cols, gelu, out, scales, stream);
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
