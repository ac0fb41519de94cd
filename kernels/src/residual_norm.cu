// residual_norm_modulate on CUDA. Each row is read and written once: its pieces stay in registers from the
// residual update through the statistics to the modulated output. Rows up to kWarpRowLimit wide (CogVideoX's
// 1920 and 3072) take one warp each: statistics by shuffles, no CTA barrier, and every load of a lane issued
// before the first is used. Wider rows take one CTA each, with CTA reductions.
#include "residual_norm_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPiecesPerThread = 4;  // the CTA kernel's rows: up to kThreads * 32 elements
constexpr int kWarps = kThreads / 32;
constexpr int kLanePieces = 12;  // the warp kernel's rows: up to 32 lanes * 12 pieces
constexpr int kWarpRowLimit = 32 * kLanePieces * kPieceElements;

template <typename T>
__device__ __forceinline__ const T* at_row(const RowsView& view, int64_t batch, int64_t row) {
  return static_cast<const T*>(view.data) + batch * view.batch_stride + row * view.row_stride;
}

// x += gate * update, rounded as torch's in-place addcmul stores the residual.
template <typename T>
__device__ __forceinline__ void add_gated(float (&x)[kPieceElements], const float (&update)[kPieceElements],
                                          const float (&gate)[kPieceElements]) {
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) x[e] = rounded<T>(x[e] + gate[e] * update[e]);
}

// x's piece at element `at` of its row, normed with (mean, rstd), then modulated: shift + norm(x) * (1 + scale).
template <typename T>
__device__ __forceinline__ void modulate(const ResidualNormArgs& a, int64_t batch, int at, float mean, float rstd,
                                         float (&x)[kPieceElements]) {
  float weight[kPieceElements], bias[kPieceElements], shift[kPieceElements], scale[kPieceElements];
  if (a.weight != nullptr) load_piece(static_cast<const T*>(a.weight) + at, weight);
  if (a.bias != nullptr) load_piece(static_cast<const T*>(a.bias) + at, bias);
  load_piece(at_row<T>(a.shift, batch, 0) + at, shift);
  load_piece(at_row<T>(a.scale, batch, 0) + at, scale);
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) {
    float normed = (x[e] - mean) * rstd;
    if (a.weight != nullptr) normed *= weight[e];
    if (a.bias != nullptr) normed += bias[e];
    // torch: layer_norm's output, then addcmul(shift, normed, 1 + scale), each rounded to T.
    x[e] = shift[e] + rounded<T>(normed) * rounded<T>(1.0f + scale[e]);
  }
}

// The warp kernel's row, as the pieces of T its lane holds (piece lane + 32 i): the residual, its gated update
// added and stored back where there is one. The residual's values are T's, so the pieces hold them exactly.
template <typename T>
__device__ __forceinline__ void load_updated_row(const ResidualNormArgs& a, int64_t batch, int64_t row, int lane,
                                                 uint4 (&x)[kLanePieces]) {
  const int pieces = a.dim / kPieceElements;
  const bool updated = a.update.data != nullptr;
  T* residual = const_cast<T*>(at_row<T>(a.residual, batch, row));
  uint4 update[kLanePieces];
#pragma unroll
  for (int i = 0; i < kLanePieces; ++i) {
    const int piece = lane + 32 * i;
    if (piece >= pieces) continue;
    x[i] = *reinterpret_cast<const uint4*>(residual + piece * kPieceElements);
    if (updated) update[i] = *reinterpret_cast<const uint4*>(at_row<T>(a.update, batch, row) + piece * kPieceElements);
  }
  if (!updated) return;
  // The gate is one row per batch, read by every row: from the cache, so it need not be in flight with the rest.
#pragma unroll
  for (int i = 0; i < kLanePieces; ++i) {
    const int piece = lane + 32 * i;
    if (piece >= pieces) continue;
    float v[kPieceElements], u[kPieceElements], g[kPieceElements];
    unpack_piece<T>(x[i], v);
    unpack_piece<T>(update[i], u);
    load_piece(at_row<T>(a.gate, batch, 0) + piece * kPieceElements, g);
    add_gated<T>(v, u, g);
    x[i] = pack_piece<T>(v);
    *reinterpret_cast<uint4*>(residual + piece * kPieceElements) = x[i];
  }
}

// The sum over the warp's row of f(element).
template <typename T, typename F>
__device__ __forceinline__ float row_sum(const uint4 (&x)[kLanePieces], int lane, int pieces, F f) {
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kLanePieces; ++i) {
    if (lane + 32 * i >= pieces) continue;
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) sum += f(v[e]);
  }
  return lanes_reduce(sum, Sum());
}

// Two CTAs a multiprocessor at the least: a row's pieces and its update's stay in registers without spilling.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) residual_norm_warp_kernel(const ResidualNormArgs a) {
  const int64_t index = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (index >= a.batch * a.rows) return;  // the whole warp: its shuffles need no other lanes
  const int64_t batch = index / a.rows, row = index % a.rows;
  const int lane = threadIdx.x % 32, pieces = a.dim / kPieceElements;
  uint4 x[kLanePieces];
  load_updated_row<T>(a, batch, row, lane, x);
  const float mean = row_sum<T>(x, lane, pieces, [](float v) { return v; }) / a.dim;
  const float variance = row_sum<T>(x, lane, pieces, [mean](float v) { return (v - mean) * (v - mean); }) / a.dim;
  const float rstd = rsqrtf(variance + a.eps);
  T* out = const_cast<T*>(at_row<T>(a.out, batch, row));
#pragma unroll
  for (int i = 0; i < kLanePieces; ++i) {
    const int piece = lane + 32 * i;
    if (piece >= pieces) continue;
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
    modulate<T>(a, batch, piece * kPieceElements, mean, rstd, v);
    store_piece(out + piece * kPieceElements, v);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) residual_norm_cta_kernel(const ResidualNormArgs a) {
  const int64_t batch = blockIdx.x / a.rows, row = blockIdx.x % a.rows;
  const int pieces = a.dim / kPieceElements;
  T* residual = const_cast<T*>(at_row<T>(a.residual, batch, row));
  float x[kPiecesPerThread][kPieceElements];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kPiecesPerThread; ++i) {
    const int at = (threadIdx.x + i * kThreads) * kPieceElements;
    if (at >= a.dim) break;
    load_piece(residual + at, x[i]);
    if (a.update.data != nullptr) {
      float update[kPieceElements], gate[kPieceElements];
      load_piece(at_row<T>(a.update, batch, row) + at, update);
      load_piece(at_row<T>(a.gate, batch, 0) + at, gate);
      add_gated<T>(x[i], update, gate);
      store_piece(residual + at, x[i]);
    }
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) sum += x[i][e];
  }
  const float mean = cta_reduce<kThreads>(sum, Sum()) / a.dim;
  float squares = 0.0f;
#pragma unroll
  for (int i = 0; i < kPiecesPerThread; ++i) {
    if ((threadIdx.x + i * kThreads) >= pieces) break;
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) squares += (x[i][e] - mean) * (x[i][e] - mean);
  }
  const float rstd = rsqrtf(cta_reduce<kThreads>(squares, Sum()) / a.dim + a.eps);

  T* out = const_cast<T*>(at_row<T>(a.out, batch, row));
#pragma unroll
  for (int i = 0; i < kPiecesPerThread; ++i) {
    const int at = (threadIdx.x + i * kThreads) * kPieceElements;
    if (at >= a.dim) break;
    modulate<T>(a, batch, at, mean, rstd, x[i]);
    store_piece(out + at, x[i]);
  }
}

template <typename T>
void launch(const ResidualNormArgs& args, cudaStream_t stream) {
  const int64_t rows = args.batch * args.rows;
  if (args.dim <= kWarpRowLimit) {
    residual_norm_warp_kernel<T><<<unsigned((rows + kWarps - 1) / kWarps), kThreads, 0, stream>>>(args);
  } else {
    residual_norm_cta_kernel<T><<<unsigned(rows), kThreads, 0, stream>>>(args);
  }
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool residual_norm_fits(int dim) {
  return dim > 0 && dim % kPieceElements == 0 && dim <= kThreads * kPiecesPerThread * kPieceElements;
}

void residual_norm_modulate(const ResidualNormArgs& args, NormElement element, cudaStream_t stream) {
  if (args.batch == 0 || args.rows == 0) return;
  if (element == NormElement::fp16) launch<__half>(args, stream);
  else launch<__nv_bfloat16>(args, stream);
}

}  // namespace sagevid::kernels::detail
