#!/usr/bin/env bash
# Builds tools/sage2_sm90_harness.cu (the sm_90a attention kernel alone, no libtorch) against the kernel sources
# in SRC (kernels/src, or a copy of it: scripts/sm90-ab.sh), with ptxas's register and spill report.
#   scripts/build-sm90-harness.sh SRC OUTPUT
# SAGEVID_HARNESS_NVCC_FLAGS: more nvcc options (gpu-host.sh tile-trace: -DSAGEVID_SM90_TILE_TRACE).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$1 output=$2
include=$src/../include  # a copy's own public headers (sm90-ab.sh --prepare), else the tree's
[ -d "$include" ] || include=kernels/include
# shellcheck disable=SC2086  # (the extra options split into words on purpose)
nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas -v --expt-relaxed-constexpr \
  ${SAGEVID_HARNESS_NVCC_FLAGS:-} \
  -I"$include" -I"$src" tools/sage2_sm90_harness.cu "$src/sm90/attention_sm90.cu" kernels/src/cuda_check.cpp \
  kernels/src/device_info.cpp \
  -o "$output"
