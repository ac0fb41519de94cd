#!/usr/bin/env bash
# A/B of sm_90 attention kernel variants in the standalone harness (tools/sage2_sm90_harness.cu), on the GPU host:
# "tree" is this working tree's kernels/src, any other name a folder .carry/ab/<name>/src holding a copy of
# kernels/src (git-ignored; carry .carry). Each variant is built, runs `check` (and memcheck), then `time`,
# the variants interleaved pass by pass so that drifts of the machine fall on all of them.
#   scripts/sm90-ab.sh [variant...]        (default: tree and every folder of .carry/ab)
#   scripts/sm90-ab.sh --prepare REF...    (here, before the call: each git ref's kernels/src into .carry/ab/REF)
# AB_MEMCHECK: the variants memcheck runs for (default all); AB_PASSES: timing passes (default 2); AB_NOCHECK:
# variants timed without `check` (diagnostics that leave a stage out, wrong by design). Each run is
# bounded in time (a kernel that hangs must not take the call's whole limit). The
# timing table (ab.md, each pass with the clocks it ran at: scripts/clock-sampler.sh) goes to $OUT or ./out, the
# logs packed beside it into logs-ab.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --prepare ]; then
  shift
  for ref in "$@"; do
    rm -rf ".carry/ab/$ref" && mkdir -p ".carry/ab/$ref" && git archive "$ref" kernels/src | tar -x -C ".carry/ab/$ref" &&
      mv ".carry/ab/$ref/kernels/src" ".carry/ab/$ref/src" && rmdir ".carry/ab/$ref/kernels" || exit 1
  done
  exit 0
fi
out=${OUT:-out}
mkdir -p "$out"
trap 'scripts/pack-logs.sh "$out" ab' EXIT  # the logs in one file: the device tool brings back 8
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(tree $([ -d .carry/ab ] && cd .carry/ab && ls -d */ | tr -d /))
source_of() { [ "$1" = tree ] && echo kernels/src || echo ".carry/ab/$1/src"; }
for v in "${variants[@]}"; do
  src=$(source_of "$v")
  scripts/build-sm90-harness.sh "$src" "/tmp/ab-$v" > "$out/ab-build-$v.log" 2>&1 &
done
wait
status=0
for v in "${variants[@]}"; do
  [ -x "/tmp/ab-$v" ] || { echo "build of $v failed:"; tail -20 "$out/ab-build-$v.log"; exit 1; }
  case " ${AB_NOCHECK:-} " in *" $v "*) echo "== $v: timed only (AB_NOCHECK)"; continue ;; esac
  echo "== check $v" | tee -a "$out/ab-check.log"
  timeout 120 "/tmp/ab-$v" check >> "$out/ab-check.log" 2>&1 || { echo "check of $v failed or hung:"; tail -5 "$out/ab-check.log"; exit 1; }
  tail -1 "$out/ab-check.log"
  case " ${AB_MEMCHECK:-${variants[*]}} " in
    *" $v "*)
      timeout 300 compute-sanitizer --tool memcheck "/tmp/ab-$v" check > "$out/ab-memcheck-$v.log" 2>&1 || status=1
      echo "memcheck $v: $(tail -1 "$out/ab-memcheck-$v.log")" ;;
  esac
done
for pass in $(seq 1 "${AB_PASSES:-2}"); do
  for v in "${variants[@]}"; do
    echo "## $v, pass $pass" >> "$out/ab.md"
    scripts/clock-sampler.sh "$out/clocks-$v-$pass.csv" timeout 200 "/tmp/ab-$v" time >> "$out/ab.md" 2>&1 || status=1
  done
done
cat "$out/ab.md"
exit $status
