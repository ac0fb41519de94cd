// Which query block of which head a CTA of the sm_90 attention grid computes, and the grid that orders them.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace sagevid::kernels::sage2::sm90 {

struct WorkTile {
  int q_block;
  int flat_head;  // batch * q_heads + head
};

// The causal order's sections hold at most this many heads, and at most this many bytes of their K and V
// (quantized) between them: the CTAs of a section run together and read every head's K and V from L2.
constexpr int kCausalSectionHeads = 16;
constexpr int64_t kCausalSectionBytes = int64_t(32) << 20;

// Non-causal: grid (query blocks, heads, batch), (batch, head)-major, so that the CTAs resident together share
// one head's K and V in L2. Causal: a query block's work grows with its index, so the grid takes the heads in
// sections, (heads of the section, query blocks, sections), and runs the heaviest query blocks of a whole
// section first. The grid then ends on the lightest blocks of its last section, not on heavy ones started late.
inline dim3 attention_grid(int q_blocks, int q_heads, int batch, bool causal, int64_t kv_bytes_per_head) {
  if (!causal) return dim3(unsigned(q_blocks), unsigned(q_heads), unsigned(batch));
  const int flat_heads = batch * q_heads;
  // The most heads within both limits that divide the heads, so that every section is full.
  int section =
      int(std::clamp<int64_t>(kCausalSectionBytes / std::max<int64_t>(kv_bytes_per_head, 1), 1, kCausalSectionHeads));
  while (flat_heads % section != 0) --section;
  if (q_blocks > 65535 || flat_heads / section > 65535)
    throw std::invalid_argument(
        "sage2 sm90: causal attention takes at most 65535 query blocks of 64 rows and "
        "65535 sections of heads");
  return dim3(unsigned(section), unsigned(q_blocks), unsigned(flat_heads / section));
}

__host__ __device__ inline int64_t work_count(dim3 grid) { return int64_t(grid.x) * grid.y * grid.z; }

__device__ __forceinline__ WorkTile work_tile(bool causal) {
  if (!causal) return {int(blockIdx.x), int(blockIdx.y + gridDim.y * blockIdx.z)};
  return {int(gridDim.y - 1 - blockIdx.y), int(blockIdx.x + gridDim.x * blockIdx.z)};
}

// The index-th work tile of `grid` in launch order (x fastest), the one its block (x, y, z) would compute: for
// CTAs that each run several (persistent). The same mapping as above, written out twice on purpose: routing the
// block form through this one (or a helper both call) changes the one-warpgroup kernels' register allocation and
// adds spills to them (ptxas; docs/PERFORMANCE.md, 2026-12-04 from 23:43).
__device__ __forceinline__ WorkTile work_tile(unsigned index, dim3 grid, bool causal) {
  const unsigned x = index % grid.x, y = index / grid.x % grid.y, z = index / grid.x / grid.y;
  if (!causal) return {int(x), int(y + grid.y * z)};
  return {int(grid.y - 1 - y), int(x + grid.x * z)};
}

}  // namespace sagevid::kernels::sage2::sm90
