#!/usr/bin/env python3
"""One table from scripts/sm90-ab.sh's ab.md: for each timed shape (a row of the harness's `time`), every variant's
TOPS in each pass, and the mean of its passes against the reference variant's (`main` when there is one, else the
first); then each variant's clocks under load. The passes stay visible because the machine drifts between them
(docs/sm90-attention.md).
  tools/ab_summary.py AB.md [--reference NAME]
"""
import argparse
import collections
import re
import sys

SECTION = re.compile(r"^## (?P<variant>\S+), pass \d+$")
CLOCKS = re.compile(r"^clocks under load .*: SM (?P<mhz>\d+) MHz mean")


def parse(lines):
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


def table(tops, clocks, variants, rows, reference):
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
                text += f" ({100 * (mean(passes) / base - 1):+.1f}%)"
            cells.append(text)
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    out.append("| clocks (MHz, each pass) | | | | " +
               " | ".join(" / ".join(str(c) for c in clocks[v]) or "—" for v in variants) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ab_md", help="the ab.md that scripts/sm90-ab.sh wrote")
    parser.add_argument("--reference", help="the variant the others are compared with (default: main, else the first)")
    args = parser.parse_args()
    with open(args.ab_md, encoding="utf-8") as f:
        tops, clocks, variants, rows = parse(f)
    if not variants or not rows:
        sys.exit(f"ab_summary: no timed variant in {args.ab_md}")
    reference = args.reference or ("main" if "main" in variants else variants[0])
    if reference not in variants:
        sys.exit(f"ab_summary: no variant {reference} in {args.ab_md} (has {', '.join(variants)})")
    print(table(tops, clocks, variants, rows, reference))


if __name__ == "__main__":
    main()
