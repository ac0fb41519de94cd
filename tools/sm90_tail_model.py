#!/usr/bin/env python3
"""How long the persistent sm_90 grid's work takes, in whole work tiles, against the time its work alone would take:
the tail a work plan leaves, for the benchmark's grids, under a greedy-claim model. Two plans: main's
(kernels/src/sm90/work_plan.h: the tiles in launch order, each head's ragged last tile among them, the last round's
tiles in parts of their warpgroups) and the ragged tail of docs/unlanded/issue14-ragged-tail.patch (each head's
ragged last tile in a kernel of its own, launched after the main kernel on a stream beside it, its idle warpgroups
sharing the tile's key tiles; the main kernel over the whole tiles only, split as main's), where the whole tiles fill
whole rounds.

Each multiprocessor runs one CTA at a time and takes the next item as soon as its last one ends (as the work counters
do; the tail's items last, its CTAs taking the multiprocessors the main kernel's leave). An item of w computing
warpgroups out of a CTA's W takes part_time(w, W) of a whole tile's time: a warpgroup's chain of Q.K^T, softmax and P.V
is latency-bound, so fewer warpgroups barely shorten a tile (the values are the ones the kept last-round split's gains
implied: docs/PERFORMANCE.md, 2026-12-05 from 21:49), with +-1% of jitter an item. A ragged tile whose r query blocks
each get P = W // r >= 2 sharers takes 1/P of a tile plus a merge. Measured (2026-12-06, H200, sage2_sm90_harness tail):
main's tail at CogVideoX1.5-5B 1.0% of the kernel (the model: 1.13%), at hd128 32k 0.2% (the model: 1.30%).

  tools/sm90_tail_model.py [--multiprocessors 132]
"""
import argparse
import heapq
import random

# (name, heads, query blocks of 64 rows a head, warpgroups a CTA): sage-bench's non-causal persistent rows
GRIDS = [("CogVideoX-2B", 60, 278, 4), ("CogVideoX-5B", 96, 278, 4), ("CogVideoX1.5-5B", 48, 705, 4),
         ("hd64 8k", 128, 128, 4), ("hd64 32k", 32, 512, 4), ("hd128 8k", 128, 128, 3), ("hd128 32k", 32, 512, 3)]

# What merging a shared tile's partial rows (through L2, after a barrier) adds to it: a guess
MERGE_TIME = 0.03


def part_time(w, warpgroups):
    return {4: {1: 0.65, 2: 0.8, 3: 0.92, 4: 1.0}, 3: {1: 0.65, 2: 0.87, 3: 1.0}}[warpgroups][w]


def split_items(tiles, warpgroups, multiprocessors):
    """Main's items for a list of tiles (each the count of its query blocks): the last round's in parts."""
    count, last_round = len(tiles), len(tiles) % multiprocessors
    parts = min(warpgroups, multiprocessors // last_round) if last_round else 1
    items = []
    for index, w in enumerate(tiles):
        if parts >= 2 and index >= count - last_round:
            for part in range(parts):
                first, end = part * warpgroups // parts, (part + 1) * warpgroups // parts
                computing = min(end, w) - first
                # (a part past the queries only streams the keys on a multiprocessor the round leaves idle: a guess)
                items.append(part_time(computing, warpgroups) if computing > 0 else 0.02)
        else:
            items.append(part_time(w, warpgroups))
    return items


def plan_items(heads, q_blocks, warpgroups, multiprocessors, ragged_tail):
    """Each item's time in claim order: main's plan, or the main kernel's items and then the ragged tail's."""
    per_head = -(-q_blocks // warpgroups)
    tiles = [min(warpgroups, q_blocks - x * warpgroups) for _ in range(heads) for x in range(per_head)]
    ragged, whole = q_blocks % warpgroups, [w for w in tiles if w == warpgroups]
    # (the patch's rule: only where the whole tiles fill their rounds exactly; elsewhere the tail ends the call later
    # than main's plan, -0.25% at CogVideoX-2B)
    if not ragged_tail or ragged == 0 or 2 * ragged > warpgroups or len(whole) % multiprocessors != 0:
        return split_items(tiles, warpgroups, multiprocessors)
    tail = [1 / (warpgroups // ragged) + MERGE_TIME] * heads
    return split_items(whole, warpgroups, multiprocessors) + tail


def makespan(items, multiprocessors, seed):
    rnd = random.Random(seed)
    ends = [0.0] * multiprocessors
    for time in items:
        heapq.heappush(ends, heapq.heappop(ends) + time * (1 + rnd.uniform(-0.01, 0.01)))
    return max(ends)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multiprocessors", type=int, default=132)
    args = parser.parse_args()
    sms = args.multiprocessors
    print("| grid | work (tiles a CTA) | main's plan | loss | ragged tail | loss | gain |")
    print("|---|---|---|---|---|---|---|")
    for name, heads, q_blocks, warpgroups in GRIDS:
        work = heads * q_blocks / warpgroups / sms
        spans = [sum(makespan(plan_items(heads, q_blocks, warpgroups, sms, tail), sms, seed) for seed in range(9)) / 9
                 for tail in (False, True)]
        print(f"| {name} | {work:.2f} | {spans[0]:.2f} | {100 * (spans[0] / work - 1):.2f}% | {spans[1]:.2f} | "
              f"{100 * (spans[1] / work - 1):.2f}% | {100 * (spans[0] / spans[1] - 1):+.2f}% |")


if __name__ == "__main__":
    main()
