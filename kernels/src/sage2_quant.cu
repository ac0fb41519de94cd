// The second preprocessing pass, one launch for Q, K and V: Q/K smoothing + per-group INT8/INT4 quantization,
// and V for the P·V MMA (FP8 scaled per channel into the transposed, key-permuted layout; or fp16). The token
// statistics of the first pass (sage2_statistics.cu) arrive as partials that every CTA folds itself. Each
// element is read and written once.
#include "sage2_preprocess.cuh"
#include "sagevid/kernels/cuda_check.h"

#include <cuda_fp8.h>

namespace sagevid::kernels::sage2::detail {
namespace {

constexpr int kThreads = kPreprocessThreads;

// Rows per CTA: every thread holds four 8-channel chunks, all loaded before any is used.
SAGEVID_HD constexpr int rows_per_cta(int head_dim) { return 4 * kThreads * kChunk / head_dim; }
constexpr int kRowTiles = rows_per_cta(64) / kQBlock;  // at most; kQBlock == kKBlock
static_assert(kQBlock == kKBlock, "one tile size for Q and K");

template <int kHeadDim>
union Smem {
  struct {
    unsigned group_amax_bits[kRowTiles][kQBlock];  // non-negative floats order like their bit patterns
    float mean[kHeadDim];
  } rows;
  struct {
    // The CTA's keys as written out, [key][channel]: E4M3 bytes or fp16.
    alignas(16) uint8_t tile[rows_per_cta(kHeadDim) * kHeadDim * 2];
    float mean[kHeadDim], scale[kHeadDim];
  } v;
};

// Where a CTA of one job works: its first row and its (batch, head).
struct CtaTask {
  int first_row;
  int64_t head_index;
  int batch, head;
};

__device__ __forceinline__ CtaTask task_of(int local, const StridedInput& x, int rows) {
  const int ctas_per_head = (x.len + rows - 1) / rows;
  const int head = (local / ctas_per_head) % x.heads, batch = local / (ctas_per_head * x.heads);
  return {(local % ctas_per_head) * rows, int64_t(batch) * x.heads + head, batch, head};
}

// One CTA quantizes rows_per_cta rows (two 64-row tiles at head dim 64, one at 128) of one (batch, head),
// each thread four 8-channel chunks (t, t + 256, ... in row-major order, the lanes of a row adjacent). It
// issues all its loads first, then smooths them; the row absmax is a shuffle reduction over the row's lanes,
// each group's absmax a shared atomic max over its rows, and the thread then rounds its own chunks.
template <int kHeadDim>
__device__ void quantize_rows(const RowsJob& job, bool is_key, bool vector_loads, Granularity granularity,
                              bool int4, int local, Smem<kHeadDim>& smem) {
  constexpr int kRows = rows_per_cta(kHeadDim), kTiles = kRows / kQBlock, d = kHeadDim;
  constexpr int kChunksPerRow = d / kChunk, kChunksPerThread = kRows * kChunksPerRow / kThreads;
  const StridedInput& x = job.x;
  const CtaTask task = task_of(local, x, kRows);
  const int first_block = task.first_row / kQBlock, num_blocks = (x.len + kQBlock - 1) / kQBlock;
  const int64_t in_base = task.batch * x.stride_b + task.head * x.stride_h;

  // Load (all of the thread's chunks in flight together); rows past the sequence are padding (zero, so they
  // never raise a group's absmax).
  uint4 raw[kChunksPerThread];
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / kChunksPerRow, c = (chunk % kChunksPerRow) * kChunk, row = task.first_row + r;
    raw[j] = row < x.len ? load_chunk(x, in_base + row * x.stride_n + c, vector_loads) : make_uint4(0, 0, 0, 0);
  }
  if (threadIdx.x < kTiles * kQBlock) smem.rows.group_amax_bits[threadIdx.x / kQBlock][threadIdx.x % kQBlock] = 0;
  if (job.token_mean.data && threadIdx.x < d) {
    const float mean = fold_mean(job.token_mean, task.head_index, d, threadIdx.x);
    smem.rows.mean[threadIdx.x] = mean;
    if (job.mean_out && task.first_row == 0) job.mean_out[task.head_index * d + threadIdx.x] = mean;
  }
  __syncthreads();  // the folded mean and the zeroed group maxima

  // The chunk's smoothed values: computed twice (for the absmax, then to round), cheaper than holding them.
  const auto smoothed = [&](int j, float (&v)[kChunk]) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / kChunksPerRow, c = (chunk % kChunksPerRow) * kChunk;
    const float* mean = job.block_mean ? job.block_mean + (task.head_index * num_blocks + first_block + r / kQBlock) * d
                        : job.token_mean.data ? smem.rows.mean
                                              : nullptr;
    unpack_chunk(raw[j], x.type, v);
    if (mean && task.first_row + r < x.len)  // padding rows stay 0
#pragma unroll
      for (int i = 0; i < kChunk; ++i) v[i] = v[i] - mean[c + i];
  };
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / kChunksPerRow, tile = r / kQBlock;
    float v[kChunk];
    smoothed(j, v);
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < kChunk; ++i) amax = fmaxf(amax, fabsf(v[i]));
    for (int offset = 1; offset < kChunksPerRow; offset <<= 1)  // the row's lanes: aligned, a power of two
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    if (chunk % kChunksPerRow == 0) {
      const int group = int(is_key ? k_group(r % kQBlock, granularity) : q_group(r % kQBlock, granularity));
      atomicMax(&smem.rows.group_amax_bits[tile][group], __float_as_uint(amax));
    }
  }
  __syncthreads();

  const int groups = int(is_key ? k_groups_per_block(granularity) : q_groups_per_block(granularity));
  const float qmax = int4 ? float(kInt4Max) : float(kInt8Max);
  if (threadIdx.x < kTiles * groups) {
    const int tile = threadIdx.x / groups, group = threadIdx.x % groups, block = first_block + tile;
    const float amax = __uint_as_float(smem.rows.group_amax_bits[tile][group]);
    if (block < num_blocks)
      job.scales[(task.head_index * num_blocks + block) * groups + group] = amax > 0.0f ? amax / qmax : 1.0f;
  }

  // Round: eight int8 values are one 8-byte store, eight int4 ones a 4-byte store.
  const int64_t padded_len = int64_t(num_blocks) * kQBlock;
  const int64_t row_bytes = int4 ? d / 2 : d;
  int8_t* out = job.values + (task.head_index * padded_len + task.first_row) * row_bytes;
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads;
    const int r = chunk / kChunksPerRow;
    if (task.first_row + r >= padded_len) break;  // the last CTA's second tile may lie past the padding
    const int group = int(is_key ? k_group(r % kQBlock, granularity) : q_group(r % kQBlock, granularity));
    const float amax = __uint_as_float(smem.rows.group_amax_bits[r / kQBlock][group]);
    const float inv = amax > 0.0f ? qmax / amax : 0.0f;
    float v[kChunk];
    smoothed(j, v);
    int q[kChunk];
#pragma unroll
    for (int i = 0; i < kChunk; ++i) q[i] = max(-int(qmax), min(int(qmax), __float2int_rn(v[i] * inv)));
    if (!int4) {
      uint2 packed;
      packed.x = (q[0] & 0xFF) | (q[1] & 0xFF) << 8 | (q[2] & 0xFF) << 16 | uint32_t(q[3] & 0xFF) << 24;
      packed.y = (q[4] & 0xFF) | (q[5] & 0xFF) << 8 | (q[6] & 0xFF) << 16 | uint32_t(q[7] & 0xFF) << 24;
      reinterpret_cast<uint2*>(out)[chunk] = packed;
    } else {
      uint32_t packed = 0;
#pragma unroll
      for (int i = 0; i < kChunk; ++i) packed |= uint32_t(q[i] & 0xF) << (4 * i);  // low nibble = even channel
      reinterpret_cast<uint32_t*>(out)[chunk] = packed;
    }
  }
}

// One CTA prepares rows_per_cta keys of V. It loads its four chunks per thread, subtracts the mean and
// scales (FP8), then either stores fp16 rows directly or stages the keys as written out (E4M3 bytes or fp16)
// in shared memory and writes Vᵀ: 16-byte stores of 16 FP8 (or 8 fp16) positions of one channel,
// consecutive threads on consecutive channels.
template <int kHeadDim>
__device__ void prepare_v(const VJob& job, bool vector_loads, int local, Smem<kHeadDim>& smem) {
  constexpr int kKeys = rows_per_cta(kHeadDim), d = kHeadDim;
  constexpr int kChunksPerRow = d / kChunk, kChunksPerThread = kKeys * kChunksPerRow / kThreads;
  const StridedInput& v = job.v;
  const CtaTask task = task_of(local, v, kKeys);
  const int64_t in_base = task.batch * v.stride_b + task.head * v.stride_h;
  const int64_t padded_len = round_up(int64_t(v.len), kKBlock);
  const bool fp8 = job.format == VFormat::fp8_transposed;
  uint4 raw[kChunksPerThread];
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads, key = chunk / kChunksPerRow, row = task.first_row + key;
    raw[j] = row < v.len ? load_chunk(v, in_base + row * v.stride_n + (chunk % kChunksPerRow) * kChunk, vector_loads)
                         : make_uint4(0, 0, 0, 0);
  }
  if (threadIdx.x < d) {
    const int c = threadIdx.x;
    const float mean = job.mean.data ? fold_mean(job.mean, task.head_index, d, c) : 0.0f;
    smem.v.mean[c] = mean;
    float scale = 1.0f;
    if (fp8) {
      const float amax = fold_max(job.absmax, task.head_index, d, c);
      scale = amax > 0.0f ? kFp8Max / amax : 0.0f;
      if (job.scales_out && task.first_row == 0) job.scales_out[task.head_index * d + c] = amax > 0.0f ? amax / kFp8Max : 1.0f;
    }
    smem.v.scale[c] = scale;
    if (job.mean_out && task.first_row == 0) job.mean_out[task.head_index * d + c] = mean;
  }
  __syncthreads();  // the folded mean and scale

  __half* const fp16_tile = reinterpret_cast<__half*>(smem.v.tile);
#pragma unroll
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int chunk = threadIdx.x + j * kThreads, key = chunk / kChunksPerRow, c = (chunk % kChunksPerRow) * kChunk;
    float x[kChunk];
    unpack_chunk(raw[j], v.type, x);
    if (task.first_row + key < v.len) {  // padding keys stay 0
#pragma unroll
      for (int i = 0; i < kChunk; ++i) x[i] = (x[i] - smem.v.mean[c + i]) * smem.v.scale[c + i];
    }
    if (fp8) {
      uint32_t words[2] = {};
#pragma unroll
      for (int i = 0; i < kChunk; ++i) words[i / 4] |= uint32_t(__nv_fp8_e4m3(x[i]).__x) << (8 * (i % 4));
      *reinterpret_cast<uint2*>(smem.v.tile + key * d + c) = make_uint2(words[0], words[1]);
      continue;
    }
    uint4 packed;
    uint32_t* words = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __half2 pair = __floats2half2_rn(x[2 * i], x[2 * i + 1]);
      words[i] = *reinterpret_cast<const uint32_t*>(&pair);
    }
    if (job.format == VFormat::fp16_transposed) {
      *reinterpret_cast<uint4*>(fp16_tile + key * d + c) = packed;
    } else if (task.first_row + key < padded_len) {
      reinterpret_cast<uint4*>(static_cast<__half*>(job.values) + (task.head_index * padded_len + task.first_row) * d)[chunk] =
          packed;
    }
  }
  if (job.format == VFormat::fp16) return;
  __syncthreads();

  // Vᵀ: thread i writes positions [first, first + 16 or 8) of channel i % D.
  const int positions = fp8 ? 16 : 8;
  const int64_t out_base = task.head_index * d * padded_len + task.first_row;
  for (int i = threadIdx.x; i < d * (kKeys / positions); i += kThreads) {
    const int c = i % d, first = (i / d) * positions;
    if (task.first_row + first >= padded_len) break;  // the last CTA's second 64-key block may lie past the padding
    uint32_t words[4] = {};
    if (fp8) {
#pragma unroll
      for (int p = 0; p < 16; ++p) {
        const int position = first + p, key = (position & ~31) | kv_key_at_position(position & 31);
        words[p / 4] |= uint32_t(smem.v.tile[key * d + c]) << (8 * (p % 4));
      }
      *reinterpret_cast<uint4*>(static_cast<uint8_t*>(job.values) + out_base + int64_t(c) * padded_len + first) =
          make_uint4(words[0], words[1], words[2], words[3]);
    } else {
#pragma unroll
      for (int p = 0; p < 8; ++p)
        words[p / 2] |= uint32_t(__half_as_ushort(fp16_tile[(first + p) * d + c])) << (16 * (p % 2));
      *reinterpret_cast<uint4*>(static_cast<__half*>(job.values) + out_base + int64_t(c) * padded_len + first) =
          make_uint4(words[0], words[1], words[2], words[3]);
    }
  }
}

// A job without values (a launch for K alone) has no CTAs.
int ctas_for(const StridedInput& x, const void* values) {
  if (!values) return 0;
  const int rows = rows_per_cta(x.head_dim);
  return (x.len + rows - 1) / rows * x.heads * x.batch;
}

// CTAs [0, q) quantize Q, [q, q + k) K, the rest prepare V.
struct Launch {
  RowsJob q, k;
  VJob v;
  int q_ctas, k_ctas;
  bool q_vector, k_vector, v_vector;
  Granularity granularity;
  bool int4;
};

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads, 4) quantize_qkv_kernel(const __grid_constant__ Launch launch) {
  __shared__ Smem<kHeadDim> smem;
  const int cta = blockIdx.x;
  if (cta < launch.q_ctas)
    quantize_rows<kHeadDim>(launch.q, false, launch.q_vector, launch.granularity, launch.int4, cta, smem);
  else if (cta < launch.q_ctas + launch.k_ctas)
    quantize_rows<kHeadDim>(launch.k, true, launch.k_vector, launch.granularity, launch.int4, cta - launch.q_ctas, smem);
  else
    prepare_v<kHeadDim>(launch.v, launch.v_vector, cta - launch.q_ctas - launch.k_ctas, smem);
}

}  // namespace

void quantize_qkv(const RowsJob& q, const RowsJob& k, const VJob& v, Granularity granularity, bool int4,
                  cudaStream_t stream) {
  const Launch launch{q, k, v, ctas_for(q.x, q.values), ctas_for(k.x, k.values), chunks_aligned(q.x),
                      chunks_aligned(k.x), chunks_aligned(v.v), granularity, int4};
  const unsigned ctas = unsigned(launch.q_ctas + launch.k_ctas + ctas_for(v.v, v.values));
  if (ctas == 0) return;
  const auto kernel = k.x.head_dim == 64 ? quantize_qkv_kernel<64> : quantize_qkv_kernel<128>;
  kernel<<<ctas, kThreads, 0, stream>>>(launch);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace sagevid::kernels::sage2::detail
