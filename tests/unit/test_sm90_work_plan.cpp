// The persistent sm_90 CTAs' work items (kernels/src/sm90/work_plan.h): every warpgroup of every work tile computed
// by exactly one item, the last round split only where it leaves multiprocessors idle, and never past them.
#include "catch.h"

#include "sm90/work_plan.h"

#include <vector>

namespace sm90 = sagevid::kernels::sage2::sm90;

TEST_CASE("sm_90 work items: each warpgroup of each tile once, the last round in parts", "[sage2]") {
  const int warpgroups = GENERATE(3, 4);
  const int64_t multiprocessors = GENERATE(132, 114);
  // The benchmark's grids (hd128 32k: 5,472 tiles at three warpgroups; CogVideoX1.5-5B: 8,496 at four; hd64 32k:
  // 4,096), a round exactly, fewer tiles than multiprocessors, and one more than a round.
  const int64_t tiles = GENERATE(5472, 8496, 4096, 264, 12, 1, 133);
  const bool causal = GENERATE(false, true);
  CAPTURE(warpgroups, multiprocessors, tiles, causal);
  const sm90::WorkSplit split = sm90::split_last_round(tiles, multiprocessors, warpgroups, causal);
  const int64_t items = sm90::item_count(tiles, split);
  const int64_t last_round = tiles % multiprocessors;
  CAPTURE(split.whole, split.parts, items);

  if (causal || last_round == 0) {
    CHECK(split.parts == 1u);
    CHECK(items == tiles);
  } else {
    // The split round still fits the multiprocessors, one item each; and it was split whenever two parts would.
    CHECK(items - int64_t(split.whole) <= multiprocessors);
    CHECK(split.parts <= unsigned(warpgroups));
    CHECK((split.parts > 1) == (2 * last_round <= multiprocessors));
    if (split.parts > 1) CHECK(int64_t(split.whole) == tiles - last_round);
  }

  std::vector<int> computed(size_t(tiles * warpgroups), 0);
  for (int64_t i = 0; i < items; ++i) {
    const sm90::WorkItem item = sm90::work_item(unsigned(i), split, warpgroups);
    REQUIRE(int64_t(item.tile) < tiles);
    REQUIRE(0 <= item.first_warpgroup);
    REQUIRE(item.first_warpgroup < item.end_warpgroup);  // no item without a warpgroup
    REQUIRE(item.end_warpgroup <= warpgroups);
    for (int w = item.first_warpgroup; w < item.end_warpgroup; ++w) ++computed[size_t(item.tile * warpgroups + w)];
  }
  for (size_t i = 0; i < computed.size(); ++i) {
    CAPTURE(i);
    REQUIRE(computed[i] == 1);
  }
}

TEST_CASE("sm_90 work items: the benchmark's split rounds", "[sage2]") {
  // hd128 32k on 132 multiprocessors: 41 whole rounds, then 60 tiles as 120 items of one and two warpgroups.
  const sm90::WorkSplit hd128 = sm90::split_last_round(5472, 132, 3, false);
  CHECK(hd128.whole == 5412u);
  CHECK(hd128.parts == 2u);
  CHECK(sm90::work_item(5412, hd128, 3).first_warpgroup == 0);
  CHECK(sm90::work_item(5412, hd128, 3).end_warpgroup == 1);
  CHECK(sm90::work_item(5413, hd128, 3).first_warpgroup == 1);
  CHECK(sm90::work_item(5413, hd128, 3).end_warpgroup == 3);
  CHECK(sm90::work_item(5413, hd128, 3).tile == 5412u);
  // hd64 8k and 32k: 4 tiles left over, each as four items of one warpgroup.
  CHECK(sm90::split_last_round(4096, 132, 4, false).parts == 4u);
  // CogVideoX-2B: 108 tiles left over, too many to split.
  CHECK(sm90::split_last_round(4200, 132, 4, false).parts == 1u);
}

TEST_CASE("sm_90 ragged tail: each query block once first, its sharers' key tiles and slots apart", "[sage2]") {
  const int warpgroups = GENERATE(3, 4);
  const int blocks = GENERATE(1, 2, 3);  // the ragged tile's query blocks
  if (blocks >= warpgroups) return;
  CAPTURE(warpgroups, blocks);
  const int sharers = 2 * blocks <= warpgroups ? warpgroups / blocks : 1;
  std::vector<std::vector<int>> indices(static_cast<size_t>(blocks));  // by block: its sharers' indices
  std::vector<int> slot_users(static_cast<size_t>(warpgroups - 1), 0);
  for (int w = 0; w < warpgroups; ++w) {
    CAPTURE(w);
    const sm90::QueryShare share = sm90::query_share(blocks, w, warpgroups);
    // The tile's own blocks stay with their warpgroups, first of their sharers.
    CHECK((w < blocks) == (share.computes && share.index == 0));
    if (w < blocks) CHECK(share.block == w);
    CHECK(share.sharers == sharers);
    CHECK(share.blocks == blocks);
    if (!share.computes) continue;
    REQUIRE(share.block >= 0);
    REQUIRE(share.block < blocks);
    indices[size_t(share.block)].push_back(share.index);
    if (share.index > 0) {
      REQUIRE(share.slot >= 0);
      REQUIRE(share.slot < warpgroups - 1);  // a CTA's slots: one for each warpgroup but the first
      ++slot_users[size_t(share.slot)];
      // The block's first sharer finds it where it looks: its own slot index, then `blocks` apart.
      CHECK(share.slot == sm90::query_share(blocks, share.block, warpgroups).slot + (share.index - 1) * blocks);
    }
  }
  for (std::vector<int>& got : indices) {
    std::sort(got.begin(), got.end());
    REQUIRE(int(got.size()) == sharers);
    for (int i = 0; i < sharers; ++i) CHECK(got[size_t(i)] == i);  // each key-tile stride once
  }
  for (const int users : slot_users) CHECK(users <= 1);
  // The benchmark's ragged tails: CogVideoX1.5-5B one block of four (four sharers), CogVideoX-2B two of four (two),
  // hd128 32k two of three (none: it keeps its ragged tiles in the main kernel).
  CHECK(sm90::query_share(1, 3, 4).index == 3);
  CHECK(sm90::query_share(2, 3, 4).block == 1);
  CHECK(sm90::query_share(2, 2, 3).computes == false);
}
