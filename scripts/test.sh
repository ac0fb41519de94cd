#!/usr/bin/env bash
# The test command: set up (idempotent), build, and run every ctest suite. GPU-labelled tests report
# themselves skipped on a machine without a CUDA device; run them on the GPU host (scripts/gpu-host.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j "${SAGEVID_JOBS:-$(nproc)}" "$@"
