#!/usr/bin/env bash
# The whole service on the GPU, measured per attention backend: starts `sagevid serve` on a CogVideoX folder
# (configs/cogvideox-2b-bench.json: bf16 on CUDA, the backend chosen per request, loopback only), waits until it
# reports SERVING, and drives it with `sagevid-client bench`: 49 frames of 480x720, $SAGEVID_BENCH_STEPS (default 4)
# denoising steps, one warm-up and $SAGEVID_BENCH_REQUESTS (default 3) measured requests per backend, one at a
# time, sage2, flash and cudnn. Then SIGTERM: the server must drain and exit 0. Writes OUT_DIR/server.md (the
# Markdown table with its parameters), server-bench.log (the client's progress) and server.log.
#   scripts/bench-server.sh BUILD_DIR MODEL_DIR OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: bench-server.sh BUILD_DIR MODEL_DIR OUT_DIR}
model=${2:?}
out=${3:?}
steps=${SAGEVID_BENCH_STEPS:-4}
requests=${SAGEVID_BENCH_REQUESTS:-3}
client=$build/clients/sagevid-client

"$build/server/sagevid" serve --config configs/cogvideox-2b-bench.json --set "models.0.path=$model" \
  > "$out/server.log" 2>&1 &
server=$!
trap 'kill -KILL $server 2>/dev/null' EXIT  # only if the script dies before stopping it

# Loading the weights (12 GiB at 2B) takes a while; a server that exits early fails at once.
waited=0
until "$client" health > /dev/null 2>&1; do
  kill -0 $server 2> /dev/null || { echo "bench-server: the server exited while loading"; tail -20 "$out/server.log"; exit 1; }
  [ $waited -lt 600 ] || { echo "bench-server: not SERVING after 600 s"; tail -20 "$out/server.log"; exit 1; }
  sleep 1
  waited=$((waited + 1))
done
echo "bench-server: SERVING after ${waited} s"

{
  echo "# sagevid serve: one request at a time, per attention backend"
  echo
  echo "- Device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)." \
       "Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "- Model: $model (bf16, CUDA). Requests: 49 frames 480x720, $steps steps, seed 42; one warm-up then" \
       "$requests measured per backend. Times in seconds; the 50-step rows are extrapolations from the median step."
  echo
} > "$out/server.md"
"$client" --deadline 1800 bench --frames 49 --height 480 --width 720 --steps "$steps" --seed 42 \
  --requests "$requests" --warmup 1 --backend sage2 --backend flash --backend cudnn --markdown \
  >> "$out/server.md" 2> "$out/server-bench.log"
bench=$?
{ echo; echo "Server status after the runs:"; echo '```'; "$client" status 2>&1; echo '```'; } >> "$out/server.md"
cat "$out/server.md"

kill -TERM $server
wait $server
stopped=$?
trap - EXIT
[ $stopped = 0 ] || echo "bench-server: the server exited $stopped after SIGTERM (expected 0)"
[ $bench = 0 ] || { echo "bench-server: the bench failed ($bench)"; tail -20 "$out/server-bench.log"; }
[ $bench = 0 ] && [ $stopped = 0 ]
