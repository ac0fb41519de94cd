// The first preprocessing pass: K's and V's per-channel token statistics (sums for the smoothing means, K's over
// every kKeyMeanStride-th key only; V's max|v| for its FP8 scale), one read of each, as partials per chunk of
// kStatisticsRows tokens that the quantization pass folds. Also the second V pass that smoothed FP8 V needs (its
// absmax after the mean).
#include "sage2_preprocess.cuh"
#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels::sage2::detail {
namespace {

constexpr int kThreads = kPreprocessThreads;
constexpr int kLoadsInFlight = 4;  // rows each thread loads before it accumulates

// Thread t reads the 8-channel chunk t % (D/8) of rows t / (D/8), + kRowsPerPass, ... of the CTA's chunk of
// tokens; the CTA then folds its kRowsPerPass row lanes in lane order through shared memory.
template <int kHeadDim>
__global__ void __launch_bounds__(kThreads)
    token_statistics_kernel(StridedInput k, StridedInput v, bool k_vector, bool v_vector, TokenStatistics out) {
  constexpr int kChunksPerRow = kHeadDim / kChunk, kRowsPerPass = kThreads / kChunksPerRow;
  __shared__ float k_sum[kRowsPerPass][kHeadDim], v_sum[kRowsPerPass][kHeadDim], v_absmax[kRowsPerPass][kHeadDim];
  const int chunk = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const int lane_row = threadIdx.x / kChunksPerRow, c = (threadIdx.x % kChunksPerRow) * kChunk;
  const int first = chunk * kStatisticsRows, last = min(k.len, first + kStatisticsRows);
  const int64_t k_base = batch * k.stride_b + head * k.stride_h + c,
                v_base = batch * v.stride_b + head * v.stride_h + c;

  float ks[kChunk] = {}, vs[kChunk] = {}, va[kChunk] = {};
  const bool want_k = out.k_sum, want_v = out.v_sum || out.v_absmax;
  for (int row = first + lane_row; row < last; row += kLoadsInFlight * kRowsPerPass) {
    uint4 k_raw[kLoadsInFlight] = {}, v_raw[kLoadsInFlight] = {};  // rows past the chunk: zeros, which add nothing
#pragma unroll
    for (int j = 0; j < kLoadsInFlight; ++j) {
      const int r = row + j * kRowsPerPass;
      if (r >= last) break;
      if (want_k && r % kKeyMeanStride == 0) k_raw[j] = load_chunk(k, k_base + r * k.stride_n, k_vector);
      if (want_v) v_raw[j] = load_chunk(v, v_base + r * v.stride_n, v_vector);
    }
#pragma unroll
    for (int j = 0; j < kLoadsInFlight; ++j) {
      float kx[kChunk], vx[kChunk];
      unpack_chunk(k_raw[j], k.type, kx);
      unpack_chunk(v_raw[j], v.type, vx);
#pragma unroll
      for (int i = 0; i < kChunk; ++i) ks[i] += kx[i], vs[i] += vx[i], va[i] = fmaxf(va[i], fabsf(vx[i]));
    }
  }
#pragma unroll
  for (int i = 0; i < kChunk; ++i)
    k_sum[lane_row][c + i] = ks[i], v_sum[lane_row][c + i] = vs[i], v_absmax[lane_row][c + i] = va[i];
  __syncthreads();

  if (threadIdx.x >= kHeadDim) return;
  const int channel = threadIdx.x;
  float sum_k = 0.0f, sum_v = 0.0f, amax_v = 0.0f;
  for (int r = 0; r < kRowsPerPass; ++r) {
    sum_k += k_sum[r][channel];
    sum_v += v_sum[r][channel];
    amax_v = fmaxf(amax_v, v_absmax[r][channel]);
  }
  const int64_t at = ((int64_t(batch) * k.heads + head) * gridDim.x + chunk) * kHeadDim + channel;
  if (out.k_sum) out.k_sum[at] = sum_k;
  if (out.v_sum) out.v_sum[at] = sum_v;
  if (out.v_absmax) out.v_absmax[at] = amax_v;
}

// Per-channel max|v - mean| over rows_per_cta rows: thread t reads the 8-channel chunk t % (D/8) of every
// (256 / (D/8))-th row; the CTA's maxima meet in shared memory, then once per channel in device memory.
// Non-negative floats order like their bit patterns, so an unsigned atomic max finds the float max.
__global__ void __launch_bounds__(kThreads)
    channel_absmax_kernel(StridedInput v, bool vector_loads, ChannelPartials mean, float* absmax, int rows_per_cta) {
  __shared__ unsigned channel_bits[kMaxHeadDim];
  __shared__ float channel_mean[kMaxHeadDim];
  const int head = blockIdx.y, batch = blockIdx.z;
  const int d = v.head_dim, chunks_per_row = d / kChunk, rows_per_pass = kThreads / chunks_per_row;
  const int64_t head_index = int64_t(batch) * v.heads + head;
  const int64_t in_base = batch * v.stride_b + head * v.stride_h;
  const int c = (threadIdx.x % chunks_per_row) * kChunk;
  if (threadIdx.x < d) {
    channel_bits[threadIdx.x] = 0;
    channel_mean[threadIdx.x] = fold_mean(mean, head_index, d, threadIdx.x);
  }
  __syncthreads();
  float amax[kChunk] = {};
  const int first = blockIdx.x * rows_per_cta, last = min(v.len, first + rows_per_cta);
  for (int row = first + int(threadIdx.x) / chunks_per_row; row < last; row += rows_per_pass) {
    float x[kChunk];
    unpack_chunk(load_chunk(v, in_base + row * v.stride_n + c, vector_loads), v.type, x);
#pragma unroll
    for (int i = 0; i < kChunk; ++i) amax[i] = fmaxf(amax[i], fabsf(x[i] - channel_mean[c + i]));
  }
#pragma unroll
  for (int i = 0; i < kChunk; ++i) atomicMax(&channel_bits[c + i], __float_as_uint(amax[i]));
  __syncthreads();
  if (threadIdx.x < d)
    atomicMax(reinterpret_cast<unsigned*>(absmax + head_index * d) + threadIdx.x, channel_bits[threadIdx.x]);
}

}  // namespace

int statistics_chunks(int len) { return (len + kStatisticsRows - 1) / kStatisticsRows; }

void token_statistics(const StridedInput& k, const StridedInput& v, const TokenStatistics& out, cudaStream_t stream) {
  const dim3 grid(unsigned(statistics_chunks(k.len)), unsigned(k.heads), unsigned(k.batch));
  const auto kernel = k.head_dim == 64 ? token_statistics_kernel<64> : token_statistics_kernel<128>;
  kernel<<<grid, kThreads, 0, stream>>>(k, v, chunks_aligned(k), chunks_aligned(v), out);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

void channel_absmax(const StridedInput& v, const ChannelPartials& mean, float* absmax, cudaStream_t stream) {
  SAGEVID_CUDA_CHECK(cudaMemsetAsync(absmax, 0, sizeof(float) * size_t(v.batch) * v.heads * v.head_dim, stream));
  constexpr int rows_per_cta = 256;
  const dim3 grid(unsigned((v.len + rows_per_cta - 1) / rows_per_cta), unsigned(v.heads), unsigned(v.batch));
  channel_absmax_kernel<<<grid, kThreads, 0, stream>>>(v, chunks_aligned(v), mean, absmax, rows_per_cta);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace sagevid::kernels::sage2::detail
