// The quantization kernel's Vᵀ writes (kernels/src/sage2_vt_writes.h): each (channel group, 16-key position) of a
// slice written by exactly one item, and a warp's items paired along each channel so that its stores fill whole
// 32-byte sectors, at both head dims.
#include "catch.h"

#include "sage2_vt_writes.h"

#include <map>
#include <utility>
#include <vector>

using sagevid::kernels::sage2::detail::vt_write_item;

TEST_CASE("Vᵀ's write items: each group and position once, a warp's stores in whole sectors", "[sage2]") {
  const int head_dim = GENERATE(64, 128);
  const int groups = head_dim / 4, keys = 8192 / head_dim;  // a slice's keys (sage2_quant.cu's slice_rows)
  const int items = groups * keys / 16;
  CAPTURE(head_dim);
  std::vector<int> written(items, 0);
  for (int warp = 0; warp < items / 32; ++warp) {
    std::map<std::pair<int, int>, int> lanes;  // (group, first) -> how many of this warp's lanes write it
    for (int lane = 0; lane < 32; ++lane) {
      const auto [group, first] = vt_write_item(32 * warp + lane, head_dim);
      REQUIRE(group >= 0);
      REQUIRE(group < groups);
      REQUIRE(first % 16 == 0);
      REQUIRE(first >= 0);
      REQUIRE(first < keys);
      ++written[group * (keys / 16) + first / 16];
      ++lanes[{group, first}];
    }
    // A 32-byte sector of a channel holds positions 2k and 2k + 1: the warp writes both or neither.
    for (const auto& [at, lane_count] : lanes) {
      const auto [group, first] = at;
      CAPTURE(warp, group, first, lane_count);
      CHECK(lanes.count({group, first ^ 16}) == 1);
    }
  }
  for (int count : written) CHECK(count == 1);
}
