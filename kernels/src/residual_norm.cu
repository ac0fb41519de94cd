// residual_norm_modulate on CUDA. Each row is read and written once: its pieces stay in registers from the
// residual update through the statistics to the modulated output. Rows up to kWarpRowLimit wide (CogVideoX's
// 1920 and 3072) take one warp each, eight rows of one batch a CTA: every load of a lane issued before the first
// is used, the batch's modulation rows staged in shared memory by the CTA, statistics by shuffles; they may go
// out as FP8 rows with a scale each instead (residual_norm_modulate_fp8). Wider rows take one CTA each, with CTA
// reductions.
#include "residual_norm_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <climits>
#include <stdexcept>
#include <string>

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPiecesPerThread = 4;  // the CTA kernel's rows: up to kThreads * 32 elements
constexpr int kWarps = kThreads / 32;
constexpr int kLanePieces = 12;  // the warp kernel's rows: up to 32 lanes * 12 pieces
constexpr int kWarpRowLimit = 32 * kLanePieces * kPieceElements;
constexpr int kWarpRowPieces = kWarpRowLimit / kPieceElements;
constexpr int64_t kMaxBatch = 65535;  // the warp kernel's batch is its grid's y

template <typename T>
__device__ __forceinline__ const T* at_row(const RowsView& view, int64_t batch, int64_t row) {
  return static_cast<const T*>(view.data) + batch * view.batch_stride + row * view.row_stride;
}

// A batch's per-column rows: its modulation (gate, shift, scale) and the norm's weight and bias (null where
// absent: 1 and 0), each a row of T.
template <typename T>
struct Modulation {
  const T *gate, *shift, *scale, *weight, *bias;
};
constexpr int kModulationRows = 5;

template <typename T>
__device__ __forceinline__ Modulation<T> modulation_of(const ResidualNormArgs& a, int64_t batch) {
  return {a.gate.data != nullptr ? at_row<T>(a.gate, batch, 0) : nullptr, at_row<T>(a.shift, batch, 0),
          at_row<T>(a.scale, batch, 0), static_cast<const T*>(a.weight), static_cast<const T*>(a.bias)};
}

// x += gate * update in fp32; rounding it to T, as torch's in-place addcmul stores the residual, is the caller's
// (the warp kernel's packing does it).
__device__ __forceinline__ void add_gated(float (&x)[kPieceElements], const float (&update)[kPieceElements],
                                          const float (&gate)[kPieceElements]) {
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) x[e] += gate[e] * update[e];
}

// x's piece at element `at` of its row, normed with (mean, rstd), then modulated: shift + norm(x) * (1 + scale).
template <typename T>
__device__ __forceinline__ void modulate(const Modulation<T>& m, int at, float mean, float rstd,
                                         float (&x)[kPieceElements]) {
  float weight[kPieceElements], bias[kPieceElements], shift[kPieceElements], scale[kPieceElements];
  if (m.weight != nullptr) load_piece(m.weight + at, weight);
  if (m.bias != nullptr) load_piece(m.bias + at, bias);
  load_piece(m.shift + at, shift);
  load_piece(m.scale + at, scale);
  // torch: layer_norm's output, then addcmul(shift, normed, 1 + scale), each of the three rounded to T.
  float normed[kPieceElements];
#pragma unroll
  for (int e = 0; e < kPieceElements; ++e) {
    normed[e] = (x[e] - mean) * rstd;
    if (m.weight != nullptr) normed[e] *= weight[e];
    if (m.bias != nullptr) normed[e] += bias[e];
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

// f(i, piece) for each piece of the warp's row its lane holds: piece lane + 32 i, in slot i of its registers.
template <typename F>
__device__ __forceinline__ void each_lane_piece(int lane, int pieces, F f) {
#pragma unroll
  for (int i = 0; i < kLanePieces; ++i)
    if (lane + 32 * i < pieces) f(i, lane + 32 * i);
}

// The CTA's modulation rows copied to shared memory by all its threads, for the warp kernel: every warp reads
// all of them, a piece at a time inside its lane's bounds checks, so from global memory each read would wait for
// a cache round trip of its own; from shared memory it waits tens of cycles. Every thread of the CTA calls.
template <typename T>
__device__ __forceinline__ Modulation<T> stage_modulation(const Modulation<T>& rows, int dim,
                                                          uint4 (&staged)[kModulationRows][kWarpRowPieces]) {
  const T* from[kModulationRows] = {rows.gate, rows.shift, rows.scale, rows.weight, rows.bias};
  const T* to[kModulationRows];
#pragma unroll
  for (int r = 0; r < kModulationRows; ++r) {
    to[r] = from[r] != nullptr ? reinterpret_cast<const T*>(staged[r]) : nullptr;
    if (from[r] == nullptr) continue;
    for (int piece = threadIdx.x; piece < dim / kPieceElements; piece += kThreads)
      staged[r][piece] = *piece_of(from[r], piece);
  }
  __syncthreads();
  return {to[0], to[1], to[2], to[3], to[4]};
}

// The pieces of the warp's row its lane holds, and of its update where there is one: loads put in flight.
template <typename T>
__device__ __forceinline__ void load_row(const ResidualNormArgs& a, int64_t batch, int64_t row, int lane,
                                         uint4 (&x)[kLanePieces], uint4 (&update)[kLanePieces]) {
  const T* residual = at_row<T>(a.residual, batch, row);
  const bool updated = a.update.data != nullptr;
  each_lane_piece(lane, a.dim / kPieceElements, [&](int i, int piece) {
    x[i] = *piece_of(residual, piece);
    if (updated) update[i] = *piece_of(at_row<T>(a.update, batch, row), piece);
  });
}

// x += gate * update, rounded to T, and stored back as the residual. The residual's values are T's, so the
// pieces hold them exactly.
template <typename T>
__device__ __forceinline__ void add_gated_row(const ResidualNormArgs& a, const Modulation<T>& m, int64_t batch,
                                              int64_t row, int lane, uint4 (&x)[kLanePieces],
                                              const uint4 (&update)[kLanePieces]) {
  const int pieces = a.dim / kPieceElements;
  each_lane_piece(lane, pieces, [&](int i, int piece) {
    float v[kPieceElements], u[kPieceElements], g[kPieceElements];
    unpack_piece<T>(x[i], v);
    unpack_piece<T>(update[i], u);
    load_piece(m.gate + piece * kPieceElements, g);
    add_gated(v, u, g);
    x[i] = pack_piece<T>(v);
  });
  T* residual = const_cast<T*>(at_row<T>(a.residual, batch, row));
  each_lane_piece(lane, pieces, [&](int i, int piece) { *piece_of(residual, piece) = x[i]; });
}

// The sum over the warp's row of f(element).
template <typename T, typename F>
__device__ __forceinline__ float row_sum(const uint4 (&x)[kLanePieces], int lane, int pieces, F f) {
  float sum = 0.0f;
  each_lane_piece(lane, pieces, [&](int i, int) {
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) sum += f(v[e]);
  });
  return lanes_reduce(sum, Sum());
}

// The warp's row normed with (mean, rstd) and modulated, each piece rounded to T as the output stores it, into x.
template <typename T>
__device__ __forceinline__ void modulate_row(const Modulation<T>& m, int pieces, int lane, float mean, float rstd,
                                             uint4 (&x)[kLanePieces]) {
  each_lane_piece(lane, pieces, [&](int i, int piece) {
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
    modulate<T>(m, piece * kPieceElements, mean, rstd, v);
    x[i] = pack_piece<T>(v);
  });
}

// The modulated row x as FP8: its absmax over the warp, then its scale and E4M3 bytes, as quantize_rows_fp8 makes
// them from the row of T.
template <typename T>
__device__ __forceinline__ void store_fp8_row(const ResidualNormArgs& a, int64_t batch, int64_t row, int lane,
                                              const uint4 (&x)[kLanePieces]) {
  const int pieces = a.dim / kPieceElements;
  float amax = 0.0f;
  each_lane_piece(lane, pieces, [&](int i, int) {
    float v[kPieceElements];
    unpack_piece<T>(x[i], v);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) amax = fmaxf(amax, fabsf(v[e]));
  });
  const float scale = fp8_row_scale(lanes_reduce(amax, Max()));
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

// One CTA: kWarps rows of one batch (blockIdx.y), a warp each. Two CTAs a multiprocessor at the least: a row's
// pieces and its update's stay in registers without spilling.
template <typename T>
__global__ void __launch_bounds__(kThreads, 2) residual_norm_warp_kernel(const ResidualNormArgs a) {
  __shared__ uint4 staged[kModulationRows][kWarpRowPieces];
  const int64_t batch = blockIdx.y, row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32, pieces = a.dim / kPieceElements;
  const bool has_row = row < a.rows;
  uint4 x[kLanePieces], update[kLanePieces];
  if (has_row) load_row<T>(a, batch, row, lane, x, update);  // in flight while the modulation is staged
  const Modulation<T> m = stage_modulation<T>(modulation_of<T>(a, batch), a.dim, staged);
  if (!has_row) return;  // the whole warp, after the CTA's barrier: its shuffles need no other lanes
  if (a.update.data != nullptr) add_gated_row<T>(a, m, batch, row, lane, x, update);
  const float mean = row_sum<T>(x, lane, pieces, [](float v) { return v; }) / a.dim;
  const float variance = row_sum<T>(x, lane, pieces, [mean](float v) { return (v - mean) * (v - mean); }) / a.dim;
  modulate_row<T>(m, pieces, lane, mean, rsqrtf(variance + a.eps), x);
  if (a.fp8_values.data != nullptr) return store_fp8_row<T>(a, batch, row, lane, x);
  each_lane_piece(lane, pieces, [&](int i, int piece) { *piece_of(at_row<T>(a.out, batch, row), piece) = x[i]; });
}

template <typename T>
__global__ void __launch_bounds__(kThreads) residual_norm_cta_kernel(const ResidualNormArgs a) {
  const int64_t batch = blockIdx.x / a.rows, row = blockIdx.x % a.rows;
  const int pieces = a.dim / kPieceElements;
  const Modulation<T> m = modulation_of<T>(a, batch);
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
      load_piece(m.gate + at, gate);
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
    modulate<T>(m, at, mean, rstd, x[i]);
    store_piece(out + at, x[i]);
  }
}

template <typename T>
void launch(const ResidualNormArgs& args, cudaStream_t stream) {
  if (args.fp8_values.data != nullptr && !residual_norm_fp8_fits(args.dim))
    throw std::invalid_argument("residual_norm_modulate: FP8 rows of " + std::to_string(args.dim) +
                                " elements are wider than a warp holds");
  if (args.batch > kMaxBatch || args.batch * args.rows > INT_MAX)
    throw std::invalid_argument("residual_norm_modulate: more rows or batches than one launch takes");
  if (args.dim <= kWarpRowLimit) {
    const dim3 grid(unsigned((args.rows + kWarps - 1) / kWarps), unsigned(args.batch));
    residual_norm_warp_kernel<T><<<grid, kThreads, 0, stream>>>(args);
  } else {
    residual_norm_cta_kernel<T><<<unsigned(args.batch * args.rows), kThreads, 0, stream>>>(args);
  }
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool residual_norm_fits(int dim) {
  return dim > 0 && dim % kPieceElements == 0 && dim <= kThreads * kPiecesPerThread * kPieceElements;
}

bool residual_norm_fp8_fits(int dim) { return residual_norm_fits(dim) && dim <= kWarpRowLimit; }

void residual_norm_modulate(const ResidualNormArgs& args, NormElement element, cudaStream_t stream) {
  if (args.batch == 0 || args.rows == 0) return;
  if (element == NormElement::fp16) launch<__half>(args, stream);
  else launch<__nv_bfloat16>(args, stream);
}

}  // namespace sagevid::kernels::detail
