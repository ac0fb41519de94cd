#!/usr/bin/env bash
# Runs a command while sampling the GPU's SM clock, power draw and throttle reasons (nvidia-smi, every 100 ms), then
# prints one line on the samples taken under load: the H200 runs our kernels against its power cap, so a variant's
# speed is also the clock it got (docs/sm90-attention.md). Without nvidia-smi it only runs the command.
#   scripts/clock-sampler.sh CSV COMMAND...     (the samples stay in CSV; exits with COMMAND's status)
set -uo pipefail
csv=$1
shift
command -v nvidia-smi > /dev/null || exec "$@"
nvidia-smi --query-gpu=clocks.sm,power.draw,clocks_throttle_reasons.active --format=csv,noheader,nounits -lms 100 \
  > "$csv" 2> /dev/null &
sampler=$!
"$@"
status=$?
kill "$sampler" 2> /dev/null
wait "$sampler" 2> /dev/null
python3 - "$csv" << 'EOF'
import sys

# Under load: well above the idle draw and the light moments between runs (docs/PERFORMANCE.md, 2026-12-04).
LOAD_WATTS = 250
POWER_CAP_BIT = 0x4  # clocks_throttle_reasons: the software power cap
samples = []
for line in open(sys.argv[1]):
    fields = [f.strip() for f in line.split(",")]
    try:
        samples.append((int(fields[0]), float(fields[1]), int(fields[2], 16)))
    except (ValueError, IndexError):
        continue
loaded = [s for s in samples if s[1] > LOAD_WATTS]
if not loaded:
    print(f"\nclocks: no sample above {LOAD_WATTS} W ({len(samples)} samples)\n")
    sys.exit(0)
clocks = [s[0] for s in loaded]
capped = sum(1 for s in loaded if s[2] & POWER_CAP_BIT)
print(f"\nclocks under load ({len(loaded)} samples above {LOAD_WATTS} W): SM {sum(clocks) / len(clocks):.0f} MHz mean "
      f"({min(clocks)}-{max(clocks)}), {sum(s[1] for s in loaded) / len(loaded):.0f} W mean, "
      f"power cap in {capped} of {len(loaded)}\n")
EOF
exit $status
