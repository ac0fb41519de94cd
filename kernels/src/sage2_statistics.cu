// The first preprocessing pass: K's and V's per-channel token statistics, as partials per chunk of
// kStatisticsRows tokens that the quantization pass folds: K's sums for its smoothing mean and V's absmax for its FP8
// scale over every kKeyMeanStride-th key only (sage2_layout.h), V's sums for its smoothing mean over every key. Also
// the second V pass that smoothed FP8 V needs (its absmax after the mean).
#include "sage2_preprocess.cuh"
#include "sage2_slices.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <algorithm>

namespace sagevid::kernels::sage2::detail {
namespace {

constexpr int kThreads = kPreprocessThreads;

// One chunk of kStatisticsRows tokens of one (batch, head). The sampled rows (every kKeyMeanStride-th) of K and of
// V are loaded up front, in registers; V's every row, for its sums, slice by slice through SliceLoader
// (sage2_slices.cuh: the next slice's loads in flight while this one is added up, in shared memory where aligned).
// Each thread adds its chunk's eight channels over its rows; the CTA then folds its row lanes in lane order.
// The statistics kernel's shared memory: SliceLoader's buffers, then (in the same bytes) the row lanes' partials.
template <int kHeadDim>
constexpr int statistics_smem_bytes(bool vector) {
  const int fold = 3 * ThreadChunks<kHeadDim>::kRowStride * kHeadDim * int(sizeof(float));
  return vector ? std::max(kStagingBytes<kHeadDim>, fold) : fold;
}

template <int kHeadDim, bool kVector>
__global__ void __launch_bounds__(kThreads)
    token_statistics_kernel(StridedInput k, StridedInput v, bool k_vector, TokenStatistics out) {
  using Chunks = ThreadChunks<kHeadDim>;
  constexpr int kRowLanes = Chunks::kRowStride, kSlicesPerChunk = kStatisticsRows / slice_rows(kHeadDim);
  static_assert(kStatisticsRows % (kKeyMeanStride * kRowLanes) == 0 && kStatisticsRows % slice_rows(kHeadDim) == 0);
  // SliceLoader's two buffers (kVector only), then the row lanes' sums and maxima to fold: statistics_smem_bytes.
  extern __shared__ uint4 staging[];
  const int chunk = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  const Chunks chunks;
  const int first = chunk * kStatisticsRows;
  const int64_t cta = (int64_t(batch) * gridDim.y + head) * gridDim.x + chunk;
  for (int64_t i = cta * kThreads + threadIdx.x; i < out.zeroed_words;
       i += int64_t(gridDim.x) * gridDim.y * gridDim.z * kThreads)
    out.zeroed[i] = 0;

  static_assert(kVScaleStride == kKeyMeanStride, "one set of sampled rows for K and V");
  // The thread's sampled rows of x, each chunk unpacked and handed to add (rows past the sequence read zero, which
  // add nothing to a sum or an absmax).
  const auto sampled_rows = [&](const StridedInput& x, bool vector, auto add) {
    constexpr int kSampledRows = kStatisticsRows / kKeyMeanStride / kRowLanes;  // this thread's
    const int64_t base = batch * x.stride_b + head * x.stride_h + chunks.c;
    uint4 raw[kSampledRows];
#pragma unroll
    for (int j = 0; j < kSampledRows; ++j) {
      const int row = first + kKeyMeanStride * (chunks.r0 + j * kRowLanes);
      raw[j] = row < x.len ? load_chunk(x, base + row * x.stride_n, vector) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int j = 0; j < kSampledRows; ++j) {
      float values[kChunk];
      unpack_chunk(raw[j], x.type, values);
      add(values);
    }
  };
  float ks[kChunk] = {}, vs[kChunk] = {}, va[kChunk] = {};
  // clang-format off: clang-format reads `T (&x)[n]` in a lambda's parameters as a cast and would drop the space.
  if (out.k_sum)
    sampled_rows(k, k_vector, [&](const float (&x)[kChunk]) {
#pragma unroll
      for (int i = 0; i < kChunk; ++i) ks[i] += x[i];
    });
  if (out.v_absmax)
    sampled_rows(v, kVector, [&](const float (&x)[kChunk]) {
#pragma unroll
      for (int i = 0; i < kChunk; ++i) va[i] = fmaxf(va[i], fabsf(x[i]));
    });
  // clang-format on
  if (out.v_sum) {
    const uint16_t* head_base = static_cast<const uint16_t*>(v.data) + batch * v.stride_b + head * v.stride_h;
    SliceLoader<kHeadDim, kVector> loader(v, head_base, first, v.len, kSlicesPerChunk, staging);
    for (int slice = 0; slice < kSlicesPerChunk; ++slice) {
      if (first + slice * slice_rows(kHeadDim) >= v.len) break;
      uint4 raw[Chunks::kCount];  // rows past the sequence read zero
      loader.take(slice, raw);
#pragma unroll
      for (int j = 0; j < Chunks::kCount; ++j) {
        float x[kChunk];
        unpack_chunk(raw[j], v.type, x);
#pragma unroll
        for (int i = 0; i < kChunk; ++i) vs[i] += x[i];
      }
    }
  }
  __syncthreads();  // every thread is done with the staged slices (and the loader with its copies)
  // clang-format off: clang-format reads `T (*p)[n]` in a function body as a cast and would drop the space.
  float (*k_sum)[kHeadDim] = reinterpret_cast<float (*)[kHeadDim]>(staging);
  float (*v_sum)[kHeadDim] = k_sum + kRowLanes, (*v_absmax)[kHeadDim] = v_sum + kRowLanes;
  // clang-format on
#pragma unroll
  for (int i = 0; i < kChunk; ++i) {
    k_sum[chunks.r0][chunks.c + i] = ks[i], v_sum[chunks.r0][chunks.c + i] = vs[i];
    v_absmax[chunks.r0][chunks.c + i] = va[i];
  }
  __syncthreads();

  if (threadIdx.x >= kHeadDim) return;
  const int channel = threadIdx.x;
  float sum_k = 0.0f, sum_v = 0.0f, amax_v = 0.0f;
  for (int r = 0; r < kRowLanes; ++r) {
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
  const bool vector = chunks_aligned(v);
  const auto kernel = k.head_dim == 64
                          ? (vector ? token_statistics_kernel<64, true> : token_statistics_kernel<64, false>)
                          : (vector ? token_statistics_kernel<128, true> : token_statistics_kernel<128, false>);
  const int smem_bytes = k.head_dim == 64 ? statistics_smem_bytes<64>(vector) : statistics_smem_bytes<128>(vector);
  kernel<<<grid, kThreads, smem_bytes, stream>>>(k, v, chunks_aligned(k), out);
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
