// sagevid-pipeline-bench: the whole text-to-video pipeline on a model folder (real sizes; random weights are
// fine: tools/make_random_cogvideox.py) per attention backend: time per phase and peak GPU memory of the
// denoising loop and of the VAE decode. Prints a markdown table (docs/PERFORMANCE.md).
//
//   sagevid-pipeline-bench MODEL_DIR [--frames 49] [--height 480] [--width 720] [--steps 3] [--no-tiling]
#include "bench_util.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/models/pipeline.h"

#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>

namespace {

using sagevid::AttentionBackend;

using sagevid::tools::gib;

struct Args {
  std::string model_dir;
  sagevid::GenerationRequest request;
  bool tiling = true;
};

Args parse_args(int argc, char** argv) {
  Args args;
  args.request.prompt = "a panda playing a guitar in a bamboo forest";
  args.request.num_inference_steps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto next = [&] {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return std::atoll(argv[++i]);
    };
    if (arg == "--frames") args.request.num_frames = next();
    else if (arg == "--height") args.request.height = next();
    else if (arg == "--width") args.request.width = next();
    else if (arg == "--steps") args.request.num_inference_steps = int(next());
    else if (arg == "--no-tiling") args.tiling = false;
    else if (args.model_dir.empty() && !arg.starts_with("-")) args.model_dir = arg;
    else throw std::invalid_argument("unknown argument '" + std::string(arg) + "'");
  }
  if (args.model_dir.empty()) throw std::invalid_argument("usage: sagevid-pipeline-bench MODEL_DIR [options]");
  return args;
}

void run(const Args& args) {
  sagevid::PipelineOptions options;
  options.device = c10::Device(c10::kCUDA, 0);
  options.dtype = c10::kBFloat16;
  options.attention.backend = AttentionBackend::sage2;
  options.attention.fallback = AttentionBackend::cudnn;  // T5's head dim 64 with bias is served; this is a net
  options.vae.tiling = args.tiling;
  const sagevid::CogVideoXPipeline pipeline = sagevid::CogVideoXPipeline::load(args.model_dir, options);
  const int64_t weights = sagevid::tools::allocated_bytes();
  const sagevid::GenerationRequest& r = args.request;
  std::printf("%lld frames %lldx%lld, %d steps, CFG batch 2, bf16, VAE tiling %s; weights %.1f GiB\n\n",
              (long long)r.num_frames, (long long)r.height, (long long)r.width, r.num_inference_steps,
              args.tiling ? "on" : "off", gib(weights));
  std::printf("| backend | text encode s | denoise s | median step s | decode s | peak GiB denoise | peak GiB decode "
              "| fallbacks |\n|---|---|---|---|---|---|---|---|\n");
  for (AttentionBackend backend : {AttentionBackend::flash, AttentionBackend::cudnn, AttentionBackend::sage2}) {
    sagevid::GenerationRequest request = r;
    request.attention_backend = backend;
    int64_t denoise_peak = 0;
    sagevid::GenerationCallbacks callbacks;
    callbacks.on_progress = [&](const sagevid::GenerationProgress& p) {
      // The last step's report is the boundary: what was allocated up to it belongs to the denoising loop.
      if (p.phase == sagevid::GenerationPhase::denoise && p.step == p.total) {
        denoise_peak = sagevid::tools::peak_allocated_bytes();
        c10::cuda::CUDACachingAllocator::resetPeakStats(0);
      }
    };
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
    const auto result = pipeline.generate(request, callbacks);
    const auto& t = result.timings;
    const int64_t fallbacks = pipeline.attention(backend).fallback_count();
    std::printf("| %s | %.2f | %.2f | %.3f | %.2f | %.1f | %.1f | %lld |\n",
                std::string(sagevid::backend_name(backend)).c_str(), t.text_encode_s, t.denoise_s, t.step_s_median,
                t.decode_s, gib(denoise_peak), gib(sagevid::tools::peak_allocated_bytes()), (long long)fallbacks);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse_args(argc, argv);
    const auto devices = sagevid::kernels::cuda_devices();
    if (devices.empty()) throw std::runtime_error("no CUDA device");
    std::printf("device: %s (sm_%d); model %s\n", devices[0].name.c_str(), devices[0].compute_capability,
                args.model_dir.c_str());
    c10::InferenceMode inference;
    run(args);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sagevid-pipeline-bench: %s\n", e.what());
    return 1;
  }
}
