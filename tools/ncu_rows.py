#!/usr/bin/env python3
"""The harness's timing table again, its kernel times taken from ncu at locked clocks instead of its own events
(which under ncu time the profiler too): scripts/sm90-ab.sh with AB_LOCKED. Each row of the harness's table was
`launches` calls of the attention, the first `skip` of them warm-ups; a call is its main kernel and, where the grid
has a ragged tail, the tail kernel launched after it (`attention_kernel`'s last template argument). A row's time is
the median over its timed calls of the call's kernels' summed durations; its TOPS are the harness's scaled by the
ratio of the two times.
  tools/ncu_rows.py HARNESS_OUTPUT NCU_RAW_CSV [--launches 4] [--skip 1]
NCU_RAW_CSV: `ncu --import REPORT --csv --page raw --print-kernel-base mangled` of a run that collected
gpu__time_duration.sum.
"""
import argparse
import csv
import re
import statistics
import sys

ROW = re.compile(r"^\|(?P<key>(?:[^|]*\|){4})\s*(?P<ms>[\d.]+)\s*\|\s*(?P<tops>[\d.]+)\s*\|$")
# attention_kernel's template arguments, mangled (Li64E...Lb1E) or demangled (<64, ..., true>): the last is the tail's
TEMPLATE = re.compile(r"attention_kernel(?:I(?P<mangled>(?:L[^E]*E)+)EEv|<(?P<demangled>[^>]*)>)")
UNIT_NS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6, "s": 1e9, "second": 1e9}


def kernel_durations_ms(lines):
    """[(is_tail, ms)] of the attention kernels in launch order."""
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        sys.exit("ncu_rows: no ncu CSV header (a line starting with \"ID\")")
    rows = list(csv.reader(lines[start:]))
    header = rows[0]
    name_col, time_col = header.index("Kernel Name"), header.index("gpu__time_duration.sum")
    unit = "nsecond"
    kernels = []
    for row in rows[1:]:
        if len(row) <= time_col:
            continue
        if not row[0]:  # the units row
            unit = row[time_col] or unit
            continue
        template = TEMPLATE.search(row[name_col])
        if not template:
            continue
        value = float(row[time_col].replace(",", ""))
        is_tail = (template["mangled"] or "").endswith("Lb1E") or (template["demangled"] or "").endswith("true")
        kernels.append((is_tail, value * UNIT_NS[unit] / 1e6))
    return kernels


def calls_ms(kernels):
    """Each call's summed kernel time: a main kernel and the tail kernels after it."""
    calls = []
    for is_tail, ms in kernels:
        if is_tail and calls:
            calls[-1] += ms
        else:
            calls.append(ms)
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harness_output")
    parser.add_argument("ncu_csv")
    parser.add_argument("--launches", type=int, default=4, help="attention calls a row (warm-ups included)")
    parser.add_argument("--skip", type=int, default=1, help="warm-up calls a row")
    args = parser.parse_args()
    with open(args.harness_output, encoding="utf-8") as f:
        table = [ROW.match(line.rstrip("\n")) for line in f]
    table = [row for row in table if row]
    with open(args.ncu_csv, encoding="utf-8") as f:
        calls = calls_ms(kernel_durations_ms(f.readlines()))
    if len(calls) != len(table) * args.launches:
        sys.exit(f"ncu_rows: {len(calls)} attention calls profiled for {len(table)} rows of {args.launches}")
    print("| shape | P·V | granularity | P | ms | TOPS |\n|---|---|---|---|---|---|")
    for i, row in enumerate(table):
        timed = calls[i * args.launches + args.skip:(i + 1) * args.launches]
        ms = statistics.median(timed)
        tops = float(row["tops"]) * float(row["ms"]) / ms
        print(f"|{row['key']} {ms:.3f} | {tops:.1f} |")


if __name__ == "__main__":
    main()
