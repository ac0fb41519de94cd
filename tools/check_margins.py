#!/usr/bin/env python3
"""How much of its bound each run of one accuracy check used, from Catch2 `-s` output (passes printed too).

A check `CHECK(a > b)` on a cosine uses (1 - a) / (1 - b) of its bound; `CHECK(a < b)` on an error uses a / b. Over
every run of the checks whose expression holds the text given as --check (all seeds and cases in the given logs),
prints how many ran, how many failed, the largest share used and the case that used it. `--also NAME` measures a captured value NAME against the same
bound (e.g. the comparison without the reference's slack): how close it came, and how often it would have failed.
  tools/check_margins.py --check 'vs_reference.cosine >' [--also without_slack.cosine] LOG...
"""
import argparse
import re
import sys

HEADER = re.compile(r"^(\S+:\d+): (PASSED|FAILED):$")
ASSERTION = re.compile(r"^\s+(CHECK|REQUIRE)\w*\((.*)\)$")
EXPANSION = re.compile(r"^\s+(\S+) ([<>]) (\S+)$")
MESSAGE = re.compile(r"^\s+(\S+) := (.*)$")


def runs(lines, check):
    """Each run of the checks whose text holds `check`: (passed, value, operator, bound, messages)."""
    i = 0
    while i < len(lines):
        header = HEADER.match(lines[i])
        i += 1
        assertion = ASSERTION.match(lines[i]) if header and i < len(lines) else None
        if not assertion or check not in assertion.group(2):
            continue
        expansion, messages = None, {}
        while i < len(lines) and not HEADER.match(lines[i]) and not lines[i].startswith("----"):
            if lines[i].startswith("with expansion:") and i + 1 < len(lines):
                expansion = EXPANSION.match(lines[i + 1])
            message = MESSAGE.match(lines[i])
            if message:
                messages[message.group(1)] = message.group(2)
            i += 1
        if expansion:
            yield header.group(2) == "PASSED", float(expansion.group(1)), expansion.group(2), \
                float(expansion.group(3)), messages


def share(value, operator, bound):
    """The share of its bound a value used: cosines by their distance from 1, errors by their size."""
    return (1 - value) / (1 - bound) if operator == ">" else value / bound


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", required=True, help="text of the check's expression, e.g. 'vs_reference.cosine >'")
    parser.add_argument("--also", action="append", default=[], help="a captured value to hold to the same bound")
    parser.add_argument("logs", nargs="+")
    args = parser.parse_args()
    found = []
    for log in args.logs:
        with open(log, errors="replace") as f:
            found += list(runs(f.read().splitlines(), args.check))
    if not found:
        sys.exit(f"no runs of a check holding '{args.check}' in {len(args.logs)} log(s) (were they run with -s?)")
    print(f"{args.check}: {len(found)} runs, {sum(not ok for ok, *_ in found)} failed")
    for name in ["(the check)"] + args.also:
        shares = []
        for ok, value, operator, bound, messages in found:
            if name != "(the check)":
                if name not in messages:
                    continue
                value = float(messages[name])
            shares.append((share(value, operator, bound), messages))
        if not shares:
            print(f"  {name}: never captured")
            continue
        worst, messages = max(shares, key=lambda s: s[0])
        over = sum(s > 1 for s, _ in shares)
        print(f"  {name}: largest share of the bound {worst:.3f}, over it {over} of {len(shares)}")
        print("    at " + ", ".join(f"{k}={v}" for k, v in messages.items()))


if __name__ == "__main__":
    main()
