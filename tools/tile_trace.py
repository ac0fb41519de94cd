#!/usr/bin/env python3
"""How a persistent sm_90 CTA's warpgroups move against each other, from the clock at the start of each key tile
that a -DSAGEVID_SM90_TILE_TRACE harness records (`scripts/gpu-host.sh tile-trace`): per CTA, a warpgroup's tile
period, how many tiles each warpgroup runs ahead of warpgroup 0 (negative: behind), and how close their phases within
a tile are.

  tools/tile_trace.py TRACE...      (the harness's tile-trace-*.txt: one clock a line, [CTA][warpgroup][tile])
  tools/tile_trace.py --check       (the reading of a synthetic trace, as a unit test)

Phase coherence: the length of the mean of the warpgroups' phases within a tile as unit vectors, averaged over the
tiles; 1 when they start their tiles together, about 0.45 for four at random phases.
"""
import argparse
import cmath
import math
import random
import re
import statistics
from pathlib import Path

KERNEL_HEADER = Path(__file__).resolve().parent.parent / "kernels/src/sm90/attention_sm90.h"


def trace_room():
    """The trace buffer's shape, as the kernel's header declares it: kTraceCtas, kTraceWarpgroups, kTraceTiles."""
    header = KERNEL_HEADER.read_text()
    return tuple(int(re.search(rf"\b{name} = (\d+)", header).group(1))
                 for name in ("kTraceCtas", "kTraceWarpgroups", "kTraceTiles"))


TRACE_CTAS, TRACE_WARPGROUPS, TRACE_TILES = trace_room()
SETTLED = 50  # tiles left out at the start, where the warpgroups have not reached their steady lags


def split(clocks):
    """[CTA][warpgroup] lists of tile start clocks; the warpgroups a CTA are the non-zero blocks over the CTAs."""
    blocks = [clocks[i:i + TRACE_TILES] for i in range(0, len(clocks), TRACE_TILES)]
    written = [b for b in blocks if any(b)]
    if len(written) % TRACE_CTAS:
        raise ValueError(f"{len(written)} warpgroups' traces do not divide over {TRACE_CTAS} CTAs")
    warpgroups = len(written) // TRACE_CTAS
    return [blocks[c * warpgroups:(c + 1) * warpgroups] for c in range(TRACE_CTAS)]


def read_cta(warpgroups):
    """Tile period (cycles), how many tiles each warpgroup starts its tiles ahead of warpgroup 0 (the median over the
    settled tiles), mean phase coherence."""
    tiles = min(sum(1 for t in w if t) for w in warpgroups)
    if tiles <= SETTLED + 1:
        raise ValueError(f"only {tiles} tiles traced")
    first = warpgroups[0]
    period = statistics.median(first[i + 1] - first[i] for i in range(tiles - 1))
    leads = [statistics.median((first[i] - w[i]) / period for i in range(SETTLED, tiles)) for w in warpgroups]
    coherence = statistics.mean(
        abs(sum(cmath.exp(2j * math.pi * (w[i] - first[i]) / period) for w in warpgroups)) / len(warpgroups)
        for i in range(SETTLED, tiles))
    return period, leads, coherence


def report(path):
    with open(path) as f:
        clocks = [int(line) for line in f if line.strip()]
    print(f"{path}\n\n| CTA | tile period (cycles) | tiles ahead of warpgroup 0 (1, 2, ...) | phase coherence |\n"
          "|---|---|---|---|")
    for cta, warpgroups in enumerate(split(clocks)):
        period, leads, coherence = read_cta(warpgroups)
        lead_text = ", ".join(f"{lead:+.2f}" for lead in leads[1:])
        print(f"| {cta} | {period:.0f} | {lead_text} | {coherence:.2f} |")
    print()


def synthetic(warpgroups, leads, period=3000, jitter=150, seed=1):
    """A trace of TRACE_CTAS CTAs whose warpgroup w starts tile n at (n - leads[w]) periods, give or take jitter."""
    rnd = random.Random(seed)
    clocks = []
    for _ in range(TRACE_CTAS):
        for w in range(warpgroups):
            clocks += [int(10**6 + (n - leads[w]) * period + rnd.uniform(-jitter, jitter)) for n in range(TRACE_TILES)]
    return clocks + [0] * (TRACE_CTAS * (TRACE_WARPGROUPS - warpgroups) * TRACE_TILES)  # the harness's buffer's room


def check():
    for leads, aligned in (([0, 5.35, 5.5, 5.75], False), ([0, 1, -2], True)):
        ctas = split(synthetic(len(leads), leads))
        assert len(ctas) == TRACE_CTAS and all(len(c) == len(leads) for c in ctas)
        period, read_leads, coherence = read_cta(ctas[0])
        assert abs(period - 3000) < 60, period
        assert all(abs(r - l) < 0.05 for r, l in zip(read_leads, leads)), read_leads
        assert (coherence > 0.95) if aligned else (coherence < 0.6), coherence
    print("ok: leads, periods and phase coherence read back from synthetic traces of four and three warpgroups")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="*")
    parser.add_argument("--check", action="store_true", help="read synthetic traces and check the reading")
    args = parser.parse_args()
    if args.check:
        check()
    for path in args.traces:
        report(path)


if __name__ == "__main__":
    main()
