#!/usr/bin/env bash
# The main job: set up (idempotent), build, and run the sagevid binary on the built-in tiny config.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec build/server/sagevid --config configs/tiny.json "$@"
