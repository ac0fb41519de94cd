#!/usr/bin/env bash
# The main job: set up (idempotent), build, start the gRPC server on the built-in tiny model, generate a video
# with the client (written to out/tiny.mp4 as it streams in), then stop the server (SIGTERM: it drains).
# Extra arguments go to `sagevid-client generate` (e.g. --prompt "..." --seed 7 --backend math).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
mkdir -p out
build/server/sagevid serve --config configs/tiny.json > out/server.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null && wait $server' EXIT
client=build/clients/sagevid-client
for _ in $(seq 120); do  # health is NOT_SERVING until the model has loaded
  kill -0 $server 2>/dev/null || { cat out/server.log; exit 1; }
  $client health > /dev/null 2>&1 && break
  sleep 0.5
done
$client generate --prompt "a panda playing a guitar in a bamboo forest" --frames 17 --height 64 --width 96 \
  --steps 10 --seed 42 --output out/tiny.mp4 "$@"
echo "video: out/tiny.mp4 (server log: out/server.log)"
