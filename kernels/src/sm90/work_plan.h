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

// Which query block a warpgroup computes in a head's ragged last work tile (fewer query blocks than the CTA has
// warpgroups), run by the ragged-tail kernel (attention_sm90.cu): warpgroup w's block is block w where the tile holds
// it; the warpgroups past its blocks join them, each block taking as many sharers as divide evenly, its own warpgroup
// first (index 0), the one of `index` computing every sharers-th key tile from that one on; the first merges the
// others' rows into its own (partial_rows.cuh). A warpgroup left over computes nothing.
struct QueryShare {
  int block;  // in the work tile, 0 .. warpgroups - 1
  int index, sharers;
  // Where the block's sharers leave their rows: index > 0, its own slot; index 0, the first other sharer's, the
  // next ones `blocks` (the tile's) slots apart.
  int slot, blocks;
  bool computes;
};

// `blocks`: the query blocks the tile holds, 1 to warpgroups - 1.
SAGEVID_HD inline QueryShare query_share(int blocks, int warpgroup, int warpgroups) {
  const int sharers = 2 * blocks <= warpgroups ? warpgroups / blocks : 1;
  if (warpgroup < blocks) return {warpgroup, 0, sharers, warpgroup, blocks, true};
  const int idle = warpgroup - blocks;  // among the warpgroups past the tile's blocks
  return {idle % blocks, 1 + idle / blocks, sharers, idle, blocks, idle < (sharers - 1) * blocks};
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
