// sagevid-bench: one denoising step of the CogVideoX transformer at the real 2B and 5B configs, 49 frames at
// 480x720, and CogVideoX1.5-5B, 81 frames at 768x1360 (random weights), CFG batch 2, bf16, per attention
// backend in one run, and sage2 with the blocks' linears in FP8 (models[].linear: fp8), without and with fast
// accumulation (models[].fp8_fast_accum): median step time, the attention share of the step, and peak GPU
// memory. Prints a markdown table (docs/PERFORMANCE.md).
//
// The attention share is measured, not modelled: the same step with the attention calls timed on their own
// (num_layers x one attention call of the step's shape, median) over the step's median.
//
// --backend NAME: that backend's rows only (sage2's include the FP8-linear rows).
// --breakdown: instead, the sage2 step's GPU time per region of the blocks (StepProfile), each against its
// floor: a GEMM's FLOPs at the bf16 tensor-core rate, an elementwise region's tensors each read or written once
// at the HBM rate. --breakdown --fp8-linears: the same with the blocks' linears in FP8 (floors
// unchanged: the bf16 ones); --fp8-fast-accum as well: their GEMMs with fast accumulation.
// --fp8-accuracy: instead, what FP8 linears cost in accuracy at real size: one step's output (the noise
// prediction) with them, without and with fast accumulation, against the same step with bf16 linears (same
// random weights and inputs, sage2 attention in both): PSNR over the bf16 output's peak |value|, cosine
// similarity and relative L2.
#include "bench_util.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/models/attention.h"
#include "sagevid/models/cogvideox_transformer.h"
#include "sagevid/models/step_profile.h"

#include <ATen/ops/full.h>
#include <ATen/ops/mse_loss.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace {

using sagevid::AttentionBackend;
using sagevid::CogVideoXConfig;
using sagevid::CogVideoXTransformer;

struct ModelShape {
  const char* name;
  nlohmann::json config;  // diffusers' transformer/config.json keys that differ from the 2b defaults
  int64_t latent_frames, latent_height, latent_width;  // the request's latents (VAE: 4x in time, 8x in space)
};

const std::vector<ModelShape>& model_shapes() {
  static const std::vector<ModelShape> shapes = {
      {"CogVideoX-2B", {{"num_attention_heads", 30}, {"num_layers", 30}}, 13, 60, 90},  // 49 x 480 x 720
      {"CogVideoX-5B",
       {{"num_attention_heads", 48}, {"num_layers", 42}, {"use_rotary_positional_embeddings", true}},
       13,
       60,
       90},
      // 81 x 768 x 1360: 21 latent frames, padded to 22 for frame pairs as diffusers' 1.5 pipeline does.
      {"CogVideoX1.5-5B",
       {{"num_attention_heads", 48},
        {"num_layers", 42},
        {"use_rotary_positional_embeddings", true},
        {"patch_size_t", 2},
        {"patch_bias", false},
        {"sample_frames", 81},
        {"sample_height", 96},
        {"sample_width", 170}},
       22,
       96,
       170},
  };
  return shapes;
}

constexpr int64_t kBatch = 2;

struct StepResult {
  double step_ms = 0, attention_ms = 0, peak_gib = 0;
};

// The step's sequence: text tokens, then one per latent patch (frames in pairs where patch_size_t is 2).
int64_t step_tokens(const ModelShape& shape, const CogVideoXConfig& c) {
  return c.max_text_seq_length + shape.latent_frames / c.patch_size_t.value_or(1) *
                                     (shape.latent_height / c.patch_size) * (shape.latent_width / c.patch_size);
}

at::Tensor random_bf16(at::IntArrayRef sizes) { return sagevid::tools::random_cuda(sizes, at::kBFloat16); }

// One step's inputs: random latents and text embeddings of the shape, the first timestep.
struct StepInputs {
  at::Tensor latents, text, timestep;
};

StepInputs step_inputs(const ModelShape& shape, const CogVideoXConfig& c) {
  return {random_bf16({kBatch, shape.latent_frames, c.in_channels, shape.latent_height, shape.latent_width}),
          random_bf16({kBatch, c.max_text_seq_length, c.text_embed_dim}),
          at::full({kBatch}, 999, at::TensorOptions().device(at::kCUDA).dtype(at::kLong))};
}

StepResult measure(const CogVideoXTransformer& model, const ModelShape& shape, AttentionBackend backend) {
  const CogVideoXConfig& c = model.config();
  const StepInputs in = step_inputs(shape, c);
  const sagevid::Attention attention(sagevid::AttentionConfig{backend, std::nullopt, {}});

  StepResult r;
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  r.step_ms = sagevid::tools::median_ms(
      [&] { model.forward(in.latents, in.text, in.timestep, std::nullopt, attention); }, 2, 5);
  r.peak_gib = sagevid::tools::gib(sagevid::tools::peak_allocated_bytes());

  const int64_t tokens = step_tokens(shape, c);
  const at::Tensor q = random_bf16({kBatch, c.num_attention_heads, tokens, c.attention_head_dim});
  const at::Tensor k = random_bf16(q.sizes()), v = random_bf16(q.sizes());
  r.attention_ms = c.num_layers * sagevid::tools::median_ms([&] { attention(q, k, v); }, 3, 10);
  return r;
}

// The H200's rates the floors use: dense bf16 tensor-core FLOP/s, HBM bytes/s.
constexpr double kGemmFlops = 760e12, kMemoryBytes = 4.8e12;

// Each region's floor in ms per step (regions we have no floor for are absent).
std::map<std::string, double> region_floors_ms(const CogVideoXConfig& c, int64_t tokens) {
  const double t = double(kBatch * tokens), d = double(c.inner_dim()), f = 4 * d, layers = double(c.num_layers);
  const auto gemm = [&](double n, double k) { return layers * 2 * t * n * k / kGemmFlops * 1e3; };
  const auto bytes = [&](double b) { return layers * b / kMemoryBytes * 1e3; };
  const double activation = t * d * 2;  // one bf16 [tokens, D] tensor
  return {{"QKV GEMM", gemm(3 * d, d)},
          {"output GEMM", gemm(d, d)},
          {"FF in GEMM", gemm(f, d)},
          {"FF in GEMM + GELU", gemm(f, d)},  // the GELU in the GEMM's epilogue
          {"FF out GEMM", gemm(d, f)},
          {"GELU + FP8 rows", bytes(activation * f / d * 1.5)},  // the bf16 hidden in, its E4M3 bytes out
          // twice a block: residual and update in, residual and joint out
          {"gated residual add + LayerNorm + modulate", bytes(2 * 4 * activation)},
          // FP8 linears: the joint goes out as E4M3 rows, half the bytes of bf16 (the scales are 1/D of that)
          {"gated residual add + LayerNorm + modulate + FP8 rows", bytes(2 * 3.5 * activation)},
          {"QK LayerNorm + RoPE", bytes(2 * 2 * activation)},  // q and k, in and out
          {"heads -> tokens copy", bytes(2 * activation)},  // in, out
          {"GELU", bytes(2 * activation * f / d)},  // the 4D-wide hidden, in place
          {"modulation (SiLU, linear)", bytes(2 * 6 * d * c.time_embed_dim * 2)}};  // twice a block: its weights
}

// The sage2 step's regions for one model: ms per step, share, floor.
void print_breakdown(const CogVideoXTransformer& model, const ModelShape& shape, const char* linears) {
  const CogVideoXConfig& c = model.config();
  const StepInputs in = step_inputs(shape, c);
  const sagevid::Attention attention(sagevid::AttentionConfig{AttentionBackend::sage2, std::nullopt, {}});
  const auto step = [&] { model.forward(in.latents, in.text, in.timestep, std::nullopt, attention); };
  const double step_ms = sagevid::tools::median_ms(step, 2, 5);

  constexpr int kSteps = 3;
  sagevid::StepProfile profile;
  for (int i = 0; i < kSteps; ++i) step();
  const auto totals = profile.totals();
  const auto floors = region_floors_ms(c, step_tokens(shape, c));

  std::printf("\n%s, sage2, %s linears, step %.1f ms (unprofiled median):\n\n", shape.name, linears, step_ms);
  std::printf("| region | ms per step | share of step | floor ms | x floor |\n|---|---|---|---|---|\n");
  double regions_ms = 0, floor_sum = 0, outside_attention_ms = 0;
  for (const auto& [region, total] : totals) {
    const double ms = total / kSteps;
    regions_ms += ms;
    if (region != "attention") outside_attention_ms += ms;
    const auto floor = floors.find(region);
    if (floor == floors.end()) {
      std::printf("| %s | %.2f | %.1f%% | — | — |\n", region.c_str(), ms, 100 * ms / step_ms);
      continue;
    }
    floor_sum += floor->second;
    std::printf("| %s | %.2f | %.1f%% | %.2f | %.2f |\n", region.c_str(), ms, 100 * ms / step_ms, floor->second,
                ms / floor->second);
  }
  const double rest = step_ms - regions_ms;
  std::printf("| rest (embeddings, final norm and projection, gaps between regions) | %.2f | %.1f%% | — | — |\n", rest,
              100 * rest / step_ms);
  std::printf("| **outside attention** | %.2f | %.1f%% | %.2f | %.2f |\n", outside_attention_ms + rest,
              100 * (outside_attention_ms + rest) / step_ms, floor_sum, (outside_attention_ms + rest) / floor_sum);
  std::fflush(stdout);
}

// The command line: [--model NAME] ([--backend NAME]... | --breakdown [--fp8-linears [--fp8-fast-accum]] |
// --fp8-accuracy).
struct Args {
  std::vector<AttentionBackend> backends{AttentionBackend::flash, AttentionBackend::cudnn, AttentionBackend::sage2};
  bool breakdown = false, fp8_linears = false, fast_accum = false, fp8_accuracy = false;
  std::string model;  // empty: every model
};

// The shapes the command line asks for: one model's, or all.
std::vector<ModelShape> selected_shapes(const Args& args) {
  std::vector<ModelShape> shapes;
  for (const ModelShape& shape : model_shapes())
    if (args.model.empty() || args.model == shape.name) shapes.push_back(shape);
  return shapes;
}

std::optional<Args> parse_args(int argc, char** argv) {
  Args args;
  bool backends_given = false;  // --backend may repeat: the first replaces the default list
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--backend" && i + 1 < argc) {
      if (!std::exchange(backends_given, true)) args.backends.clear();
      args.backends.push_back(sagevid::parse_attention_backend(argv[++i]));
    } else if (arg == "--breakdown") args.breakdown = true;
    else if (arg == "--fp8-linears") args.fp8_linears = true;
    else if (arg == "--fp8-fast-accum") args.fast_accum = true;
    else if (arg == "--fp8-accuracy") args.fp8_accuracy = true;
    else if (arg == "--model" && i + 1 < argc) args.model = argv[++i];
    else return std::nullopt;
  }
  if ((args.fp8_linears && !args.breakdown) || (args.fast_accum && !args.fp8_linears)) return std::nullopt;
  if (args.fp8_accuracy && (args.breakdown || backends_given)) return std::nullopt;
  if (selected_shapes(args).empty()) return std::nullopt;
  return args;
}

void print_breakdowns(const Args& args) {
  std::printf(
      "Per region of the blocks, summed over the layers, mean of 3 profiled steps; floors: GEMMs at %.0f "
      "TFLOP/s, elementwise regions their tensors each read or written once at %.1f TB/s.\n",
      kGemmFlops / 1e12, kMemoryBytes / 1e12);
  for (const ModelShape& shape : selected_shapes(args)) {
    const CogVideoXConfig config = CogVideoXConfig::from_json(shape.config, shape.name);
    const CogVideoXTransformer model =
        CogVideoXTransformer::random(config, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16), 0);
    if (!args.fp8_linears) print_breakdown(model, shape, "bf16");
    else
      print_breakdown(model.with_fp8_linears(args.fast_accum), shape,
                      args.fast_accum ? "FP8 (fast accumulation)" : "FP8");
  }
}

// One step's output with FP8 linears against the same step with bf16 linears.
void print_fp8_accuracy(const Args& args) {
  std::printf("| model | linears | PSNR dB | cosine | rel. L2 |\n|---|---|---|---|---|\n");
  const sagevid::Attention attention(sagevid::AttentionConfig{AttentionBackend::sage2, std::nullopt, {}});
  for (const ModelShape& shape : selected_shapes(args)) {
    const CogVideoXConfig config = CogVideoXConfig::from_json(shape.config, shape.name);
    const CogVideoXTransformer model =
        CogVideoXTransformer::random(config, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16), 0);
    const StepInputs in = step_inputs(shape, config);
    const auto step = [&](const CogVideoXTransformer& m) {
      return m.forward(in.latents, in.text, in.timestep, std::nullopt, attention).to(at::kDouble);
    };
    const at::Tensor want = step(model);
    const double peak = want.abs().max().item<double>();
    for (const bool fast : {false, true}) {
      const at::Tensor got = step(model.with_fp8_linears(fast));
      const double psnr = 10 * std::log10(peak * peak / at::mse_loss(got, want).item<double>());
      const double cosine = sagevid::tools::cosine_similarity(got, want);
      const double relative_l2 = ((got - want).norm() / want.norm()).item<double>();
      std::printf("| %s | %s | %.1f | %.6f | %.4f |\n", shape.name, fast ? "FP8, fast accumulation" : "FP8", psnr,
                  cosine, relative_l2);
      std::fflush(stdout);
    }
  }
}

void print_steps(const Args& args) {
  std::printf("| model | backend | step ms | attention ms (layers x call) | attention share | vs flash | peak GiB |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const ModelShape& shape : selected_shapes(args)) {
    const CogVideoXConfig config = CogVideoXConfig::from_json(shape.config, shape.name);
    const CogVideoXTransformer model =
        CogVideoXTransformer::random(config, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16), 0);
    double flash_ms = 0;
    const auto print_row = [&](const std::string& backend, const StepResult& r) {
      char vs_flash[16] = "—";  // no flash row with --backend
      if (flash_ms > 0) std::snprintf(vs_flash, sizeof vs_flash, "%.2fx", flash_ms / r.step_ms);
      std::printf("| %s | %s | %.1f | %.1f | %.0f%% | %s | %.1f |\n", shape.name, backend.c_str(), r.step_ms,
                  r.attention_ms, 100.0 * r.attention_ms / r.step_ms, vs_flash, r.peak_gib);
      std::fflush(stdout);
    };
    for (AttentionBackend backend : args.backends) {
      const StepResult r = measure(model, shape, backend);
      if (backend == AttentionBackend::flash) flash_ms = r.step_ms;
      print_row(std::string(sagevid::backend_name(backend)), r);
      if (backend != AttentionBackend::sage2) continue;
      print_row("sage2, FP8 linears", measure(model.with_fp8_linears(), shape, AttentionBackend::sage2));
      print_row("sage2, FP8 linears, fast accum",
                measure(model.with_fp8_linears(true), shape, AttentionBackend::sage2));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Args> args = parse_args(argc, argv);
  if (!args) {
    std::fprintf(stderr,
                 "usage: sagevid-bench [--model CogVideoX-2B|CogVideoX-5B|CogVideoX1.5-5B] "
                 "([--backend NAME]... | --breakdown [--fp8-linears [--fp8-fast-accum]] | --fp8-accuracy)\n");
    return 2;
  }
  const auto devices = sagevid::kernels::cuda_devices();
  if (devices.empty()) {
    std::fprintf(stderr, "sagevid-bench: no CUDA device\n");
    return 1;
  }
  c10::InferenceMode inference;
  std::printf(
      "device: %s (sm_%d); one transformer step, CogVideoX 2B/5B at 49x480x720 (17,776 tokens), 1.5-5B at "
      "81x768x1360 (45,106 tokens), CFG batch 2, bf16, random "
      "weights; median of 5 steps after 2 warm-ups\n\n",
      devices[0].name.c_str(), devices[0].compute_capability);
  if (args->breakdown) print_breakdowns(*args);
  else if (args->fp8_accuracy) print_fp8_accuracy(*args);
  else print_steps(*args);
  return 0;
}
