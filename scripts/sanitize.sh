#!/usr/bin/env bash
# Builds everything with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and runs the CPU
# suites (every test but the GPU-labelled ones); any finding fails its test. About 30 min cold on 2 cores.
# The CUDA device code is not instrumented (nvcc); libtorch, gRPC and FFmpeg are used uninstrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
sanitizers="-fsanitize=address,undefined -fno-sanitize-recover=all"
cmake -S . -B build-asan -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DCMAKE_CXX_FLAGS="$sanitizers -fno-omit-frame-pointer -g1" \
  -DCMAKE_EXE_LINKER_FLAGS="$sanitizers" \
  -DCMAKE_SHARED_LINKER_FLAGS="$sanitizers"
cmake --build build-asan -j "${SAGEVID_JOBS:-$(nproc)}"
# protect_shadow_gap=0: the CUDA runtime maps memory where ASan's shadow gap would be.
export ASAN_OPTIONS="protect_shadow_gap=0:detect_leaks=1:abort_on_error=0:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
ctest --test-dir build-asan --output-on-failure -LE gpu -j "${SAGEVID_JOBS:-$(nproc)}" "$@"
