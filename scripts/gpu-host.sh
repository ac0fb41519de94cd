#!/usr/bin/env bash
# Everything we do on the GPU host in one call: build there, then run what is asked: tests (gpu|unit suites), seeds
# (one GPU test over fresh seeds: the share of its bound it used),
# accuracy (sage-accuracy), bench (sage-bench: attention kernels), bench-ab (sage-bench of this tree against copies
# of kernels/src in .carry/ab, side by side in bench-ab-summary.md), step (sagevid-bench: one transformer step per
# backend; SAGEVID_STEP_ARGS passes options, e.g. `--model CogVideoX1.5-5B --backend flash --backend sage2`),
# diffusers-step (the same step in diffusers), pipeline (a random-weight CogVideoX-2B folder at real sizes, then
# sagevid-pipeline-bench on it), preview (the same with previews every 10 steps: their cost), server
# (`sagevid serve` on that folder, driven per backend by `sagevid-client bench`: scripts/bench-server.sh),
# step-breakdown (the sage2 step's GPU time per region of the blocks against each region's floor; -fp8: with
# FP8 linears; -fp8-fast: their GEMMs with fast accumulation too), fp8-accuracy (a real-size step's output with FP8
# linears against bf16 linears), multi-gpu (one request over the host's GPUs: the multi-GPU suite and each
# parallel plan's denoising step on random CogVideoX-2B and -5B). The host has no gRPC or FFmpeg: the server and
# clients build only from the offline bundle of `scripts/make-offline-deps.sh`, carried as
# .carry/sagevid-deps.tar.xz (without it: kernels, models, tests and tools). diffusers-step, pipeline and server
# need the wheels of `scripts/fetch-gpu-wheels.sh` in .whl/, carried along. Default: tests accuracy bench. Logs
# and tables go to $OUT (the device tool's return folder) or ./out; on exit the logs are packed into
# logs-gpu-host.tar.gz there, beside the .md tables.
#   scripts/gpu-host.sh [harness] [tests] [seeds] [accuracy] [bench] [bench-ab] [step] [step-breakdown]
#                       [step-breakdown-fp8] [step-breakdown-fp8-fast] [fp8-accuracy] [diffusers-step] [pipeline]
#                       [preview] [server] [profile-prep] [profile-rows] [profile-attention-sass] [pipeline-24gb]
#                       [sanitize-prep] [prep-ab] [harness-scaling] [multi-gpu]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
trap 'scripts/pack-logs.sh "$out" gpu-host' EXIT  # the logs in one file: the device tool brings back 8
archs=${SAGEVID_CUDA_ARCHS:-90a}
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
# The device's copy of .git can lag the working tree the device tool sends: the files that differ from its commit are
# listed after it, and the commit a call was made from belongs in the call's notes (docs/PERFORMANCE.md).
{ git log -1 --format='%H %s'; echo 'files differing from it:'; git status --short; } > "$out/commit.txt" 2>/dev/null
# The carried bundle, unpacked once per version of it (a fresh unpack would rebuild everything that includes it).
deps_archive=.carry/sagevid-deps.tar.xz
deps=build-gpu-deps/sagevid-deps
unpack_deps() {
  [ -f "$deps_archive" ] || { echo "no $deps_archive: building without the server and clients"; return 1; }
  local sum
  sum=$(sha256sum "$deps_archive" | cut -d' ' -f1)
  [ "$(cat build-gpu-deps/archive.sha256 2>/dev/null)" = "$sum" ] && return 0
  rm -rf build-gpu-deps && mkdir -p build-gpu-deps && tar -C build-gpu-deps -xJf "$deps_archive" &&
    echo "$sum" > build-gpu-deps/archive.sha256 || { echo "cannot unpack $deps_archive"; exit 1; }
}
build_all() {
  [ -n "${built:-}" ] && return 0
  local server=(-DSAGEVID_BUILD_SERVER=OFF -DSAGEVID_DEPS_PREFIX=)
  unpack_deps && server=(-DSAGEVID_BUILD_SERVER=ON -DSAGEVID_DEPS_PREFIX="$PWD/$deps")
  # No Gloo there (no apt): the ranks of a parallel plan run on NCCL, and the CPU-rank tests are left out.
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" -DSAGEVID_WITH_GLOO=OFF \
    -DCMAKE_CUDA_COMPILER="$(which nvcc)" "${server[@]}" -DCMAKE_CUDA_ARCHITECTURES="$archs" \
    > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
  # SAGEVID_BUILD_TARGETS: only these (e.g. sage_bench, for a call that benchmarks and profiles only)
  time cmake --build build-gpu -j "$(nproc)" --target ${SAGEVID_BUILD_TARGETS:-all} > "$out/build.log" 2>&1 ||
    { grep -m20 -E "error|Error" "$out/build.log"; exit 1; }
  built=1
}
build_harness() {  # tools/sage2_sm90_harness.cu: the sm90 kernel alone, on random quantized data
  scripts/build-sm90-harness.sh kernels/src /tmp/sm90-harness > "$out/harness-build.log" 2>&1 ||
    { tail -30 "$out/harness-build.log"; return 1; }
}
ncu_summary() {  # an ncu report's kernels with their time, bandwidth, occupancy and issue lines
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Stall|Issued Warp|No Eligible" \
    "$1" | tail -80
}
install_wheels() {
  python3 -m pip install -q --no-deps --no-index --target /tmp/sagevid-py .whl/*.whl > "$out/pip.log" 2>&1
}
model=/tmp/cogvideox-2b-random
random_model() {  # CogVideoX-2B at its real sizes with random weights, written once per machine
  [ -f "$model/model_index.json" ] && return 0
  install_wheels && PYTHONPATH=/tmp/sagevid-py python3 tools/make_random_cogvideox.py "$model" > "$out/make-model.log" 2>&1 ||
    { tail -20 "$out/make-model.log"; return 1; }
}
random_2b_5b() {  # random CogVideoX-2B and -5B folders at real sizes, /tmp/cogvideox-{2b,5b}-random
  local m2=/tmp/cogvideox-2b-random m5=/tmp/cogvideox-5b-random
  { [ -f "$m2/model_index.json" ] && [ -f "$m5/model_index.json" ]; } && return 0
  { install_wheels &&
    { [ -f "$m2/model_index.json" ] || PYTHONPATH=/tmp/sagevid-py python3 tools/make_random_cogvideox.py "$m2"; } &&
    PYTHONPATH=/tmp/sagevid-py python3 tools/make_random_cogvideox.py "$m5" --model 5b --text-encoder-from "$m2"
  } > "$out/make-models.log" 2>&1 || { tail -20 "$out/make-models.log"; return 1; }
}
parallel_config() {  # a server config of model folder $1 over plan $2 (CFGxULYSSES) on cuda:0.., sage2, bf16, the
  # VAE tiled (its 9 tiles shared by the ranks: the decode's scaling)
  local cfg=${2%x*} ulysses=${2#*x} devices="" i
  for ((i = 0; i < cfg * ulysses; i++)); do devices+="${devices:+, }\"cuda:$i\""; done
  printf '{"attention": {"backend": "sage2", "fallback": "cudnn"}, "models": [{"name": "m", "path": "%s",
    "dtype": "bfloat16", "devices": [%s], "parallel": {"cfg": %d, "ulysses": %d}, "vae": {"tiling": true}}]}\n' \
    "$1" "$devices" "$cfg" "$ulysses"
}
prep_kernels="regex:statistics|quantize|absmax"  # ncu -k: the preprocessing's kernels (sage2_statistics.cu, _quant.cu)
ab_names() { echo "${SAGEVID_AB_VARIANTS:-$(ls .carry/ab 2>/dev/null)}"; }
build_ab_copy() {  # this tree with .carry/ab/$1 (sm90-ab.sh --prepare) as kernels/src (and include), its sage-bench
  local copy=/tmp/bench-ab-$1
  rm -rf "$copy" && mkdir -p "$copy" &&
    tar --exclude='./build*' --exclude=./.carry --exclude=./.anchors --exclude=./.whl --exclude=./.venv \
      --exclude=./.git --exclude=./out -cf - . | tar -C "$copy" -xf - &&
    rm -rf "$copy/kernels/src" && cp -r ".carry/ab/$1/src" "$copy/kernels/src" &&
    { [ ! -d ".carry/ab/$1/include" ] ||
      { rm -rf "$copy/kernels/include" && cp -r ".carry/ab/$1/include" "$copy/kernels/include"; }; } &&
    { [ ! -f ".carry/ab/$1/kernels.cmake" ] || cp ".carry/ab/$1/kernels.cmake" "$copy/kernels/CMakeLists.txt"; } &&
    { [ ! -f ".carry/ab/$1/tools.cmake" ] || cp ".carry/ab/$1/tools.cmake" "$copy/tools/CMakeLists.txt"; } &&
    cmake -S "$copy" -B "$copy/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix" \
      -DCMAKE_CUDA_COMPILER="$(which nvcc)" -DSAGEVID_BUILD_SERVER=OFF -DSAGEVID_BUILD_TESTS=OFF -DSAGEVID_WITH_GLOO=OFF \
      -DSAGEVID_DEPS_PREFIX= -DCMAKE_CUDA_ARCHITECTURES="$archs" > "$out/bench-ab-$1.log" 2>&1 &&
    cmake --build "$copy/build" -j "$(nproc)" --target sage_bench >> "$out/bench-ab-$1.log" 2>&1 ||
    { tail -20 "$out/bench-ab-$1.log"; return 1; }
}
build_ab_copies() {  # variants: tree and each copy that built (once a call)
  [ -n "${variants:-}" ] && return 0
  variants=(tree)
  for v in $(ab_names); do build_ab_copy "$v" && variants+=("$v") || status=1; done
}
ab_bench() { [ "$1" = tree ] && echo build-gpu/tools/sage-bench || echo "/tmp/bench-ab-$1/build/tools/sage-bench"; }
steps=${*:-tests accuracy bench}
status=0
for step in $steps; do
  case $step in
    harness | harness-scaling | profile-attention | profile-attention-sass | tile-trace | anchor) ;;
    *) build_all ;;
  esac
  case $step in
    harness)
      build_harness || { status=1; continue; }
      /tmp/sm90-harness check 2>&1 | tee "$out/harness-check.log" || status=1
      compute-sanitizer --tool memcheck /tmp/sm90-harness check > "$out/harness-memcheck.log" 2>&1 || status=1
      tail -3 "$out/harness-memcheck.log"
      /tmp/sm90-harness time 2>&1 | tee "$out/harness-time.md" || status=1 ;;
    anchor)  # the official SageAttention2 sm_90 kernel beside SDPA's cuDNN and FA2 (anchor_bench.py of
      # ../shared/tools), built from .anchors/SageAttention (a git-ignored copy of thu-ml/SageAttention: carry .anchors)
      [ -f .anchors/anchor_bench.py ] || { echo "anchor: carry .anchors"; status=1; continue; }
      (cd .anchors/SageAttention && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 EXT_PARALLEL=4 NVCC_APPEND_FLAGS="--threads 4" \
        python3 setup.py build_ext --inplace) > "$out/anchor-build.log" 2>&1 ||
        { tail -20 "$out/anchor-build.log"; status=1; continue; }
      python3 .anchors/anchor_bench.py .anchors/SageAttention | tee "$out/anchor.md" || status=1 ;;
    profile-attention)  # the sm90 kernel at CogVideoX-2B and hd64 8k causal (ncu): pipes, issue, stalls;
      # SAGEVID_HARNESS_PROFILE=profile128: at hd128 32k instead; profile16: fp16 linear P at CogVideoX-2B
      build_harness || { status=1; continue; }
      ncu --clock-control none -k regex:attention_kernel --section SpeedOfLight --section ComputeWorkloadAnalysis \
        --section InstructionStats --section Occupancy --section WarpStateStats --section SchedulerStats \
        --section MemoryWorkloadAnalysis --print-details all \
        /tmp/sm90-harness "${SAGEVID_HARNESS_PROFILE:-profile}" > "$out/profile-attention.log" 2>&1 || status=1
      summary="^  [a-zA-Z_].*\(|Duration|Issue Slots Busy|No Eligible|Stall|stall|Pipe|pipe|Achieved Occ|Executed Ipc"
      summary+="|L2|L1|SM Frequency|Mem Busy|Max Bandwidth"
      grep -E "$summary" "$out/profile-attention.log" | tail -120 ;;
    profile-attention-sass)  # stall samples per SASS instruction (ncu source page) of the harness's first timed run
      # of SAGEVID_HARNESS_PROFILE's shapes (default profile: CogVideoX-2B); each mode named there, space-separated
      build_harness || { status=1; continue; }
      for mode in ${SAGEVID_HARNESS_PROFILE:-profile}; do
        ncu --clock-control none -k regex:attention_kernel --launch-skip 1 --launch-count 1 --section SourceCounters \
          --section WarpStateStats -f -o "/tmp/attention-sass-$mode" /tmp/sm90-harness "$mode" \
          > "$out/profile-attention-sass-$mode.log" 2>&1 &&
          ncu --import "/tmp/attention-sass-$mode.ncu-rep" --page source --print-source sass --csv \
            > "$out/attention-sass-$mode.csv" 2>&1 &&
          python3 tools/sass_stalls.py "$out/attention-sass-$mode.csv" | tee "$out/attention-sass-$mode.md" || status=1
      done ;;
    tile-trace)  # each key tile's start clock of the persistent CTAs' warpgroups (a harness built with
      # -DSAGEVID_SM90_TILE_TRACE): how far they run apart, and in what phase (tools/tile_trace.py)
      SAGEVID_HARNESS_NVCC_FLAGS=-DSAGEVID_SM90_TILE_TRACE scripts/build-sm90-harness.sh kernels/src /tmp/sm90-trace \
        > "$out/tile-trace-build.log" 2>&1 || { tail -30 "$out/tile-trace-build.log"; status=1; continue; }
      { /tmp/sm90-trace tile-trace "$out" && python3 tools/tile_trace.py "$out"/tile-trace-hd*.txt; } |
        tee "$out/tile-trace.md" || status=1 ;;
    harness-scaling)  # the harness's FP8 default over N at equal query blocks (the cost of a work tile's ends)
      build_harness || { status=1; continue; }
      /tmp/sm90-harness scaling 2>&1 | tee "$out/harness-scaling.md" || status=1 ;;
    profile-prep)  # each preprocessing kernel at hd64 8k and hd128 8k (ncu): time, throughput, occupancy, stalls
      ncu --clock-control none -k "$prep_kernels" --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
        build-gpu/tools/sage-bench --profile-preprocessing > "$out/profile-prep.log" 2>&1 || status=1
      ncu_summary "$out/profile-prep.log" ;;
    profile-rows)  # the step's row kernels (norm + FP8 rows, QK norm + RoPE, GELU + FP8 rows) at CogVideoX-2B (ncu)
      ncu --clock-control none -k regex:'residual_norm|layer_norm_heads|quantize_rows' --launch-skip 200 --launch-count 8 \
        --kill yes --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        build-gpu/tools/sagevid-bench --breakdown --fp8-linears --fp8-fast-accum > "$out/profile-rows.log" 2>&1
      ncu_summary "$out/profile-rows.log" ;;
    tests)  # (a test that hangs fails after 5 minutes rather than taking the call's whole limit)
      ctest --test-dir build-gpu --output-on-failure --timeout 300 -L "${SAGEVID_TEST_LABELS:-gpu|unit}" -j 4 > "$out/ctest.log" 2>&1 || status=1
      grep -E "tests passed|Failed|\*\*\*" "$out/ctest.log" | tail -30 ;;
    seeds)  # one GPU test (SAGEVID_SEED_TEST; default: the attention kernels against the simulated reference) for
      # SAGEVID_SEEDS fresh seeds (default 8), passes printed too (-s), then how much of its cosine bound it used
      # (tools/check_margins.py; SAGEVID_SEED_CHECK: the check's text, SAGEVID_SEED_ALSO: a capture held to it)
      seed_test=${SAGEVID_SEED_TEST:-sage2 attention matches the simulated reference and fp32 attention}
      for n in $(seq "${SAGEVID_SEEDS:-8}"); do
        seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
        SAGEVID_TEST_SEED=$seed timeout 120 build-gpu/tests/sagevid_gpu_tests "$seed_test" -s > "$out/seed-$n.log" 2>&1 ||
          { echo "seed $seed: failed"; status=1; }
      done
      python3 tools/check_margins.py --check "${SAGEVID_SEED_CHECK:-vs_reference.cosine >}" \
        --also "${SAGEVID_SEED_ALSO:-without_slack.cosine}" "$out"/seed-*.log | tee "$out/seeds.md" || status=1 ;;
    sanitize-prep)  # sage2's preprocessing GPU tests under compute-sanitizer: memcheck, then racecheck (shared memory)
      for tool in memcheck racecheck; do
        compute-sanitizer --tool "$tool" --error-exitcode 1 build-gpu/tests/sagevid_gpu_tests \
          "sage2 preprocessing matches the reference bit for bit,sage2 FP16 V is laid out*" \
          > "$out/sanitize-prep-$tool.log" 2>&1 || status=1
        tail -3 "$out/sanitize-prep-$tool.log"
      done ;;
    accuracy) build-gpu/tools/sage-accuracy | tee "$out/accuracy.md" || status=1 ;;
    bench-ab)  # sage-bench of this tree and of each .carry/ab/<name> copy of kernels/src (scripts/sm90-ab.sh
      # --prepare; carry .carry), two passes interleaved: for what the harness cannot see (preprocessing, launches,
      # the host's part of a call); SAGEVID_BENCH_ARGS: sage-bench's options (--quick: N <= 17776 only;
      # --row hd128_32k: that row alone); SAGEVID_AB_VARIANTS: which copies (default: all of .carry/ab)
      build_ab_copies
      for pass in 1 2; do
        for v in "${variants[@]}"; do
          echo "## $v, pass $pass" | tee -a "$out/bench-ab.md"
          "$(ab_bench "$v")" ${SAGEVID_BENCH_ARGS:-} | tee -a "$out/bench-ab.md" || status=1
        done
      done
      python3 tools/ab_summary.py "$out/bench-ab.md" | tee "$out/bench-ab-summary.md" ;;  # the variants side by side
    prep-ab)  # the preprocessing kernels' times (ncu, hd64 8k and hd128 8k; two calls on Gaussian V, then two with
      # every head of V flagged: sage-bench --profile-preprocessing) of this tree and each .carry/ab copy, two passes
      # interleaved: a quick A/B of a preprocessing change (SAGEVID_BUILD_TARGETS=sage_bench: minutes less)
      build_ab_copies
      for pass in 1 2; do
        for v in "${variants[@]}"; do
          echo "## $v, pass $pass" >> "$out/prep-ab.log"
          ncu --clock-control none -k "$prep_kernels" --metrics gpu__time_duration.sum \
            "$(ab_bench "$v")" --profile-preprocessing >> "$out/prep-ab.log" 2>&1 || status=1
        done
      done
      grep -E "^## |^  [a-zA-Z_].*\(|gpu__time_duration" "$out/prep-ab.log" | sed -E 's/\(sagevid::.*//' ;;
    bench)  # bench.md, or bench-2.md... beside the table of an earlier run in the same call; ends with its clocks
      table=$(scripts/free-name.sh "$out/bench" md)
      scripts/clock-sampler.sh "${table%.md}-clocks.csv" build-gpu/tools/sage-bench ${SAGEVID_BENCH_ARGS:-} |
        tee "$table" || status=1 ;;
    step) build-gpu/tools/sagevid-bench ${SAGEVID_STEP_ARGS:-} | tee "$out/step.md" || status=1 ;;
    step-breakdown)
      build-gpu/tools/sagevid-bench ${SAGEVID_STEP_ARGS:-} --breakdown | tee "$out/step-breakdown.md" || status=1 ;;
    step-breakdown-fp8)
      build-gpu/tools/sagevid-bench ${SAGEVID_STEP_ARGS:-} --breakdown --fp8-linears | tee "$out/step-breakdown-fp8.md" ||
        status=1 ;;
    fp8-accuracy)  # one real-size step's output with FP8 linears against bf16 linears: PSNR, cosine, rel. L2
      build-gpu/tools/sagevid-bench ${SAGEVID_STEP_ARGS:-} --fp8-accuracy | tee "$out/fp8-accuracy.md" || status=1 ;;
    step-breakdown-fp8-fast)
      build-gpu/tools/sagevid-bench ${SAGEVID_STEP_ARGS:-} --breakdown --fp8-linears --fp8-fast-accum |
        tee "$out/step-breakdown-fp8-fast.md" || status=1 ;;
    diffusers-step)
      install_wheels && PYTHONPATH=/tmp/sagevid-py python3 tools/diffusers_step_bench.py | tee "$out/diffusers-step.md" ||
        status=1 ;;
    pipeline)
      random_model || { status=1; continue; }
      build-gpu/tools/sagevid-pipeline-bench "$model" | tee "$out/pipeline.md" || status=1 ;;
    preview)  # the cost of a preview (preview_every) against a denoising step at 49x480x720, on the pipeline's folder
      random_model || { status=1; continue; }
      build-gpu/tools/sagevid-pipeline-bench "$model" --backend sage2 --steps 20 --preview-every 10 |
        tee "$out/preview.md" || status=1 ;;
    vae-cudnn)  # the pipeline's folder with cuDNN's autotuner off, then on: each backend run twice, the second
      # run of each the steady state (its decode row against the first's)
      random_model || { status=1; continue; }
      for tuner in "" --cudnn-benchmark; do
        echo "## sagevid-pipeline-bench ${tuner:-(autotuner off)}" | tee -a "$out/vae-cudnn.md"
        build-gpu/tools/sagevid-pipeline-bench "$model" --steps 2 --backend sage2 --backend sage2 $tuner |
          tee -a "$out/vae-cudnn.md" || status=1
      done ;;
    pipeline-24gb)  # random CogVideoX-2B and -5B through configs/*-rtx4090.json, torch's allocator capped at 24 GiB
      # (needs the wheels, as pipeline): peak memory per phase beside the server's estimate
      random_2b_5b || { status=1; continue; }
      for size in 2b 5b; do
        echo "## CogVideoX-${size^^} in 24 GiB" | tee -a "$out/pipeline-24gb.md"
        build-gpu/tools/sagevid-pipeline-bench "/tmp/cogvideox-$size-random" --config "configs/cogvideox-$size-rtx4090.json" \
          --memory-cap-gib 24 --steps 2 2>&1 | tee -a "$out/pipeline-24gb.md" || status=1
      done ;;
    multi-gpu)  # one request over several GPUs (NCCL): the multi-GPU suite (skipped below two GPUs), then the
      # denoising step's time on random CogVideoX-2B (30 heads: 4 Ulysses ranks hold 8, 8, 7, 7) and -5B (48 heads)
      # over each plan the host's GPUs allow, 49x480x720, CFG on (scaling: 1x1's median step over the plan's), with
      # rank 0's GPU time per region of a step (the Ulysses exchanges' share). SAGEVID_PARALLEL_RUNS: the runs
      # (SIZE:CFGxULYSSES), to split them over calls
      gpus=$(nvidia-smi -L | wc -l)
      build-gpu/tests/sagevid_multi_gpu_tests 2>&1 | tee "$out/multi-gpu-tests.log"
      [[ ${PIPESTATUS[0]} =~ ^(0|77)$ ]] || status=1
      random_2b_5b || { status=1; continue; }
      for run in ${SAGEVID_PARALLEL_RUNS:-2b:1x1 2b:2x1 2b:1x2 2b:2x2 2b:1x4 2b:2x4 5b:1x1 5b:2x1 5b:1x2 5b:2x2 5b:1x4 5b:2x4}; do
        size=${run%:*} plan=${run#*:}
        (( ${plan%x*} * ${plan#*x} <= gpus )) || continue
        parallel_config "/tmp/cogvideox-$size-random" "$plan" > "/tmp/parallel-$size-$plan.json"
        echo "## CogVideoX-${size^^}, cfg x ulysses = $plan" | tee -a "$out/multi-gpu.md"
        build-gpu/tools/sagevid-pipeline-bench "/tmp/cogvideox-$size-random" --config "/tmp/parallel-$size-$plan.json" \
          --steps 3 --regions 2>&1 | tee -a "$out/multi-gpu.md" || status=1
      done ;;
    server)
      [ -x build-gpu/server/sagevid ] || { echo "server: not built (carry $deps_archive)"; status=1; continue; }
      random_model || { status=1; continue; }
      scripts/bench-server.sh build-gpu "$model" "$out" || status=1 ;;
    *) echo "unknown step $step"; status=1 ;;
  esac
done
exit $status
