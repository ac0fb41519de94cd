// residual_norm_modulate on CUDA. Each row is read and written once: its pieces stay in registers from the
// residual update through the statistics to the modulated output. Rows up to kPairRowLimit wide (CogVideoX's
// 1920 and 3072) take two warps each: statistics by shuffles and an exchange between the pair through shared
// memory (no CTA barrier), every load of a lane issued before the first is used; they may go out as FP8 rows
// with a scale each instead (residual_norm_modulate_fp8). Wider rows take one CTA each, with CTA reductions.
#include "residual_norm_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <stdexcept>
#include <string>

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPiecesPerThread = 4;  // the CTA kernel's rows: up to kThreads * 32 elements
constexpr int kWarps = kThreads / 32;
// The pair kernel's rows: two warps a row (its 64 lanes), four rows a CTA, up to 64 lanes * 6 pieces. Two warps
// rather than one halve the registers a row takes, so three CTAs fit a multiprocessor instead of two: the
// kernel is bound by latency, and more warps hide more of it.
constexpr int kRowWarps = 2;
constexpr int kRowLanes = 32 * kRowWarps;
constexpr int kRowsPerCta = kWarps / kRowWarps;
constexpr int kLanePieces = 6;
constexpr int kPairRowLimit = kRowLanes * kLanePieces * kPieceElements;

template <typename T>
__device__ __forceinline__ const T* at_row(const RowsView& view, int64_t batch, int64_t row) {
  return static_cast<const T*>(view.data) + batch * view.batch_stride + row * view.row_stride;
}

// x += gate * update in fp32; rounding it to T, as torch's in-place addcmul stores the residual, is the caller's
// (the pair kernel's packing does it).
__device__ __forceinline__ void add_gated(float (&x)[kPieceElements], const float (&update)[kPieceElements],
                                          const float (&gate)[kPieceElements]) {
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) x[e] += gate[e] * update[e];
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
  // torch: layer_norm's output, then addcmul(shift, normed, 1 + scale), each of the three rounded to T.
  float normed[kPieceElements];
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) {
    normed[e] = (x[e] - mean) * rstd;
    if (a.weight != nullptr) normed[e] *= weight[e];
    if (a.bias != nullptr) normed[e] += bias[e];
    scale[e] += 1.0f;
  }
  round_piece<T>(normed);
  round_piece<T>(scale);
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) x[e] = shift[e] + normed[e] * scale[e];
}

// Piece `piece` of a row of T.
template <typename T>
__device__ __forceinline__ uint4* piece_of(const T* row, int piece) {
  return reinterpret_cast<uint4*>(const_cast<T*>(row) + piece * kPieceElements);
}

// f(i, piece) for each piece of the pair's row its lane (0 to 63) holds: piece lane + 64 i, in slot i of its
// registers.
template <typename F>
__device__ __forceinline__ void each_lane_piece(int lane, int pieces, F f) {
#pragma unroll
  for (int i = 0; i < kLanePieces; ++i)
    if (lane + kRowLanes * i < pieces) f(i, lane + kRowLanes * i);
}

// Shared floats through which a row's two warps combine their lanes' reductions: one slot per reduction of a
// row, so none waits for another's reads before writing.
using PairSlots = float[kRowsPerCta][kRowWarps];

// Waits for both warps of the pair: its own named barrier (0 is the CTA's), an immediate so that ptxas reserves
// only the barriers used.
template <int kPair>
__device__ __forceinline__ void pair_barrier() {
  asm volatile("bar.sync %0, %1;" ::"n"(1 + kPair), "n"(kRowLanes) : "memory");
}
__device__ __forceinline__ void pair_barrier(int pair) {
  static_assert(kRowsPerCta == 4);
  switch (pair) {
    case 0: return pair_barrier<0>();
    case 1: return pair_barrier<1>();
    case 2: return pair_barrier<2>();
    default: return pair_barrier<3>();
  }
}

// op over v of the 64 lanes of the calling pair, in every one of them. Both warps of the pair call.
template <typename Op>
__device__ __forceinline__ float pair_reduce(float v, Op op, PairSlots& slots) {
  v = lanes_reduce(v, op);
  const int pair = threadIdx.x / kRowLanes;
  if (threadIdx.x % 32 == 0) slots[pair][threadIdx.x / 32 % kRowWarps] = v;
  pair_barrier(pair);
  return op(slots[pair][0], slots[pair][1]);
}

// The pair kernel's row, as the pieces of T its lane holds: the residual, its gated update added and stored back
// where there is one. The residual's values are T's, so the pieces hold them exactly.
template <typename T>
__device__ __forceinline__ void load_updated_row(const ResidualNormArgs& a, int64_t batch, int64_t row, int lane,
                                                 uint4 (&x)[kLanePieces]) {
  const int pieces = a.dim / kPieceElements;
  const T* residual = at_row<T>(a.residual, batch, row);
  const bool updated = a.update.data != nullptr;
  uint4 update[kLanePieces];
  each_lane_piece(lane, pieces, [&](int i, int piece) {
    x[i] = *piece_of(residual, piece);
    if (updated) update[i] = *piece_of(at_row<T>(a.update, batch, row), piece);
  });
  if (!updated) return;
  // The gate is one row per batch, read by every row: from the cache, so it need not be in flight with the rest.
  each_lane_piece(lane, pieces, [&](int i, int piece) {
    float v[kPieceElements], u[kPieceElements], g[kPieceElements];
    unpack_piece<T>(x[i], v);
    unpack_piece<T>(update[i], u);
    load_piece(at_row<T>(a.gate, batch, 0) + piece * kPieceElements, g);
    add_gated(v, u, g);
    x[i] = pack_piece<T>(v);
    *piece_of(residual, piece) = x[i];
  });
}

// The sum over the pair's row of f(element).
template <typename T, typename F>
__device__ __forceinline__ float row_sum(const uint4 (&x)[kLanePieces], int lane, int pieces, PairSlots& slots, F f) {
  float sum = 0.0f;
  each_lane_piece(lane, pieces, [&](int i, int) {
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) sum += f(v[e]);
  });
  return pair_reduce(sum, Sum(), slots);
}

// The pair's row normed with (mean, rstd) and modulated, each piece rounded to T as the output stores it, into x.
template <typename T>
__device__ __forceinline__ void modulate_row(const ResidualNormArgs& a, int64_t batch, int lane, float mean, float rstd,
                                             uint4 (&x)[kLanePieces]) {
  each_lane_piece(lane, a.dim / kPieceElements, [&](int i, int piece) {
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
    modulate<T>(a, batch, piece * kPieceElements, mean, rstd, v);
    x[i] = pack_piece<T>(v);
  });
}

// The modulated row x as FP8: its absmax over the pair, then its scale and E4M3 bytes, as quantize_rows_fp8 makes
// them from the row of T.
template <typename T>
__device__ __forceinline__ void store_fp8_row(const ResidualNormArgs& a, int64_t batch, int64_t row, int lane,
                                              const uint4 (&x)[kLanePieces], PairSlots& slots) {
  const int pieces = a.dim / kPieceElements;
  float amax = 0.0f;
  each_lane_piece(lane, pieces, [&](int i, int) {
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) amax = fmaxf(amax, fabsf(v[e]));
  });
  const float scale = fp8_row_scale(pair_reduce(amax, Max(), slots));
  auto* values = const_cast<uint8_t*>(at_row<uint8_t>(a.fp8_values, batch, row));
  with_divisor(scale, [&](const auto& divide) {
    each_lane_piece(lane, pieces, [&](int i, int piece) {
      float v[kPieceElements];
      unpack_piece<T>(x[i], v);
      *reinterpret_cast<uint2*>(values + piece * kPieceElements) = fp8_piece(v, divide);
    });
  });
  if (lane == 0) *const_cast<float*>(at_row<float>(a.fp8_scales, batch, row)) = scale;
}

// Three CTAs a multiprocessor at the least: a row's pieces and its update's stay in registers without spilling.
template <typename T>
__global__ void __launch_bounds__(kThreads, 3) residual_norm_pair_kernel(const ResidualNormArgs a) {
  __shared__ PairSlots slots[3];  // the mean's, the variance's and the absmax's
  const int64_t index = int64_t(blockIdx.x) * kRowsPerCta + threadIdx.x / kRowLanes;
  if (index >= a.batch * a.rows) return;  // the whole pair: its barriers need no other warps
  const int64_t batch = index / a.rows, row = index % a.rows;
  const int lane = threadIdx.x % kRowLanes, pieces = a.dim / kPieceElements;
  uint4 x[kLanePieces];
  load_updated_row<T>(a, batch, row, lane, x);
  const float mean = row_sum<T>(x, lane, pieces, slots[0], [](float v) { return v; }) / a.dim;
  const float variance =
      row_sum<T>(x, lane, pieces, slots[1], [mean](float v) { return (v - mean) * (v - mean); }) / a.dim;
  modulate_row<T>(a, batch, lane, mean, rsqrtf(variance + a.eps), x);
  if (a.fp8_values.data != nullptr) return store_fp8_row<T>(a, batch, row, lane, x, slots[2]);
  each_lane_piece(lane, pieces, [&](int i, int piece) { *piece_of(at_row<T>(a.out, batch, row), piece) = x[i]; });
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
      add_gated(x[i], update, gate);
      round_piece<T>(x[i]);
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
  if (args.fp8_values.data != nullptr && !residual_norm_fp8_fits(args.dim))
    throw std::invalid_argument("residual_norm_modulate: FP8 rows of " + std::to_string(args.dim) +
                                " elements are wider than two warps hold");
  const int64_t rows = args.batch * args.rows;
  if (args.dim <= kPairRowLimit) {
    residual_norm_pair_kernel<T><<<unsigned((rows + kRowsPerCta - 1) / kRowsPerCta), kThreads, 0, stream>>>(args);
  } else {
    residual_norm_cta_kernel<T><<<unsigned(rows), kThreads, 0, stream>>>(args);
  }
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool residual_norm_fits(int dim) {
  return dim > 0 && dim % kPieceElements == 0 && dim <= kThreads * kPiecesPerThread * kPieceElements;
}

bool residual_norm_fp8_fits(int dim) { return residual_norm_fits(dim) && dim <= kPairRowLimit; }

void residual_norm_modulate(const ResidualNormArgs& args, NormElement element, cudaStream_t stream) {
  if (args.batch == 0 || args.rows == 0) return;
  if (element == NormElement::fp16) launch<__half>(args, stream);
  else launch<__nv_bfloat16>(args, stream);
}

}  // namespace sagevid::kernels::detail
