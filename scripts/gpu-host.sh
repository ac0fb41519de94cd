#!/usr/bin/env bash
# Everything we do on the GPU host in one call: build kernels, models, tests and tools there (no gRPC/FFmpeg
# on that machine, so the server is off), then run what is asked: tests (gpu|unit suites), accuracy
# (sage-accuracy), bench (sage-bench: attention kernels), step (sagevid-bench: one transformer step per
# backend), diffusers-step (the same step in diffusers), pipeline (a random-weight CogVideoX-2B folder at real
# sizes, then sagevid-pipeline-bench on it). diffusers-step and pipeline need the wheels of
# `scripts/fetch-gpu-wheels.sh` in .whl/, carried along. Default: tests accuracy bench. Logs and tables go to $OUT (the device tool's return
# folder) or ./out.
#   scripts/gpu-host.sh [harness] [tests] [accuracy] [bench] [step] [diffusers-step] [pipeline] [profile-prep]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
archs=${SAGEVID_CUDA_ARCHS:-90a}
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
git log -1 --format='%H %s' > "$out/commit.txt" 2>/dev/null || true
build_all() {
  [ -n "${built:-}" ] && return 0
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
    -DCMAKE_CUDA_COMPILER="$(which nvcc)" -DSAGEVID_BUILD_SERVER=OFF -DCMAKE_CUDA_ARCHITECTURES="$archs" \
    > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
  time cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -m20 -E "error|Error" "$out/build.log"; exit 1; }
  built=1
}
install_wheels() {
  python3 -m pip install -q --no-deps --no-index --target /tmp/sagevid-py .whl/*.whl > "$out/pip.log" 2>&1
}
steps=${*:-tests accuracy bench}
status=0
for step in $steps; do
  [ "$step" = harness ] || build_all
  case $step in
    harness)
      nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas -v -Ikernels/include -Ikernels/src \
        tools/sage2_sm90_harness.cu kernels/src/sm90/attention_sm90.cu kernels/src/cuda_check.cpp \
        -o /tmp/sm90-harness > "$out/harness-build.log" 2>&1 || { tail -30 "$out/harness-build.log"; status=1; continue; }
      /tmp/sm90-harness check 2>&1 | tee "$out/harness-check.log" || status=1
      compute-sanitizer --tool memcheck /tmp/sm90-harness check > "$out/harness-memcheck.log" 2>&1 || status=1
      tail -3 "$out/harness-memcheck.log"
      /tmp/sm90-harness time 2>&1 | tee "$out/harness-time.md" || status=1 ;;
    profile-prep)  # each preprocessing kernel's time and memory throughput at the hd64 8k shape (ncu)
      ncu --clock-control none --section SpeedOfLight build-gpu/tools/sage-bench --profile-preprocessing \
        > "$out/profile-prep.log" 2>&1 || status=1
      grep -E "^  [a-zA-Z_].*\(|Duration|Memory Throughput|DRAM Throughput" "$out/profile-prep.log" | tail -80 ;;
    tests)
      ctest --test-dir build-gpu --output-on-failure -L "${SAGEVID_TEST_LABELS:-gpu|unit}" -j 4 > "$out/ctest.log" 2>&1 || status=1
      grep -E "tests passed|Failed|\*\*\*" "$out/ctest.log" | tail -30 ;;
    accuracy) build-gpu/tools/sage-accuracy | tee "$out/accuracy.md" || status=1 ;;
    bench) build-gpu/tools/sage-bench | tee "$out/bench.md" || status=1 ;;
    step) build-gpu/tools/sagevid-bench | tee "$out/step.md" || status=1 ;;
    diffusers-step)
      install_wheels && PYTHONPATH=/tmp/sagevid-py python3 tools/diffusers_step_bench.py | tee "$out/diffusers-step.md" ||
        status=1 ;;
    pipeline)
      model=/tmp/cogvideox-2b-random
      [ -f "$model/model_index.json" ] || { install_wheels &&
        PYTHONPATH=/tmp/sagevid-py python3 tools/make_random_cogvideox.py "$model" > "$out/make-model.log" 2>&1; } ||
        { tail -20 "$out/make-model.log"; status=1; continue; }
      build-gpu/tools/sagevid-pipeline-bench "$model" | tee "$out/pipeline.md" || status=1 ;;
    pipeline-24gb)  # random CogVideoX-2B and -5B through configs/*-rtx4090.json, torch's allocator capped at 24 GiB
      # (needs the wheels, as pipeline): peak memory per phase beside the server's estimate
      m2=/tmp/cogvideox-2b-random m5=/tmp/cogvideox-5b-random
      { [ -f "$m2/model_index.json" ] && [ -f "$m5/model_index.json" ]; } || { install_wheels &&
        { [ -f "$m2/model_index.json" ] || PYTHONPATH=/tmp/sagevid-py python3 tools/make_random_cogvideox.py "$m2"; } &&
        PYTHONPATH=/tmp/sagevid-py python3 tools/make_random_cogvideox.py "$m5" --model 5b --text-encoder-from "$m2"
      } > "$out/make-models.log" 2>&1 || { tail -20 "$out/make-models.log"; status=1; continue; }
      for size in 2b 5b; do
        echo "## CogVideoX-${size^^} in 24 GiB" | tee -a "$out/pipeline-24gb.md"
        build-gpu/tools/sagevid-pipeline-bench "/tmp/cogvideox-$size-random" --config "configs/cogvideox-$size-rtx4090.json" \
          --memory-cap-gib 24 --steps 2 2>&1 | tee -a "$out/pipeline-24gb.md" || status=1
      done ;;
    *) echo "unknown step $step"; status=1 ;;
  esac
done
exit $status
