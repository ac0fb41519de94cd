// The second preprocessing pass, one launch for Q, K and V: Q/K smoothing + per-group INT8/INT4 quantization,
// and V for the P·V MMA (FP8 scaled per channel into the transposed, key-permuted layout; or fp16). The token
// statistics of the first pass (sage2_statistics.cu) arrive as partials that every CTA folds itself. Each
// element is read and written once.
#include "sage2_device.cuh"
#include "sage2_preprocess.cuh"
#include "sage2_slices.cuh"
#include "sage2_vt_writes.h"
#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels::sage2::detail {
namespace {

constexpr int kThreads = kPreprocessThreads;

// A CTA works through kSlices consecutive slices (sage2_slices.cuh) of one (batch, head), so that what it sets up
// once (its task, the folded statistics, its chunks' channels and groups) is shared by many rows.
constexpr int kSlices = 8;
constexpr int kRowTiles = slice_rows(64) / kQBlock;  // at most; kQBlock == kKBlock
static_assert(kQBlock == kKBlock, "one tile size for Q and K");

template <int kHeadDim>
union Smem {
  struct {  // both by slice parity
    // Each group's absmax (non-negative floats order like their bit patterns), then its inverse for the rounding.
    unsigned group_amax_bits[2][kRowTiles][kQBlock];
    alignas(16) float mean[2][kRowTiles][kHeadDim];   // what each 64-row block of the slice subtracts
  } rows;
  struct {
    // A slice's keys as written out, [key][channel]: E4M3 bytes or fp16.
    alignas(16) uint8_t tile[slice_rows(kHeadDim) * kHeadDim * 2];
    float mean[kHeadDim], scale[kHeadDim];
    float bound[kHeadDim];            // a sampled scale's: the largest |v − mean| it holds
    unsigned seen_bits[kHeadDim];     // and the CTA's largest, as bits (non-negative floats order like them)
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

// One CTA quantizes kSlices slices of rows of one (batch, head). Per slice: the row absmax is a shuffle
// reduction over the row's lanes, each group's absmax a shared atomic max over its rows, each group's scale and
// inverse one thread's division, and every thread then rounds its own chunks.
template <int kHeadDim, InputType kType, bool kVector>
__device__ void quantize_rows(const RowsJob& job, bool is_key, Granularity granularity, bool int4, int local,
                              Smem<kHeadDim>& smem, uint4* staging) {
  using Chunks = ThreadChunks<kHeadDim>;
  constexpr int d = kHeadDim, kRows = slice_rows(d), kTiles = kRows / kQBlock;
  const Chunks chunks;
  const StridedInput& x = job.x;
  const CtaTask task = task_of(local, x, kRows * kSlices);
  const int num_blocks = (x.len + kQBlock - 1) / kQBlock, padded_len = num_blocks * kQBlock;
  const uint16_t* head_base = static_cast<const uint16_t*>(x.data) + task.batch * x.stride_b + task.head * x.stride_h;
  SliceLoader<d, kVector> loader(x, head_base, task.first_row, padded_len, kSlices, staging);
  const int row_bytes = int4 ? d / 2 : d;
  int8_t* head_out = job.values + task.head_index * padded_len * row_bytes;
  const int groups = int(is_key ? k_groups_per_block(granularity) : q_groups_per_block(granularity));
  const float qmax = int4 ? float(kInt4Max) : float(kInt8Max);
  const bool has_mean = job.block_mean || job.token_mean.data;  // else the mean is zero: nothing to subtract

  // What every slice shares: the token mean (folded once, in every block's place; zero without one), and each
  // chunk's group in its block. Block means (Q smoothing) replace it slice by slice.
  if (!job.block_mean && threadIdx.x < d) {
    const float mean = job.token_mean.data ? fold_mean(job.token_mean, task.head_index, d, threadIdx.x) : 0.0f;
#pragma unroll
    for (int i = 0; i < 2 * kTiles; ++i) smem.rows.mean[i / kTiles][i % kTiles][threadIdx.x] = mean;
    if (job.mean_out && task.first_row == 0) job.mean_out[task.head_index * d + threadIdx.x] = mean;
  }
  // Each chunk's group in its block, and whether the next chunk shares it (the same block and group in every lane
  // of the warp: a key's chunks under per-thread or per-block groups), so that the two take one reduction.
  int group[Chunks::kCount];
  bool joins_next[Chunks::kCount];
#pragma unroll
  for (int j = 0; j < Chunks::kCount; ++j) {
    const int r = chunks.r0 + j * Chunks::kRowStride;
    group[j] = int(is_key ? k_group(r % kQBlock, granularity) : q_group(r % kQBlock, granularity));
    if (j > 0)
      joins_next[j - 1] =
          __all_sync(0xffffffffu, group[j] == group[j - 1] && r / kQBlock == (r - Chunks::kRowStride) / kQBlock);
  }
  joins_next[Chunks::kCount - 1] = false;

  for (int slice = 0; slice < kSlices; ++slice) {
    const int first_row = task.first_row + slice * kRows;
    if (first_row >= padded_len) break;
    uint4 raw[Chunks::kCount];
    loader.take(slice, raw);
    // Zeroing this parity's maxima is safe: the last slice that read them ended before the previous slice's
    // first barrier.
    // clang-format off: clang-format reads `T (*p)[n]` in a function body as a cast and would drop the space.
    unsigned (*group_amax_bits)[kQBlock] = smem.rows.group_amax_bits[slice & 1];
    float (*block_mean)[d] = smem.rows.mean[slice & 1];
    // clang-format on
    if (threadIdx.x < kTiles * kQBlock) group_amax_bits[threadIdx.x / kQBlock][threadIdx.x % kQBlock] = 0;
    if (job.block_mean && threadIdx.x < kTiles * d) {
      const int tile = threadIdx.x / d, block = min(first_row / kQBlock + tile, num_blocks - 1);
      block_mean[tile][threadIdx.x % d] = job.block_mean[(task.head_index * num_blocks + block) * d + threadIdx.x % d];
    }
    __syncthreads();

    // A chunk's smoothed values: computed twice (for the absmax, then to round), cheaper than holding them.
    // clang-format off: the same for `T (&v)[n]` in a lambda's parameters.
    const auto smoothed = [&](int j, float (&v)[kChunk]) {
      // clang-format on
      const int row = first_row + chunks.r0 + j * Chunks::kRowStride;
      unpack_chunk<kType>(raw[j], v);
      if (!has_mean || row >= x.len) return;  // padding rows stay 0
      const float* mean = block_mean[(row - first_row) / kQBlock] + chunks.c;
#pragma unroll
      for (int i = 0; i < kChunk; ++i) v[i] = v[i] - mean[i];
    };
    float amax = 0.0f;  // over the chunks since the last that did not join its next
#pragma unroll
    for (int j = 0; j < Chunks::kCount; ++j) {
      float v[kChunk];
      smoothed(j, v);
#pragma unroll
      for (int i = 0; i < kChunk; ++i) amax = fmaxf(amax, fabsf(v[i]));
      if (joins_next[j]) continue;  // warp-uniform
      for (int offset = 1; offset < Chunks::kPerRow; offset <<= 1)  // the row's lanes: aligned, a power of two
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
      const int r = chunks.r0 + j * Chunks::kRowStride;
      if (chunks.c == 0) atomicMax(&group_amax_bits[r / kQBlock][group[j]], __float_as_uint(amax));
      amax = 0.0f;
    }
    __syncthreads();

    // Each group's scale out, and its inverse in its absmax's place for the rounding.
    if (threadIdx.x < kTiles * groups) {
      const int tile = threadIdx.x / groups, block = first_row / kQBlock + tile;
      unsigned& bits = group_amax_bits[tile][threadIdx.x % groups];
      const float amax = __uint_as_float(bits);
      if (block < num_blocks)
        job.scales[(task.head_index * num_blocks + block) * groups + threadIdx.x % groups] =
            amax > 0.0f ? amax / qmax : 1.0f;
      bits = __float_as_uint(amax > 0.0f ? qmax / amax : 0.0f);
    }
    __syncthreads();

    // Round: eight int8 values are one 8-byte store, eight int4 ones a 4-byte store.
#pragma unroll
    for (int j = 0; j < Chunks::kCount; ++j) {
      const int r = chunks.r0 + j * Chunks::kRowStride;
      if (first_row + r >= padded_len) break;  // the last slice may end past the padding
      const float inv = __uint_as_float(group_amax_bits[r / kQBlock][group[j]]);
      float v[kChunk];
      smoothed(j, v);
      int8_t* out = head_out + int64_t(first_row + r) * row_bytes + (int4 ? chunks.c / 2 : chunks.c);
      if (!int4) {
        // v · inv lies within ±127 (|v| <= amax). Adding 1.5 · 2^23 rounds it to an integer (to nearest even,
        // as __float2int_rn) in the low mantissa bits, whose low byte is the int8 in two's complement.
        uint32_t bits[kChunk];
#pragma unroll
        for (int i = 0; i < kChunk; ++i) bits[i] = __float_as_uint(__fadd_rn(__fmul_rn(v[i], inv), 12582912.0f));
        const auto pack4 = [](const uint32_t* b) {
          return __byte_perm(__byte_perm(b[0], b[1], 0x0040), __byte_perm(b[2], b[3], 0x0040), 0x5410);
        };
        *reinterpret_cast<uint2*>(out) = make_uint2(pack4(bits), pack4(bits + 4));
      } else {
        uint32_t packed = 0;
#pragma unroll
        for (int i = 0; i < kChunk; ++i)  // low nibble = even channel
          packed |= uint32_t(max(-int(qmax), min(int(qmax), __float2int_rn(v[i] * inv))) & 0xF) << (4 * i);
        *reinterpret_cast<uint32_t*>(out) = packed;
      }
    }
  }
}

// Vᵀ from a slice's keys staged in shared memory as [key][channel] E4M3 bytes: each thread's items
// (sage2_vt_writes.h) gather channels [4g, 4g + 4) at the 16 output positions from `first` (one 32-bit load per
// key, then byte permutes) and write the four channels' 16 bytes each. Position first + p holds key
// first + kv_key_at_position(p) (first is a multiple of 16, and the permutation keeps each 16 keys in place).
template <int kHeadDim, int kKeys>
__device__ void write_fp8_transposed(const uint8_t* tile, int first_row, int padded_len, uint8_t* out) {
  for (int i = threadIdx.x; i < kHeadDim / 4 * (kKeys / 16); i += kThreads) {
    const auto [g, first] = vt_write_item(i, kHeadDim / 4, 16);
    if (first_row + first >= padded_len) continue;  // the last slice's second 64-key block may lie past the padding
    uint32_t key_words[16];
#pragma unroll
    for (int p = 0; p < 16; ++p)
      key_words[p] = *reinterpret_cast<const uint32_t*>(tile + (first + kv_key_at_position(p)) * kHeadDim + 4 * g);
    uint32_t channel[4][4];  // [channel 4g + j][positions 4q .. 4q + 3]
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const uint32_t* w = key_words + 4 * q;
      const uint32_t bytes01_0and1 = __byte_perm(w[0], w[1], 0x5140), bytes23_0and1 = __byte_perm(w[2], w[3], 0x5140);
      const uint32_t bytes01_2and3 = __byte_perm(w[0], w[1], 0x7362), bytes23_2and3 = __byte_perm(w[2], w[3], 0x7362);
      channel[0][q] = __byte_perm(bytes01_0and1, bytes23_0and1, 0x5410);
      channel[1][q] = __byte_perm(bytes01_0and1, bytes23_0and1, 0x7632);
      channel[2][q] = __byte_perm(bytes01_2and3, bytes23_2and3, 0x5410);
      channel[3][q] = __byte_perm(bytes01_2and3, bytes23_2and3, 0x7632);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
      *reinterpret_cast<uint4*>(out + int64_t(4 * g + j) * padded_len + first) =
          make_uint4(channel[j][0], channel[j][1], channel[j][2], channel[j][3]);
  }
}

// The same for fp16 keys: each thread's items (sage2_vt_writes.h) write positions [first, first + 8) of channel c.
template <int kHeadDim, int kKeys>
__device__ void write_fp16_transposed(const __half* tile, int first_row, int padded_len, __half* out) {
  for (int i = threadIdx.x; i < kHeadDim * (kKeys / 8); i += kThreads) {
    const auto [c, first] = vt_write_item(i, kHeadDim, 8);
    if (first_row + first >= padded_len) continue;
    uint32_t words[4] = {};
#pragma unroll
    for (int p = 0; p < 8; ++p)
      words[p / 2] |= uint32_t(__half_as_ushort(tile[(first + p) * kHeadDim + c])) << (16 * (p % 2));
    *reinterpret_cast<uint4*>(out + int64_t(c) * padded_len + first) =
        make_uint4(words[0], words[1], words[2], words[3]);
  }
}

// A sampled-scale V CTA's largest |v − mean| a channel: into the head's exact absmax, and the head flagged where one
// passes its channel's bound (each CTA's own test; any of them flags).
template <int kHeadDim>
__device__ void note_sampled_bound(const SampledVScale& sampled, int64_t head_index, const float (&seen)[kChunk],
                                   Smem<kHeadDim>& smem) {
  const ThreadChunks<kHeadDim> chunks;
#pragma unroll
  for (int i = 0; i < kChunk; ++i) atomicMax(&smem.v.seen_bits[chunks.c + i], __float_as_uint(seen[i]));
  __syncthreads();
  if (threadIdx.x >= kHeadDim) return;
  const unsigned bits = smem.v.seen_bits[threadIdx.x];
  atomicMax(reinterpret_cast<unsigned*>(sampled.exact_absmax + head_index * kHeadDim) + threadIdx.x, bits);
  if (__uint_as_float(bits) > smem.v.bound[threadIdx.x]) sampled.flagged[head_index] = 1;
}

// One CTA prepares kSlices slices of keys of V. Per slice it loads its chunks, subtracts the mean and scales
// (FP8), then either stores fp16 rows directly or stages the keys as written out (E4M3 bytes or fp16) in
// shared memory and writes Vᵀ in 16-byte stores along each channel (write_fp8_transposed,
// write_fp16_transposed). With a sampled FP8 scale it also keeps each channel's largest |v − mean| and flags the
// head where one passes the scale's bound (SampledVScale).
template <int kHeadDim, InputType kType, bool kVector>
__device__ void prepare_v(const VJob& job, int local, Smem<kHeadDim>& smem, uint4* staging) {
  using Chunks = ThreadChunks<kHeadDim>;
  constexpr int kKeys = slice_rows(kHeadDim), d = kHeadDim;
  const Chunks chunks;
  const StridedInput& v = job.v;
  const CtaTask task = task_of(local, v, kKeys * kSlices);
  const uint16_t* head_base = static_cast<const uint16_t*>(v.data) + task.batch * v.stride_b + task.head * v.stride_h;
  const int padded_len = round_up(v.len, kKBlock);
  SliceLoader<d, kVector> loader(v, head_base, task.first_row, padded_len, kSlices, staging);
  const bool fp8 = job.format == VFormat::fp8_transposed;
  const bool has_mean = job.mean.data != nullptr;  // else zero: nothing to subtract
  const bool sampled = fp8 && job.sampled.flagged;
  if (threadIdx.x < d) {
    const int c = threadIdx.x;
    const float mean = has_mean ? fold_mean(job.mean, task.head_index, d, c) : 0.0f;
    smem.v.mean[c] = mean;
    float scale = 1.0f;
    if (fp8) {
      const float amax = fold_max(job.absmax, task.head_index, d, c) * (sampled ? kVScaleMargin : 1.0f);
      smem.v.bound[c] = amax;
      smem.v.seen_bits[c] = 0;
      scale = amax > 0.0f ? kFp8Max / amax : 0.0f;
      if (job.scales_out && task.first_row == 0)
        job.scales_out[task.head_index * d + c] = amax > 0.0f ? amax / kFp8Max : 1.0f;
    }
    smem.v.scale[c] = scale;
    if (job.mean_out && task.first_row == 0) job.mean_out[task.head_index * d + c] = mean;
  }
  __syncthreads();  // the folded mean and scale
  float mean[kChunk], scale[kChunk];
#pragma unroll
  for (int i = 0; i < kChunk; ++i) mean[i] = smem.v.mean[chunks.c + i], scale[i] = smem.v.scale[chunks.c + i];

  __half* const fp16_tile = reinterpret_cast<__half*>(smem.v.tile);
  float seen[kChunk] = {};  // a sampled scale's: the thread's largest |v − mean| a channel
  for (int slice = 0; slice < kSlices; ++slice) {
    const int first_row = task.first_row + slice * kKeys;
    if (first_row >= padded_len) break;
    uint4 raw[Chunks::kCount];
    loader.take(slice, raw);
    if (slice > 0 && job.format != VFormat::fp16) __syncthreads();  // the previous slice's Vᵀ is out of the tile
#pragma unroll
    for (int j = 0; j < Chunks::kCount; ++j) {
      const int key = chunks.r0 + j * Chunks::kRowStride;
      float x[kChunk];
      unpack_chunk<kType>(raw[j], x);
      if (first_row + key < v.len) {  // padding keys stay 0
        if (has_mean) {
#pragma unroll
          for (int i = 0; i < kChunk; ++i) x[i] -= mean[i];
        }
        if (sampled) {
#pragma unroll
          for (int i = 0; i < kChunk; ++i) seen[i] = fmaxf(seen[i], fabsf(x[i]));
        }
#pragma unroll
        for (int i = 0; i < kChunk; ++i) x[i] *= scale[i];
      }
      if (fp8) {
        *reinterpret_cast<uint2*>(smem.v.tile + key * d + chunks.c) =
            make_uint2(pack_e4m3x4(x[0], x[1], x[2], x[3]), pack_e4m3x4(x[4], x[5], x[6], x[7]));
        continue;
      }
      uint4 packed;
      uint32_t* words = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const __half2 pair = __floats2half2_rn(x[2 * i], x[2 * i + 1]);
        words[i] = *reinterpret_cast<const uint32_t*>(&pair);
      }
      if (job.format == VFormat::fp16_transposed) *reinterpret_cast<uint4*>(fp16_tile + key * d + chunks.c) = packed;
      else if (first_row + key < padded_len)
        *reinterpret_cast<uint4*>(static_cast<__half*>(job.values) +
                                  (task.head_index * padded_len + first_row + key) * d + chunks.c) = packed;
    }
    if (job.format == VFormat::fp16) continue;
    __syncthreads();

    const int64_t out_base = task.head_index * d * padded_len + first_row;
    if (fp8)
      write_fp8_transposed<d, kKeys>(smem.v.tile, first_row, padded_len, static_cast<uint8_t*>(job.values) + out_base);
    else write_fp16_transposed<d, kKeys>(fp16_tile, first_row, padded_len, static_cast<__half*>(job.values) + out_base);
  }
  if (sampled) note_sampled_bound(job.sampled, task.head_index, seen, smem);
}

// A job without values (a launch for K alone) has no CTAs.
int ctas_for(const StridedInput& x, const void* values) {
  if (!values) return 0;
  const int rows = slice_rows(x.head_dim) * kSlices;
  return (x.len + rows - 1) / rows * x.heads * x.batch;
}

// CTAs [0, q) quantize Q, [q, q + k) K, the rest prepare V. Q, K and V share their element type. flagged_only: V's
// heads not flagged there are left as they are (requantize_flagged_v).
struct Launch {
  RowsJob q, k;
  VJob v;
  int q_ctas, k_ctas;
  Granularity granularity;
  bool int4;
  const int* flagged_only = nullptr;
};

// kVector: every chunk of Q, K and V is one aligned 16-byte load.
template <int kHeadDim, InputType kType, bool kVector>
__global__ void __launch_bounds__(kThreads, 4) quantize_qkv_kernel(const __grid_constant__ Launch launch) {
  __shared__ Smem<kHeadDim> smem;
  extern __shared__ uint4 staging[];  // SliceLoader's two buffers (kVector only)
  const int cta = blockIdx.x;
  if (cta < launch.q_ctas)
    quantize_rows<kHeadDim, kType, kVector>(launch.q, false, launch.granularity, launch.int4, cta, smem, staging);
  else if (cta < launch.q_ctas + launch.k_ctas)
    quantize_rows<kHeadDim, kType, kVector>(launch.k, true, launch.granularity, launch.int4, cta - launch.q_ctas, smem,
                                            staging);
  else {
    const int local = cta - launch.q_ctas - launch.k_ctas;
    if (launch.flagged_only &&
        !launch.flagged_only[task_of(local, launch.v.v, slice_rows(kHeadDim) * kSlices).head_index])
      return;
    prepare_v<kHeadDim, kType, kVector>(launch.v, local, smem, staging);
  }
}

template <int kHeadDim>
void launch_for_head_dim(const Launch& launch, bool vector, InputType type, unsigned ctas, cudaStream_t stream) {
  const auto kernel = type == InputType::bf16 ? (vector ? quantize_qkv_kernel<kHeadDim, InputType::bf16, true>
                                                        : quantize_qkv_kernel<kHeadDim, InputType::bf16, false>)
                                              : (vector ? quantize_qkv_kernel<kHeadDim, InputType::fp16, true>
                                                        : quantize_qkv_kernel<kHeadDim, InputType::fp16, false>);
  const int staging_bytes = vector ? kStagingBytes<kHeadDim> : 0;
  // Over the 48 KB a kernel gets without asking once the static shared memory is added.
  SAGEVID_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, staging_bytes));
  kernel<<<ctas, kThreads, staging_bytes, stream>>>(launch);
}

// `ctas` CTAs of the kernel for x's head dim and element type (every job of a launch shares them).
void launch_quantize(const Launch& launch, const StridedInput& x, bool vector, unsigned ctas, cudaStream_t stream) {
  if (ctas == 0) return;
  if (x.head_dim == 64) launch_for_head_dim<64>(launch, vector, x.type, ctas, stream);
  else launch_for_head_dim<128>(launch, vector, x.type, ctas, stream);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace

void requantize_flagged_v(const VJob& sampled, cudaStream_t stream) {
  VJob exact = sampled;
  exact.absmax = {sampled.sampled.exact_absmax, 1, 1.0f};
  exact.sampled = {};
  exact.mean_out = nullptr;  // written already
  const Launch launch{{}, {}, exact, 0, 0, Granularity::per_thread, false, sampled.sampled.flagged};
  launch_quantize(launch, exact.v, chunks_aligned(exact.v), unsigned(ctas_for(exact.v, exact.values)), stream);
}

void quantize_qkv(const RowsJob& q, const RowsJob& k, const VJob& v, Granularity granularity, bool int4,
                  cudaStream_t stream) {
  const Launch launch{q, k, v, ctas_for(q.x, q.values), ctas_for(k.x, k.values), granularity, int4, nullptr};
  const unsigned ctas = unsigned(launch.q_ctas + launch.k_ctas + ctas_for(v.v, v.values));
  const auto aligned = [](const StridedInput& x, const void* values) { return !values || chunks_aligned(x); };
  const bool vector = aligned(q.x, q.values) && aligned(k.x, k.values) && aligned(v.v, v.values);
  const StridedInput& first = q.values ? q.x : k.values ? k.x : v.v;  // all share the type and head dim
  launch_quantize(launch, first, vector, ctas, stream);
}

}  // namespace sagevid::kernels::sage2::detail
