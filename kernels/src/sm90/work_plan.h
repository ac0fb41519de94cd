#pragma once
// The persistent sm_90 CTAs' work items: the grid's work tiles (a group of query blocks, a warpgroup's each) in
// launch order, except the tiles of a last round that would leave multiprocessors idle. Those are split into
// parts of consecutive warpgroups, one item each, so that more multiprocessors share the round: a part's
// warpgroups run faster with the others idle (they no longer share the tensor and exponential units), so the
// round ends sooner. A part of a head's last, partly filled tile may hold only warpgroups past the queries: its CTA
// then streams the keys for nothing, beside the others (one such item at CogVideoX1.5-5B's size, none at sage-bench's
// other rows). Host and device: tests/unit/test_sm90_work_plan.cpp checks the items.
#include "sagevid/kernels/host_device.h"

#include <algorithm>
#include <cstdint>

namespace sagevid::kernels::sage2::sm90 {

struct WorkSplit {
  unsigned whole;  // the items before this one are the work tiles of the same index, whole
  unsigned parts;  // each later work tile is this many items (1: none is split)
};

struct WorkItem {
  unsigned tile;  // the work tile's index in launch order
  int first_warpgroup, end_warpgroup;  // the warpgroups that compute in it
};

SAGEVID_HD inline int64_t item_count(int64_t tiles, WorkSplit split) {
  return split.whole + (tiles - split.whole) * split.parts;
}

// Item `item` of a CTA of `warpgroups` (32-bit division: a 64-bit one is a subroutine that spills).
SAGEVID_HD inline WorkItem work_item(unsigned item, WorkSplit split, int warpgroups) {
  if (item < split.whole) return {item, 0, warpgroups};
  const unsigned past = item - split.whole, part = past % split.parts;
  return {split.whole + past / split.parts, int(part * unsigned(warpgroups) / split.parts),
          int((part + 1) * unsigned(warpgroups) / split.parts)};
}

// The split of `tiles` work tiles over `multiprocessors` persistent CTAs: the last round's tiles (all of them when
// there are fewer than the CTAs) into as many parts as the idle multiprocessors allow, at most one a warpgroup.
// Causal grids end on their lightest tiles already (tile_order.cuh), and their ring runs to the last warpgroup's
// diagonal: none is split.
inline WorkSplit split_last_round(int64_t tiles, int64_t multiprocessors, int warpgroups, bool causal) {
  const int64_t last_round = tiles % multiprocessors;
  const WorkSplit whole{unsigned(tiles), 1};
  if (causal || last_round == 0) return whole;
  const int64_t parts = std::min<int64_t>(warpgroups, multiprocessors / last_round);
  if (parts < 2) return whole;
  return {unsigned(tiles - last_round), unsigned(parts)};
}

}  // namespace sagevid::kernels::sage2::sm90
