// residual_norm_modulate on CUDA: one CTA per row; each thread keeps its pieces of the row in registers from
// the residual update through the statistics to the modulated output, so the row is read and written once.
#include "residual_norm_kernel.h"
#include "row_math.cuh"
#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels::detail {
namespace {

constexpr int kThreads = 256;
constexpr int kPiecesPerThread = 4;

template <typename T>
__device__ __forceinline__ const T* at_row(const RowsView& view, int64_t batch, int64_t row) {
  return static_cast<const T*>(view.data) + batch * view.batch_stride + row * view.row_stride;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) residual_norm_kernel(const ResidualNormArgs a) {
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
    if (a.update.data != nullptr) {  // residual += gate * update, stored as torch's in-place addcmul does
      float update[kPieceElements], gate[kPieceElements];
      load_piece(at_row<T>(a.update, batch, row) + at, update);
      load_piece(at_row<T>(a.gate, batch, 0) + at, gate);
#pragma unroll
      for (int e = 0; e < kPieceElements; ++e) x[i][e] = rounded<T>(x[i][e] + gate[e] * update[e]);
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
    float weight[kPieceElements], bias[kPieceElements], shift[kPieceElements], scale[kPieceElements];
    if (a.weight != nullptr) load_piece(static_cast<const T*>(a.weight) + at, weight);
    if (a.bias != nullptr) load_piece(static_cast<const T*>(a.bias) + at, bias);
    load_piece(at_row<T>(a.shift, batch, 0) + at, shift);
    load_piece(at_row<T>(a.scale, batch, 0) + at, scale);
#pragma unroll
    for (int e = 0; e < kPieceElements; ++e) {
      float normed = (x[i][e] - mean) * rstd;
      if (a.weight != nullptr) normed *= weight[e];
      if (a.bias != nullptr) normed += bias[e];
      // torch: layer_norm's output, then addcmul(shift, normed, 1 + scale), each rounded to T.
      x[i][e] = shift[e] + rounded<T>(normed) * rounded<T>(1.0f + scale[e]);
    }
    store_piece(out + at, x[i]);
  }
}

template <typename T>
void launch(const ResidualNormArgs& args, cudaStream_t stream) {
  residual_norm_kernel<T><<<unsigned(args.batch * args.rows), kThreads, 0, stream>>>(args);
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
