#!/usr/bin/env bash
# Downloads into .whl/ the Python wheels the GPU host lacks for `scripts/gpu-host.sh diffusers-step`
# (diffusers and what it imports beyond torch/transformers there); carry .whl with the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip download -q -d .whl --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  diffusers==0.39.0 importlib_metadata zipp pillow regex
