#!/usr/bin/env python3
"""Where a kernel's warps wait, per SASS instruction: reads the CSV that `scripts/gpu-host.sh
profile-attention-sass` writes (ncu's source page with --print-source sass) and prints the stall samples by
reason, by opcode, by how often their instruction ran against the main loop (what a work tile's ends cost), and the
instructions that hold the most samples with their reasons.

  tools/sass_stalls.py attention-sass.csv [--top N]

Samples are warp states taken at a fixed interval (ncu's "Warp Stall Sampling"); an instruction's share of
them is its share of the kernel's warp time. Reasons that ncu reports but does not give a column of (on
Hopper, the wait of a wgmma for its warpgroup) show as the rest of an instruction's samples.
"""
import argparse
import collections
import csv


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header_at = next(i for i, row in enumerate(rows) if row and row[0] == "Address")
    header = rows[header_at]
    return header, [row for row in rows[header_at + 1:] if len(row) == len(header)]


def number(text):
    try:
        return int(text)
    except ValueError:
        return 0


def print_by_frequency(rows, column, samples_column, total, groups=8):
    """The samples by how often their instruction ran, against the main loop: the execution count that holds the
    most samples. An attention kernel's work-tile ends run once a work tile, i.e. a key tile count times less than
    the loop (CogVideoX-2B: about 139 key tiles a work tile), and what one warp runs for the CTA every tile (a ring's
    refill) as many times less as the CTA has warps; their shares are what those parts of the kernel cost."""
    by_count = collections.Counter()
    for row in rows:
        by_count[number(row[column["Instructions Executed"]])] += number(row[samples_column])
    loop = max(by_count, key=by_count.get)
    by_ratio = collections.Counter()
    for count, samples in by_count.items():
        if count:  # rounded to two digits or so: one part's instructions run a few times more or less
            ratio = loop / count
            by_ratio[round(ratio, 1) if ratio < 10 else int(round(ratio, 0 if ratio < 100 else -1))] += samples
    print(f"\n| runs per run of the main loop ({loop} executions) | share |\n|---|---|")
    for ratio, samples in by_ratio.most_common(groups):
        print(f"| 1/{ratio} | {100 * samples / total:.2f}% |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    header, rows = read(args.csv)
    column = {name: i for i, name in enumerate(header)}
    samples_column = column["Warp Stall Sampling (All Samples)"]
    # (column, reason) for each reason's column of all samples (not its "Not Issued" twin)
    reasons = [(i, name[len("stall_"):]) for i, name in enumerate(header)
               if name.startswith("stall_") and "Not Issued" not in name]
    total = sum(number(row[samples_column]) for row in rows) or 1

    by_reason = collections.Counter()
    by_opcode = collections.Counter()
    for row in rows:
        for i, reason in reasons:
            by_reason[reason] += number(row[i])
        text = row[column["Source"]].split()
        opcode = text[1] if text and text[0].startswith("@") else (text[0] if text else "?")
        by_opcode[opcode.split(".")[0]] += number(row[samples_column])

    print(f"{total} samples over {len(rows)} instructions\n\n| reason | share |\n|---|---|")
    for reason, count in by_reason.most_common():
        if count:
            print(f"| {reason} | {100 * count / total:.1f}% |")
    print("\n| opcode | share |\n|---|---|")
    for opcode, count in by_opcode.most_common(15):
        print(f"| {opcode} | {100 * count / total:.1f}% |")
    print_by_frequency(rows, column, samples_column, total)
    print("\n| instruction | executed | share | main reasons |\n|---|---|---|---|")
    hottest = sorted(rows, key=lambda row: -number(row[samples_column]))[: args.top]
    for row in hottest:
        samples = number(row[samples_column])
        named = sorted(((number(row[i]), reason) for i, reason in reasons), reverse=True)[:3]
        print(f"| `{row[column['Source']].strip()[:60]}` | {row[column['Instructions Executed']]} | "
              f"{100 * samples / total:.2f}% | {', '.join(f'{r} {c}' for c, r in named if c)} |")


if __name__ == "__main__":
    main()
