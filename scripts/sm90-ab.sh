#!/usr/bin/env bash
# A/B of sm_90 attention kernel variants in the standalone harness (tools/sage2_sm90_harness.cu), on the GPU host:
# "tree" is this working tree's kernels/src, any other name a folder .carry/ab/<name>/src holding a copy of
# kernels/src (git-ignored; carry .carry). Each variant is built, runs `check` (and memcheck), then `time`,
# the variants interleaved pass by pass so that drifts of the machine fall on all of them.
#   scripts/sm90-ab.sh [variant...]        (default: tree and every folder of .carry/ab)
#   scripts/sm90-ab.sh --prepare [NAME=]REF[+PATCH]...  (here, before the call: each git ref's kernels/src, with
#                       the CMakeLists of kernels/ and tools/, into .carry/ab/NAME, or REF; +PATCH: with that patch
#                       applied, e.g. prefetch=main+docs/unlanded/issue14-prep-l2-prefetch.patch)
# AB_ROWS=128: the harness's head-dim-128 cases and rows only (`check128`, `time128`: a change to those kernels
# alone, in little device time). AB_MEMCHECK: the variants memcheck runs for (default all); AB_PASSES: timing passes
# (default 2); AB_LOCKED: time the harness's `locked` rows under ncu at the GPU's base clocks instead of its `time`
# rows; AB_NOCHECK: variants timed without `check` (diagnostics that leave a stage out, wrong by design). Each run
# is bounded in time (a kernel that hangs must not take the call's whole limit); a variant that fails to build or
# check is reported and left out of the timing, and the script exits non-zero. The
# timing table (ab.md, each pass with the clocks it ran at: scripts/clock-sampler.sh) goes to $OUT or ./out with its
# summary (ab-summary.md, tools/ab_summary.py: each row's variants side by side, against main's), the logs packed
# beside them into logs-ab.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
if [ "${1:-}" = --prepare ]; then
  shift
  for spec in "$@"; do
    name=${spec%%=*} ref=${spec#*=}  # NAME=REF, or REF named after itself
    patch=
    [[ $ref == *+* ]] && patch=${ref#*+} ref=${ref%%+*}
    # kernels/src with its public headers, and the CMakeLists that list its files (gpu-host.sh's build_ab_copy builds
    # the tree with them)
    rm -rf ".carry/ab/$name" && mkdir -p ".carry/ab/$name" &&
      git archive "$ref" kernels/src kernels/include kernels/CMakeLists.txt tools/CMakeLists.txt |
      tar -x -C ".carry/ab/$name" &&
      { [ -z "$patch" ] || git apply --directory=".carry/ab/$name" "$patch"; } &&
      mv ".carry/ab/$name/kernels/src" ".carry/ab/$name/src" &&
      mv ".carry/ab/$name/kernels/include" ".carry/ab/$name/include" &&
      mv ".carry/ab/$name/kernels/CMakeLists.txt" ".carry/ab/$name/kernels.cmake" &&
      mv ".carry/ab/$name/tools/CMakeLists.txt" ".carry/ab/$name/tools.cmake" &&
      rmdir ".carry/ab/$name/kernels" ".carry/ab/$name/tools" || exit 1
  done
  exit 0
fi
out=${OUT:-out}
mkdir -p "$out"
trap 'scripts/pack-logs.sh "$out" ab' EXIT  # the logs in one file: the device tool brings back 8
variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  variants=(tree)
  for copy in .carry/ab/*/; do [ -d "$copy" ] && variants+=("$(basename "$copy")"); done
fi
source_of() { [ "$1" = tree ] && echo kernels/src || echo ".carry/ab/$1/src"; }
for v in "${variants[@]}"; do
  src=$(source_of "$v")
  scripts/build-sm90-harness.sh "$src" "/tmp/ab-$v" > "$out/ab-build-$v.log" 2>&1 &
done
wait
status=0
timed=()  # the variants that built and passed their check: a broken one is reported and left out, not the call lost
for v in "${variants[@]}"; do
  [ -x "/tmp/ab-$v" ] || { echo "build of $v failed (left out):"; tail -20 "$out/ab-build-$v.log"; status=1; continue; }
  case " ${AB_NOCHECK:-} " in *" $v "*) echo "== $v: timed only (AB_NOCHECK)"; timed+=("$v"); continue ;; esac
  echo "== check $v" | tee -a "$out/ab-check.log"
  if ! timeout 120 "/tmp/ab-$v" "check${AB_ROWS:-}" >> "$out/ab-check.log" 2>&1; then
    echo "check of $v failed or hung (left out):"; tail -5 "$out/ab-check.log"; status=1; continue
  fi
  tail -1 "$out/ab-check.log"
  timed+=("$v")
  case " ${AB_MEMCHECK:-${variants[*]}} " in
    *" $v "*)
      timeout 300 compute-sanitizer --tool memcheck "/tmp/ab-$v" "check${AB_ROWS:-}" > "$out/ab-memcheck-$v.log" 2>&1 ||
        status=1
      echo "memcheck $v: $(tail -1 "$out/ab-memcheck-$v.log")" ;;
  esac
done
[ ${#timed[@]} -gt 0 ] || exit 1
# A pass of one variant: the harness's `time` rows with the clocks they ran at, or (AB_LOCKED) its `locked` rows
# timed by ncu at the GPU's base clocks, where the power cap's clock swings do not spread them (tools/ncu_rows.py).
time_pass() {
  local v=$1 pass=$2
  if [ -z "${AB_LOCKED:-}" ]; then
    scripts/clock-sampler.sh "$out/clocks-$v-$pass.csv" timeout 200 "/tmp/ab-$v" "time${AB_ROWS:-}"
    return
  fi
  local run=$out/locked-$v-$pass
  timeout 300 ncu --clock-control base --metrics gpu__time_duration.sum -k regex:attention_kernel -f \
    -o "/tmp/locked-$v-$pass" "/tmp/ab-$v" locked > "$run.txt" 2>&1 &&
    ncu --import "/tmp/locked-$v-$pass.ncu-rep" --csv --page raw --print-kernel-base mangled > "$run.csv" &&
    python3 tools/ncu_rows.py "$run.txt" "$run.csv"
}
for pass in $(seq 1 "${AB_PASSES:-2}"); do
  for v in "${timed[@]}"; do
    echo "## $v, pass $pass" >> "$out/ab.md"
    time_pass "$v" "$pass" >> "$out/ab.md" 2>&1 || status=1
  done
done
cat "$out/ab.md"
python3 tools/ab_summary.py "$out/ab.md" | tee "$out/ab-summary.md"  # each row's variants side by side
exit $status
