#!/usr/bin/env python3
"""One table from an A/B run's variants, each row's passes side by side and the mean of its passes against the
reference variant's (`main` when there is one, else the first): the passes stay visible because the machine drifts
between them (docs/sm90-attention.md). Two kinds of runs:
- scripts/sm90-ab.sh's ab.md (the harness's `time` rows): TOPS, then each variant's clocks under load;
- scripts/gpu-host.sh bench-ab's bench-ab.md (sage-bench per variant): each shape's preprocessing ms, TOPS and
  sage2/cuDNN in turn, lone and back to back.
  tools/ab_summary.py AB.md [--reference NAME]
"""
import argparse
import collections
import re
import sys

SECTION = re.compile(r"^## (?P<variant>\S+), pass \d+$")
CLOCKS = re.compile(r"^clocks under load .*: SM (?P<mhz>\d+) MHz mean")


def parse_harness(lines):
    """{variant: {row key: [TOPS per pass]}}, {variant: [MHz per pass]}, variants and rows in order of appearance."""
    tops = collections.defaultdict(lambda: collections.defaultdict(list))
    clocks = collections.defaultdict(list)
    variants, rows = [], []
    variant = None
    for line in lines:
        line = line.rstrip("\n")
        section = SECTION.match(line)
        if section:
            variant = section["variant"]
            if variant not in variants:
                variants.append(variant)
            continue
        clock = CLOCKS.match(line)
        if clock and variant:
            clocks[variant].append(int(clock["mhz"]))
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if variant is None or not line.startswith("|") or len(cells) != 6 or not re.fullmatch(r"[\d.]+", cells[5]):
            continue
        key = " | ".join(cells[:4])
        if key not in rows:
            rows.append(key)
        tops[variant][key].append(float(cells[5]))
    return tops, clocks, variants, rows


def mean(values):
    return sum(values) / len(values) if values else None


def against(passes, base):
    """The mean of a variant's passes against the reference's mean, as a percentage to append."""
    return f" ({100 * (mean(passes) / base - 1):+.1f}%)"


def harness_table(tops, clocks, variants, rows, reference):
    out = [f"A/B summary: TOPS per pass, and the mean of the passes against {reference}'s", ""]
    out.append("| shape | P·V | granularity | P | " + " | ".join(variants) + " |")
    out.append("|---" * (4 + len(variants)) + "|")
    for key in rows:
        base = mean(tops[reference].get(key, []))
        cells = []
        for v in variants:
            passes = tops[v].get(key, [])
            if not passes:
                cells.append("—")
                continue
            text = " / ".join(f"{t:.0f}" for t in passes)
            if v != reference and base:
                text += against(passes, base)
            cells.append(text)
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    out.append("| clocks (MHz, each pass) | | | | " +
               " | ".join(" / ".join(str(c) for c in clocks[v]) or "—" for v in variants) + " |")
    return "\n".join(out)


BENCH_HEADER = "| shape | B | H | N | D | causal |"
BACK_TO_BACK = "The same calls back to back"


def parse_bench(lines):
    """{variant: {(shape, timing): [(prep ms, TOPS, in turn or None) per pass]}}, variants and rows in order. A pass's
    first table is its lone calls (15 columns), the one after BACK_TO_BACK its calls back to back (8 columns); the
    modes table after them is left out."""
    passes = collections.defaultdict(lambda: collections.defaultdict(list))
    variants, rows = [], []
    variant, timing = None, None
    for line in lines:
        line = line.rstrip("\n")
        section = SECTION.match(line)
        if section:
            variant, timing = section["variant"], "lone"
            if variant not in variants:
                variants.append(variant)
            continue
        if line.startswith(BACK_TO_BACK):
            timing = "back to back"
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if variant is None or not line.startswith("|") or not re.fullmatch(r"[\d.]+", cells[-1]):
            continue
        if timing == "lone" and len(cells) == 15:
            value = (float(cells[6]), float(cells[8]), float(cells[14]))
        elif timing == "back to back" and len(cells) == 8:
            value = (float(cells[1]), float(cells[3]), None)
        else:
            continue
        key = (cells[0], timing)
        if key not in rows:
            rows.append(key)
        passes[variant][key].append(value)
    return passes, variants, rows


def bench_table(passes, variants, rows, reference):
    out = [f"A/B summary: per pass, and the mean TOPS of the passes against {reference}'s", ""]
    out.append("| shape | timing | " + " | ".join(f"prep ms, {v}" for v in variants) + " | " +
               " | ".join(f"TOPS, {v}" for v in variants) + " | " + " | ".join(f"in turn, {v}" for v in variants) +
               " |")
    out.append("|---" * (2 + 3 * len(variants)) + "|")
    for key in sorted(rows, key=lambda k: k[1] != "lone"):  # (a stable sort: each timing's rows in order)
        base = mean([p[1] for p in passes[reference].get(key, [])])
        columns = {"prep": [], "tops": [], "turn": []}
        for v in variants:
            got = passes[v].get(key, [])
            columns["prep"].append(" / ".join(f"{p[0]:.3f}" for p in got) or "—")
            tops = " / ".join(f"{p[1]:.0f}" for p in got) or "—"
            if got and v != reference and base:
                tops += against([p[1] for p in got], base)
            columns["tops"].append(tops)
            columns["turn"].append(" / ".join(f"{p[2]:.2f}" for p in got if p[2] is not None))
        out.append(f"| {key[0]} | {key[1]} | " + " | ".join(columns["prep"] + columns["tops"] + columns["turn"]) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ab_md", help="the ab.md of scripts/sm90-ab.sh, or the bench-ab.md of gpu-host.sh bench-ab")
    parser.add_argument("--reference", help="the variant the others are compared with (default: main, else the first)")
    args = parser.parse_args()
    with open(args.ab_md, encoding="utf-8") as f:
        lines = f.readlines()
    bench = any(line.startswith(BENCH_HEADER) for line in lines)
    if bench:
        passes, variants, rows = parse_bench(lines)
    else:
        tops, clocks, variants, rows = parse_harness(lines)
    if not variants or not rows:
        sys.exit(f"ab_summary: no timed variant in {args.ab_md}")
    reference = args.reference or ("main" if "main" in variants else variants[0])
    if reference not in variants:
        sys.exit(f"ab_summary: no variant {reference} in {args.ab_md} (has {', '.join(variants)})")
    print(bench_table(passes, variants, rows, reference) if bench else
          harness_table(tops, clocks, variants, rows, reference))


if __name__ == "__main__":
    main()
