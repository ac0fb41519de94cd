// sagevid-pipeline-bench: the whole text-to-video pipeline on a model folder (real sizes; random weights are
// fine: tools/make_random_cogvideox.py) per attention backend: time and peak device memory of each phase (text
// encode, every denoising step, VAE decode) beside the memory estimate the server admits requests by. Prints
// markdown (docs/PERFORMANCE.md).
//
//   sagevid-pipeline-bench MODEL_DIR [--config FILE [--model NAME] [--set KEY=VALUE]...] [--memory-cap-gib G]
//                          [--backend NAME]... [--frames 49] [--height 480] [--width 720] [--steps 3] [--no-tiling]
//                          [--preview-every N] [--cudnn-benchmark] [--regions]
//
// --config takes a server config (configs/*.json; --set changes its keys as sagevid's does): its attention
// section and the model entry's dtype, text encoder placement, VAE keys and device group ("devices", "parallel":
// each request over several GPUs; without them cuda:0; the folder is MODEL_DIR); only its backend runs unless
// --backend says otherwise. Memory columns are cuda:0's. Without it: bf16, sage2, tiling unless
// --no-tiling. --memory-cap-gib caps torch's caching allocator at G GiB of the device (its per-process memory
// fraction), so a 24 GB card's budget can be tried on a larger one. --preview-every N makes
// previews as a request's preview_every does: each gets its own row, and their cost is set against a step's.
// --cudnn-benchmark turns on cuDNN's autotuner (torch.backends.cudnn.benchmark) for the VAE's convolutions: a
// backend named twice shows the tuned shapes' time in its second run. --regions adds each backend's GPU time per
// region of the transformer blocks a step (StepProfile, on cuda:0; a device group's rank 0), the Ulysses
// exchanges among them: the all-to-alls' share of a step.
#include "bench_util.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/dtype.h"
#include "sagevid/models/memory_config.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/seconds_since.h"
#include "sagevid/models/step_profile.h"

#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using sagevid::AttentionBackend;
using sagevid::tools::gib;
using sagevid::Clock;

struct Args {
  std::string model_dir, config_file, model_name;
  std::vector<std::string> overrides;  // --set, applied to the config
  sagevid::GenerationRequest request;
  bool tiling = true;
  double memory_cap_gib = 0;  // 0: no cap
  bool cudnn_benchmark = false;
  bool regions = false;
  std::vector<AttentionBackend> backends;
};

Args parse_args(int argc, char** argv) {
  Args args;
  args.request.prompt = "a panda playing a guitar in a bamboo forest";
  args.request.num_inference_steps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto text = [&] {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return std::string(argv[++i]);
    };
    const auto number = [&] { return std::atoll(text().c_str()); };
    if (arg == "--frames") args.request.num_frames = number();
    else if (arg == "--height") args.request.height = number();
    else if (arg == "--width") args.request.width = number();
    else if (arg == "--steps") args.request.num_inference_steps = int(number());
    else if (arg == "--no-tiling") args.tiling = false;
    else if (arg == "--cudnn-benchmark") args.cudnn_benchmark = true;
    else if (arg == "--regions") args.regions = true;
    else if (arg == "--preview-every") args.request.preview_every = int(number());
    else if (arg == "--config") args.config_file = text();
    else if (arg == "--model") args.model_name = text();
    else if (arg == "--set") args.overrides.push_back(text());
    else if (arg == "--memory-cap-gib") args.memory_cap_gib = std::atof(text().c_str());
    else if (arg == "--backend") args.backends.push_back(sagevid::parse_attention_backend(text()));
    else if (args.model_dir.empty() && !arg.starts_with("-")) args.model_dir = arg;
    else throw std::invalid_argument("unknown argument '" + std::string(arg) + "'");
  }
  if (args.model_dir.empty()) throw std::invalid_argument("usage: sagevid-pipeline-bench MODEL_DIR [options]");
  return args;
}

// The pipeline options of a server config's model entry (the first, or the one named), on cuda:0 or on the entry's
// device group ("devices", "parallel").
sagevid::PipelineOptions options_from_config(const std::string& file, const std::string& model_name,
                                             const std::vector<std::string>& overrides) {
  nlohmann::json document = sagevid::read_json_file(file);
  for (const std::string& assignment : overrides) sagevid::apply_override(document, assignment);
  sagevid::ConfigReader root(document, "");
  sagevid::PipelineOptions options;
  sagevid::ConfigReader attention = root.object("attention");
  options.attention = sagevid::read_attention_config(attention);
  for (sagevid::ConfigReader& entry : root.objects("models")) {
    if (!model_name.empty() && entry.require<std::string>("name") != model_name) continue;
    options.dtype = sagevid::read_dtype(entry, c10::kBFloat16);
    sagevid::read_memory_config(entry).apply_to(options);
    options.device = c10::Device(c10::kCUDA, 0);
    if (const std::optional<sagevid::DeviceGroup> group = sagevid::read_device_group(entry)) {
      options.devices = group->devices;
      options.device = group->devices[0];
      options.parallel = group->plan;
    }
    return options;
  }
  throw std::invalid_argument(file + ": no model entry" + (model_name.empty() ? "" : " named " + model_name));
}

// The benchmark's own settings: bf16, sage2 with a cuDNN fallback (T5's head dim 64 with bias is served; this is
// a net), VAE tiling unless --no-tiling.
sagevid::PipelineOptions default_options(bool tiling) {
  sagevid::PipelineOptions options;
  options.device = c10::Device(c10::kCUDA, 0);
  options.dtype = c10::kBFloat16;
  options.attention.backend = AttentionBackend::sage2;
  options.attention.fallback = AttentionBackend::cudnn;
  options.vae.tiling = tiling;
  return options;
}

// What runs the transformer's attention: the backend and, for sage2, its options as resolved on device 0.
std::string describe_attention(const sagevid::AttentionConfig& attention) {
  namespace sage2 = sagevid::kernels::sage2;
  std::string text = "attention " + std::string(sagevid::backend_name(attention.backend));
  if (attention.backend != AttentionBackend::sage2) return text;
  const sage2::Options o = sage2::resolve(attention.sage2, sagevid::kernels::compute_capability(0));
  return text + " (" + (*o.kernel == sage2::KernelFamily::wgmma ? "wgmma" : "mma.sync") + ", " +
         (*o.qk == sage2::QkType::int4 ? "INT4" : "INT8") + " Q·Kᵀ, " + (*o.pv == sage2::PvType::fp8 ? "FP8" : "FP16") +
         " P·V, Q smoothing " + (*o.smooth_q ? "on" : "off") + ")";
}

// The allocator's peaks and the time since the last mark, per phase, beside the estimate each phase is admitted
// by (the weights resident when the request started plus the phase's own estimate).
struct PhaseRow {
  std::string phase;
  double seconds = 0;
  int64_t allocated = 0, reserved = 0, estimate = 0;
};

class PhaseRecorder {
 public:
  PhaseRecorder(int64_t resident, const sagevid::MemoryEstimate& estimate) : resident_(resident), estimate_(estimate) {
    mark();
  }
  // Ends the current phase's row (or a row of its own, named so); the next row starts now.
  void close(const std::string& suffix = "") { close_as(name() + suffix); }
  void close_as(const std::string& row_name) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    rows_.push_back({row_name, sagevid::seconds_since(start_), stats.allocated_bytes[0].peak,
                     stats.reserved_bytes[0].peak, resident_ + phase_estimate()});
    mark();
  }
  void enter(sagevid::GenerationPhase phase, int step = 1) {
    phase_ = phase;
    step_ = step;
  }
  void mark() {
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
    start_ = Clock::now();
  }
  const std::vector<PhaseRow>& rows() const { return rows_; }
  int64_t peak_reserved() const {
    int64_t peak = 0;
    for (const PhaseRow& row : rows_) peak = std::max(peak, row.reserved);
    return peak;
  }

 private:
  std::string name() const {
    if (phase_ == sagevid::GenerationPhase::denoise) return "step " + std::to_string(step_);
    return phase_ == sagevid::GenerationPhase::decode ? "decode" : "text encode";
  }
  int64_t phase_estimate() const {
    if (phase_ == sagevid::GenerationPhase::denoise) return estimate_.denoise;
    return phase_ == sagevid::GenerationPhase::decode ? estimate_.decode : estimate_.text_encode;
  }

  int64_t resident_;
  sagevid::MemoryEstimate estimate_;
  sagevid::GenerationPhase phase_ = sagevid::GenerationPhase::text_encode;
  int step_ = 1;
  Clock::time_point start_;
  std::vector<PhaseRow> rows_;
};

void print_rows(const std::vector<PhaseRow>& rows) {
  std::printf(
      "| phase | s | peak allocated GiB | peak reserved GiB | estimate GiB (resident + phase) |\n"
      "|---|---|---|---|---|\n");
  for (const PhaseRow& row : rows)
    std::printf("| %s | %.2f | %.2f | %.2f | %.2f |\n", row.phase.c_str(), row.seconds, gib(row.allocated),
                gib(row.reserved), gib(row.estimate));
}

// A preview's time against a step's: issue 18's target is under 5% of a step's time at preview_every 10.
void print_preview_cost(const sagevid::PhaseTimings& t, int preview_every) {
  if (t.previews == 0 || t.step_s_median <= 0) return;
  const double each = t.preview_s / t.previews;
  std::printf("\npreviews: %d, %.3f s each = %.1f%% of the median step (%.3f s); every %d steps: %.2f%% per step\n",
              t.previews, each, 100 * each / t.step_s_median, t.step_s_median, preview_every,
              100 * each / (preview_every * t.step_s_median));
}

struct BackendRun {
  bool fitted = true;  // false: out of device memory
  int64_t peak_reserved = 0;
};

// Each region's GPU milliseconds a denoising step, and its share of the median step.
void print_regions(const sagevid::StepProfile& profile, int steps, double step_s) {
  std::printf("\n| region (cuda:0) | ms per step | share of the step |\n|---|---|---|\n");
  for (const auto& [name, ms] : profile.totals())
    std::printf("| %s | %.2f | %.1f%% |\n", name.c_str(), ms / steps, 100 * ms / steps / (1e3 * step_s));
}

// One request on one backend, phase by phase: the text encode, each denoising step, the decode.
BackendRun run_backend(const sagevid::CogVideoXPipeline& pipeline, sagevid::GenerationRequest request,
                       AttentionBackend backend, bool regions) {
  using sagevid::GenerationPhase;
  request.attention_backend = backend;
  PhaseRecorder recorder(sagevid::tools::allocated_bytes(), pipeline.estimate_memory(request));
  sagevid::GenerationCallbacks callbacks;
  callbacks.on_phase = [&](GenerationPhase phase) {
    if (phase == GenerationPhase::denoise) recorder.close();  // the text encode's row
    if (phase == GenerationPhase::decode) recorder.mark();    // the last step's row is closed already
    recorder.enter(phase);
  };
  callbacks.on_progress = [&](const sagevid::GenerationProgress& p) {
    if (p.phase != GenerationPhase::denoise) return;
    recorder.close();
    recorder.enter(GenerationPhase::denoise, p.step + 1);
  };
  callbacks.on_preview = [&](const sagevid::GenerationPreview& p) {
    recorder.close_as("preview after step " + std::to_string(p.step));  // the next step's row goes on after it
  };
  std::printf("\nbackend %s:\n\n", std::string(sagevid::backend_name(backend)).c_str());
  BackendRun run;
  sagevid::GenerationResult result;
  std::optional<sagevid::StepProfile> profile;  // on this thread: rank 0's regions
  if (regions) profile.emplace();
  try {
    result = pipeline.generate(request, callbacks);
    recorder.close();
  } catch (const c10::OutOfMemoryError&) {
    recorder.close(" (out of memory)");
    run.fitted = false;
  }
  print_rows(recorder.rows());
  if (profile && run.fitted) print_regions(*profile, request.num_inference_steps, result.timings.step_s_median);
  print_preview_cost(result.timings, request.preview_every);
  if (run.fitted && result.timings.decode_ranks > 1)
    std::printf("\nthe decode's tiles shared by %d ranks\n", result.timings.decode_ranks);
  run.peak_reserved = recorder.peak_reserved();
  std::printf("\nfallbacks: %lld\n", (long long)pipeline.attention(backend).fallback_count());
  std::fflush(stdout);
  return run;
}

// Device memory this process uses outside torch's allocator (CUDA context, library kernels and handles),
// assuming nothing else runs on the device.
int64_t outside_allocator_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  SAGEVID_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return int64_t(total_bytes - free_bytes) - stats.reserved_bytes[0].current;
}

void cap_memory(double cap_gib) {
  at::empty({1}, at::kCUDA);  // torch sets its CUDA allocator up on first use: the cap needs it
  size_t free_bytes = 0, total_bytes = 0;
  SAGEVID_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double fraction = cap_gib * double(1ull << 30) / double(total_bytes);
  if (fraction > 1) throw std::invalid_argument("--memory-cap-gib is more than the device has");
  c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, 0);
  std::printf("memory cap: torch's allocator limited to %.1f GiB of %.1f GiB (fraction %.4f)\n", cap_gib,
              gib(int64_t(total_bytes)), fraction);
}

bool run(const Args& args) {
  if (args.memory_cap_gib > 0) cap_memory(args.memory_cap_gib);
  const sagevid::PipelineOptions options = args.config_file.empty()
                                               ? default_options(args.tiling)
                                               : options_from_config(args.config_file, args.model_name, args.overrides);
  std::vector<AttentionBackend> backends = args.backends;
  if (backends.empty() && !args.config_file.empty()) backends = {options.attention.backend};
  if (backends.empty()) backends = {AttentionBackend::flash, AttentionBackend::cudnn, AttentionBackend::sage2};
  const sagevid::CogVideoXPipeline pipeline = sagevid::CogVideoXPipeline::load(args.model_dir, options);
  const sagevid::GenerationRequest& r = args.request;
  std::printf("%lld frames %lldx%lld, %d steps, CFG batch 2, %s; %s; %s\nconfig %s; resident weights %.2f GiB\n",
              (long long)r.num_frames, (long long)r.height, (long long)r.width, r.num_inference_steps,
              c10::toString(options.dtype), describe_attention(options.attention).c_str(),
              sagevid::to_json(sagevid::MemoryConfig{options.text_encoder, options.vae}).dump().c_str(),
              args.config_file.empty() ? "(none)" : args.config_file.c_str(), gib(sagevid::tools::allocated_bytes()));
  if (!options.devices.empty())
    std::printf("parallel: %s\n", sagevid::describe(options.parallel, options.devices).c_str());
  bool fitted = true;
  int64_t peak_reserved = 0;
  for (AttentionBackend backend : backends) {
    const BackendRun run = run_backend(pipeline, r, backend, args.regions);
    fitted = fitted && run.fitted;
    peak_reserved = std::max(peak_reserved, run.peak_reserved);
  }
  const int64_t outside = outside_allocator_bytes();
  std::printf(
      "\ndevice memory outside torch's allocator: %.2f GiB (CUDA context, library kernels); largest "
      "reserved + that: %.2f GiB%s\n",
      gib(outside), gib(peak_reserved + outside), fitted ? "" : "; OUT OF MEMORY under the cap");
  return fitted;
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
    at::globalContext().setBenchmarkCuDNN(args.cudnn_benchmark);
    return run(args) ? 0 : 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sagevid-pipeline-bench: %s\n", e.what());
    return 1;
  }
}
