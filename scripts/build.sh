#!/usr/bin/env bash
# Configures and builds sagevid into build/ (extra arguments go to CMake, e.g. -DSAGEVID_BUILD_SERVER=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SAGEVID_JOBS:-$(nproc)}
cmake -S . -B build -G Ninja "$@"
cmake --build build -j "$jobs"
