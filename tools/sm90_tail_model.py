#!/usr/bin/env python3
"""How long the persistent sm_90 grid's work takes, in whole work tiles, against the time its work alone would take:
the tail a work plan leaves, for the benchmark's grids, under a greedy-claim model. Two plans: main's
(kernels/src/sm90/work_plan.h: the last round's tiles in parts of their warpgroups) and that of
docs/unlanded/issue14-ragged-last.patch (each head's ragged last tile after every whole one; only the last round's
whole tiles in parts).

Each of the multiprocessors' CTAs claims the next item as soon as its last one ends (as args.work_counter does). An
item of w computing warpgroups out of a CTA's W takes part_time(w, W) of a whole tile's time: a warpgroup's chain of
Q.K^T, softmax and P.V is latency-bound, so fewer warpgroups barely shorten a tile (the values are the ones the kept
last-round split's gains implied: docs/PERFORMANCE.md, 2026-12-05 from 21:49), with +-1% of jitter an item.
`--shared-keys` costs a ragged tile as if its warpgroups shared its query blocks' keys (an open lead,
docs/sm90-attention.md): 1/P of a tile for P warpgroups a query block, plus a merge.

  tools/sm90_tail_model.py [--multiprocessors 132] [--shared-keys]
"""
import argparse
import heapq
import random

# (name, heads, query blocks of 64 rows a head, warpgroups a CTA): sage-bench's non-causal persistent rows
GRIDS = [("CogVideoX-2B", 60, 278, 4), ("CogVideoX-5B", 96, 278, 4), ("CogVideoX1.5-5B", 48, 705, 4),
         ("hd64 8k", 128, 128, 4), ("hd64 32k", 32, 512, 4), ("hd128 8k", 128, 128, 3), ("hd128 32k", 32, 512, 3)]


# --shared-keys: what merging a ragged tile's partial rows (through L2, after a barrier) adds to it: a guess
MERGE_TIME = 0.03


def part_time(w, warpgroups):
    return {4: {1: 0.65, 2: 0.8, 3: 0.92, 4: 1.0}, 3: {1: 0.65, 2: 0.87, 3: 1.0}}[warpgroups][w]


def plan_items(heads, q_blocks, warpgroups, multiprocessors, ragged_last, shared_keys=False):
    """Each item's time in claim order: main's plan (ragged_last False) or the ragged-last one."""
    per_head = -(-q_blocks // warpgroups)
    tiles = [min(warpgroups, q_blocks - x * warpgroups) for _ in range(heads) for x in range(per_head)]
    ragged = q_blocks % warpgroups != 0
    if ragged_last:
        tiles = [w for w in tiles if w == warpgroups] + [w for w in tiles if w < warpgroups]
    count, last_round = len(tiles), len(tiles) % multiprocessors
    ragged_count = heads if ragged_last and ragged else 0
    split_tiles = last_round - min(last_round, ragged_count) if ragged_last else last_round
    idle = multiprocessors - (last_round - split_tiles)
    parts = min(warpgroups, idle // split_tiles) if split_tiles else 1
    items = []
    for index, w in enumerate(tiles):
        if parts >= 2 and count - last_round <= index < count - last_round + split_tiles:
            for part in range(parts):
                first, end = part * warpgroups // parts, (part + 1) * warpgroups // parts
                computing = min(end, w) - first
                # (a part past the queries only streams the keys on a multiprocessor the round leaves idle: a guess)
                items.append(part_time(computing, warpgroups) if computing > 0 else 0.02)
        elif w < warpgroups and shared_keys and warpgroups % w == 0:
            items.append(w / warpgroups + MERGE_TIME)
        else:
            items.append(part_time(w, warpgroups))
    return items


def makespan(items, multiprocessors, seed):
    rnd = random.Random(seed)
    ends = [0.0] * multiprocessors
    for time in items:
        heapq.heappush(ends, heapq.heappop(ends) + time * (1 + rnd.uniform(-0.01, 0.01)))
    return max(ends)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multiprocessors", type=int, default=132)
    parser.add_argument("--shared-keys", action="store_true")
    args = parser.parse_args()
    sms = args.multiprocessors
    print("| grid | work (tiles a CTA) | main's plan | loss | ragged last | loss | gain |")
    print("|---|---|---|---|---|---|---|")
    for name, heads, q_blocks, warpgroups in GRIDS:
        work = heads * q_blocks / warpgroups / sms
        spans = [sum(makespan(plan_items(heads, q_blocks, warpgroups, sms, new, args.shared_keys and new), sms, seed)
                     for seed in range(9)) / 9 for new in (False, True)]
        print(f"| {name} | {work:.2f} | {spans[0]:.2f} | {100 * (spans[0] / work - 1):.2f}% | {spans[1]:.2f} | "
              f"{100 * (spans[1] / work - 1):.2f}% | {100 * (spans[0] / spans[1] - 1):+.2f}% |")


if __name__ == "__main__":
    main()
