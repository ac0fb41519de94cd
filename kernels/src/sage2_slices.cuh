#pragma once
// A preprocessing CTA's rows of one (batch, head) in slices: the rows every thread holds at once, four 8-channel
// chunks each, all loaded before any is used; each slice's loads in flight while the one before is worked on.
// Shared by the statistics pass (sage2_statistics.cu) and the quantization pass (sage2_quant.cu).
#include "cp_async.cuh"
#include "sage2_preprocess.cuh"

namespace sagevid::kernels::sage2::detail {

SAGEVID_HD constexpr int slice_rows(int head_dim) { return 4 * kPreprocessThreads * kChunk / head_dim; }

// The chunks of a slice a thread holds: rows r0, r0 + kRowStride, ... of the slice, channels [c, c + 8) in
// each (the lanes of a row adjacent, so every thread keeps its channels in every slice).
template <int kHeadDim>
struct ThreadChunks {
  static constexpr int kPerRow = kHeadDim / kChunk, kRowStride = kPreprocessThreads / kPerRow;
  static constexpr int kCount = slice_rows(kHeadDim) / kRowStride;
  int r0 = int(threadIdx.x) / kPerRow, c = int(threadIdx.x) % kPerRow * kChunk;
};

// The two buffers of SliceLoader's staged chunks.
template <int kHeadDim>
constexpr int kStagingBytes = 2 * ThreadChunks<kHeadDim>::kCount * kPreprocessThreads * int(sizeof(uint4));

// A CTA's slices of one (batch, head) as its threads' chunks, each slice's loaded while the one before is worked
// on: aligned chunks (kVector) are copied by cp.async into the thread's own slots of two shared-memory buffers,
// so the loads of slice i + 1 are in flight during slice i at no cost in registers; unaligned ones are loaded
// into registers as the slice starts.
template <int kHeadDim, bool kVector>
class SliceLoader {
 public:
  using Chunks = ThreadChunks<kHeadDim>;
  static constexpr int kRows = slice_rows(kHeadDim);

  // At most max_slices slices of kRows rows from first_row; those past padded_len are not loaded (the caller stops
  // there).
  __device__ SliceLoader(const StridedInput& x, const uint16_t* head_base, int first_row, int padded_len,
                         int max_slices, uint4* staging)
      : x_(x),
        head_base_(head_base),
        first_row_(first_row),
        staging_(staging),
        slices_(min(max_slices, (padded_len - first_row + kRows - 1) / kRows)) {
    if constexpr (kVector) stage(0);
  }
  __device__ ~SliceLoader() {
    if constexpr (kVector) wait_copies<0>();  // none may land in shared memory after the CTA is gone
  }

  // Slice `slice`'s chunks; slices are taken in order, each once. Rows past the sequence read zero.
  __device__ void take(int slice, uint4 (&raw)[Chunks::kCount]) {
    if constexpr (!kVector) {
#pragma unroll
      for (int j = 0; j < Chunks::kCount; ++j) {
        const uint16_t* p = chunk(slice, j);
        raw[j] = p ? load_chunk(p, /*vector_loads=*/false) : make_uint4(0, 0, 0, 0);
      }
    } else {
      if (slice + 1 < slices_) stage(slice + 1);
      else commit_copies();  // an empty group: the wait below still leaves one group pending
      wait_copies<1>();
      const uint4* buffer = staging_ + (slice & 1) * Chunks::kCount * kPreprocessThreads;
#pragma unroll
      for (int j = 0; j < Chunks::kCount; ++j) raw[j] = buffer[j * kPreprocessThreads + threadIdx.x];
    }
  }

 private:
  // The thread's chunk j of slice `slice`, or null past the sequence.
  __device__ const uint16_t* chunk(int slice, int j) const {
    const int row = first_row_ + slice * kRows + chunks_.r0 + j * Chunks::kRowStride;
    return row < x_.len ? head_base_ + int64_t(row) * x_.stride_n + chunks_.c : nullptr;
  }

  // Slice `slice`'s chunks into buffer slice % 2, whose previous slice this thread has taken already.
  __device__ void stage(int slice) {
    uint4* buffer = staging_ + (slice & 1) * Chunks::kCount * kPreprocessThreads;
#pragma unroll
    for (int j = 0; j < Chunks::kCount; ++j) {
      const uint16_t* p = chunk(slice, j);
      copy_async_16(buffer + j * kPreprocessThreads + threadIdx.x, p ? p : head_base_, p != nullptr);
    }
    commit_copies();
  }

  const Chunks chunks_;
  const StridedInput& x_;
  const uint16_t* head_base_;
  int first_row_;
  uint4* staging_;
  int slices_;
};

}  // namespace sagevid::kernels::sage2::detail
