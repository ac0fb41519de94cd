// The quantization kernel's Vᵀ writes (kernels/src/sage2_vt_writes.h): each (unit, position) of a slice written by
// exactly one item, and a warp's items paired along each channel so that its 16-byte stores fill whole 32-byte
// sectors, for FP8 (units of four channels, 16 keys a position) and fp16 (one channel, 8 keys) at both head dims.
#include "catch.h"

#include "sage2_vt_writes.h"

#include <map>
#include <utility>
#include <vector>

using sagevid::kernels::sage2::detail::vt_write_item;

TEST_CASE("Vᵀ's write items: each unit and position once, a warp's stores in whole sectors", "[sage2]") {
  const int head_dim = GENERATE(64, 128);
  const bool fp8 = GENERATE(true, false);
  const int units = fp8 ? head_dim / 4 : head_dim, position_keys = fp8 ? 16 : 8;
  const int keys = 8192 / head_dim;  // a slice's keys (sage2_quant.cu's slice_rows)
  const int positions = keys / position_keys, items = units * positions;
  CAPTURE(head_dim, fp8);
  std::vector<int> written(items, 0);
  for (int warp = 0; warp < items / 32; ++warp) {
    std::map<std::pair<int, int>, int> lanes;  // (unit, first) -> how many of this warp's lanes write it
    for (int lane = 0; lane < 32; ++lane) {
      const auto [unit, first] = vt_write_item(32 * warp + lane, units, position_keys);
      REQUIRE(unit >= 0);
      REQUIRE(unit < units);
      REQUIRE(first % position_keys == 0);
      REQUIRE(first >= 0);
      REQUIRE(first < keys);
      ++written[unit * positions + first / position_keys];
      ++lanes[{unit, first}];
    }
    // A 32-byte sector of a channel holds positions 2k and 2k + 1: the warp writes both or neither.
    for (const auto& [at, lane_count] : lanes) {
      const auto [unit, first] = at;
      CAPTURE(warp, unit, first, lane_count);
      CHECK(lanes.count({unit, first ^ position_keys}) == 1);
    }
  }
  for (int count : written) CHECK(count == 1);
}
