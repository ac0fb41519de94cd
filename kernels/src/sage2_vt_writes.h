#pragma once
// Which part of Vᵀ each thread of the quantization kernel writes (sage2_quant.cu's write_fp8_transposed): item i of
// a slice is the four channels [4 group, 4 group + 4) at the 16 key positions from `first`. A warp takes 16
// channel groups at two adjacent 16-key positions, so that its 16-byte stores along a channel meet in whole 32-byte
// sectors at either head dim (32 groups at one position, as head dim 128 had, half-filled each sector). Host and
// device: tests/unit/test_sage2_vt_writes.cpp checks the mapping.
#include "sagevid/kernels/host_device.h"

namespace sagevid::kernels::sage2::detail {

struct VtWrite {
  int group, first;
};

// Item i of head_dim / 4 * (keys / 16): bijective for head_dim 64 and 128.
SAGEVID_HD constexpr VtWrite vt_write_item(int i, int head_dim) {
  const int group_sets = head_dim / 4 / 16;
  return {i % 16 + 16 * (i / 32 % group_sets), 16 * (i / 16 % 2 + 2 * (i / (32 * group_sets)))};
}

}  // namespace sagevid::kernels::sage2::detail
