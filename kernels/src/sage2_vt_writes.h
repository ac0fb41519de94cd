#pragma once
// Which part of Vᵀ each thread of the quantization kernel writes (sage2_quant.cu's write_fp8_transposed and
// write_fp16_transposed): item i of a slice is one unit (four channels of E4M3 bytes, or one channel of fp16) at the
// `position_keys` keys from `first`, 16 bytes. A warp takes 16 units at two adjacent positions, so that its stores
// along a channel meet in whole 32-byte sectors (32 units at one position half-filled each sector). Host and device:
// tests/unit/test_sage2_vt_writes.cpp checks the mapping.
#include "sagevid/kernels/host_device.h"

namespace sagevid::kernels::sage2::detail {

struct VtWrite {
  int unit, first;
};

// Item i of units * (slice keys / position_keys); units a multiple of 16.
SAGEVID_HD constexpr VtWrite vt_write_item(int i, int units, int position_keys) {
  const int unit_sets = units / 16;
  return {i % 16 + 16 * (i / 32 % unit_sets), position_keys * (i / 16 % 2 + 2 * (i / (32 * unit_sets)))};
}

}  // namespace sagevid::kernels::sage2::detail
