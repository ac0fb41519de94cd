// One request over several ranks (PipelineOptions::devices and parallel) on the tiny model: CPU ranks talking
// through Gloo, fp32. The frames must be those of one device and of diffusers; callbacks come once; cancelling
// stops every rank and leaves the groups usable; plans that cannot run are refused at load.
#include "catch.h"
#include "test_random.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"

#include "counting_cpu_allocator.h"
#include "pipeline_parity.h"

#include <ATen/ops/cat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sagevid::CogVideoXPipeline;
using sagevid::GenerationRequest;
using sagevid::ParallelPlan;
using sagevid::PipelineOptions;

const fs::path kModel = fs::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
const fs::path kFixture = fs::path(SAGEVID_FIXTURES_DIR) / "pipeline";

PipelineOptions on_cpu_ranks(const ParallelPlan& plan) {
  PipelineOptions options;
  options.devices.assign(size_t(plan.world()), c10::Device(c10::kCPU));
  options.parallel = plan;
  return options;
}

std::string plan_name(const ParallelPlan& plan) {
  return "cfg " + std::to_string(plan.cfg) + " x ulysses " + std::to_string(plan.ulysses);
}

// A request at the tiny model's sample size.
GenerationRequest sample_size_request(const std::string& prompt, int steps, uint64_t seed) {
  GenerationRequest request;
  request.prompt = prompt;
  request.num_frames = 9;
  request.height = 64;
  request.width = 96;
  request.num_inference_steps = steps;
  request.seed = seed;
  return request;
}

std::string load_refusal(const PipelineOptions& options) {
  try {
    CogVideoXPipeline::load(kModel, options);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "loaded";
}

}  // namespace

TEST_CASE("a request over cfg 2, ulysses 2 and both makes one device's frames, and diffusers'",
          "[pipeline][parallel]") {
  const ParallelPlan plan = GENERATE(ParallelPlan{2, 1}, ParallelPlan{1, 2}, ParallelPlan{2, 2});
  const std::string name = plan_name(plan);
  CAPTURE(name);
  const GenerationRequest request =
      sagevid::test::request_from_json(sagevid::read_json_file(kFixture / "request.json"));
  static const at::Tensor one_device = sagevid::test::generated_frames(CogVideoXPipeline::load(kModel, {}), request);
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kModel, on_cpu_ranks(plan));
  const at::Tensor frames = sagevid::test::generated_frames(pipeline, request);
  REQUIRE(frames.sizes() == one_device.sizes());
  const at::Tensor difference = (frames.to(at::kInt) - one_device.to(at::kInt)).abs();
  const double equal = (difference == 0).to(at::kDouble).mean().item<double>();
  WARN(name << " vs one device: max difference " << difference.max().item<int>() << "/255, " << equal * 100
            << "% equal");
  CHECK(difference.max().item<int>() <= 1);
  CHECK(equal >= 0.999);  // only rounding: fp32 sums in another order
  const auto fixture = sagevid::SafetensorsModel::open(kFixture / "frames.safetensors");
  sagevid::test::check_frames_match(frames, fixture.view("frames"), name);
}

TEST_CASE("DPM's per-step noise, dynamic CFG and an unguided request keep the ranks together", "[pipeline][parallel]") {
  const std::string variant_name = GENERATE(as<std::string>{}, "dpm-dynamic-cfg", "no-guidance");
  CAPTURE(variant_name);
  const fs::path variants = kFixture / "variants";
  const nlohmann::json variant = sagevid::read_json_file(variants / "requests.json").at(variant_name);
  REQUIRE(variant.at("transformer") == "tiny");
  // A model folder of links: the tiny model with the variant's scheduler, which model_index.json names.
  const fs::path dir =
      fs::temp_directory_path() / ("sagevid-parallel-" + variant_name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* part : {"tokenizer", "text_encoder", "vae", "transformer"})
    fs::create_symlink(kModel / part, dir / part);
  const bool dpm = variant.at("scheduler") == "dpm";
  fs::create_symlink(dpm ? variants / "scheduler-dpm" : kModel / "scheduler", dir / "scheduler");
  fs::create_symlink(dpm ? variants / "model-index-dpm" / "model_index.json" : kModel / "model_index.json",
                     dir / "model_index.json");
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(dir, on_cpu_ranks({2, 2}));
  const at::Tensor frames =
      sagevid::test::generated_frames(pipeline, sagevid::test::request_from_json(variant.at("request")));
  fs::remove_all(dir);
  const auto fixture = sagevid::SafetensorsModel::open(variants / "frames.safetensors");
  sagevid::test::check_frames_match(frames, fixture.view(variant_name), variant_name + ", cfg 2 x ulysses 2");
}

TEST_CASE("over several ranks the callbacks come once, and a cancel stops every rank", "[pipeline][parallel]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kModel, on_cpu_ranks({2, 2}));
  const GenerationRequest request = sample_size_request("a lighthouse at dusk", 4, rng.seed);
  const int cancel_after = int(rng.seed % 4);  // steps done before the cancel: 0..3 of 4
  CAPTURE(cancel_after);
  int steps = 0;
  const auto count_steps = [&](const sagevid::GenerationProgress& p) {
    if (p.phase == sagevid::GenerationPhase::denoise) ++steps;
  };
  CHECK_THROWS_AS(
      pipeline.generate(request, {.on_progress = count_steps, .cancelled = [&] { return steps >= cancel_after; }}),
      sagevid::GenerationCancelled);
  CHECK(steps == cancel_after);

  // The groups serve the next request, whose progress and frames come once each.
  steps = 0;
  int decoded = 0;
  const sagevid::GenerationResult result = pipeline.generate(
      request,
      {.on_progress = count_steps, .on_frames = [&](const at::Tensor& frames) { decoded += int(frames.size(0)); }});
  CHECK(steps == request.num_inference_steps);
  CHECK(decoded == request.num_frames);
  CHECK(result.num_frames == request.num_frames);
  CHECK(result.timings.decode_ranks == 1);  // untiled: rank 0 decodes alone
}

TEST_CASE("a rank that fails ends the request with its error, and the groups are made afresh for the next",
          "[pipeline][parallel]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  PipelineOptions options = on_cpu_ranks({2, 2});
  options.collective_timeout = std::chrono::seconds(2);  // Gloo's abort ends nothing: the others wait this long
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kModel, options);
  const GenerationRequest request = sample_size_request("a kite over dunes", 3, rng.seed);
  // Rank 0 fails between two steps, while the others go on to the next step's collectives; a cancel of its own
  // (not the ranks' vote) is such a failure too.
  const bool cancel = GENERATE(false, true);
  CAPTURE(cancel);
  const auto failing = [&](const sagevid::GenerationProgress& p) {
    if (p.phase != sagevid::GenerationPhase::denoise || p.step != 2) return;
    if (cancel) throw sagevid::GenerationCancelled();
    throw std::runtime_error("the client went away");
  };
  CHECK_THROWS_WITH(pipeline.generate(request, {.on_progress = failing}),
                    cancel ? "generation cancelled" : "the client went away");

  CHECK(sagevid::test::generated_frames(pipeline, request)
            .equal(sagevid::test::generated_frames(CogVideoXPipeline::load(kModel, options), request)));
}

TEST_CASE("a tiled decode shared by the ranks makes one device's frames, and a cancel in it stops every rank",
          "[pipeline][parallel]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  PipelineOptions one_device;
  one_device.vae.tiling = true;  // 3 x 3 tiles at 64 x 96
  one_device.vae.tile_sample_min_height = 32;
  one_device.vae.tile_sample_min_width = 48;
  one_device.vae.tile_overlap_factor_height = 0.25;
  one_device.vae.tile_overlap_factor_width = 1.0 / 6;
  PipelineOptions ranks = on_cpu_ranks({1, 2});  // frames as one device's, bit for bit; 5 and 4 of the 9 tiles
  ranks.vae = one_device.vae;
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kModel, ranks);
  GenerationRequest request = sample_size_request("a harbour at dawn", 2, rng.seed);
  request.num_frames = 17;  // two decoded batches: 9 frames, then 8
  const at::Tensor frames = sagevid::test::generated_frames(pipeline, request);
  CHECK(frames.equal(sagevid::test::generated_frames(CogVideoXPipeline::load(kModel, one_device), request)));

  // Both ranks decode: the CPU ranks share one allocator, so the decode's peak is both ranks' together, under their
  // estimates' sum.
  auto& allocator = sagevid::test::CountingCpuAllocator::installed();
  const int64_t resident = allocator.live();
  const auto start_decode = [&](sagevid::GenerationPhase phase) {
    if (phase == sagevid::GenerationPhase::decode) allocator.reset_peak();
  };
  CHECK(pipeline.generate(request, {.on_phase = start_decode}).timings.decode_ranks == 2);
  const int64_t peak = allocator.peak() - resident;
  const int64_t estimated = pipeline.estimate_memory(request, 0).decode + pipeline.estimate_memory(request, 1).decode;
  WARN("the shared decode's peak " << peak << " B, estimated " << estimated << " B over both ranks");
  CHECK(peak <= estimated);

  int decoded = 0;
  CHECK_THROWS_AS(
      pipeline.generate(request, {.on_frames = [&](const at::Tensor& batch) { decoded += int(batch.size(0)); },
                                  .cancelled = [&] { return decoded > 0; }}),
      sagevid::GenerationCancelled);
  CHECK(decoded == 9);  // the first batch only
  CHECK(sagevid::test::generated_frames(pipeline, request).equal(frames));  // and the groups serve on
}

TEST_CASE("a rank's denoising memory estimate covers what the ranks hold, and shrinks with the plan",
          "[pipeline][parallel]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  auto& allocator = sagevid::test::CountingCpuAllocator::installed();
  const ParallelPlan plan = GENERATE(ParallelPlan{2, 1}, ParallelPlan{1, 2}, ParallelPlan{2, 2});
  const std::string name = plan_name(plan);
  CAPTURE(name);
  const CogVideoXPipeline one = CogVideoXPipeline::load(kModel, {});
  const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kModel, on_cpu_ranks(plan));
  GenerationRequest request;
  request.prompt = "a heron over reeds";
  request.num_frames = 17;
  request.height = 16 * std::uniform_int_distribution<int64_t>(6, 12)(draw);
  request.width = 16 * std::uniform_int_distribution<int64_t>(6, 12)(draw);
  request.num_inference_steps = 2;
  request.seed = rng.seed;
  CAPTURE(request.height, request.width);
  const int64_t per_rank = pipeline.estimate_memory(request).denoise;
  CHECK(per_rank < one.estimate_memory(request).denoise);

  // The CPU ranks share one allocator: the peak of the second step is all ranks' together (after the first, every
  // rank has left its text encoding).
  const int64_t resident = allocator.live();
  int64_t peak = 0;
  sagevid::GenerationCallbacks callbacks;
  callbacks.on_progress = [&](const sagevid::GenerationProgress& progress) {
    if (progress.phase != sagevid::GenerationPhase::denoise) return;
    if (progress.step == 1) allocator.reset_peak();
    if (progress.step == 2) peak = allocator.peak() - resident;
  };
  pipeline.generate(request, callbacks);
  const int64_t ranks = plan.world();
  WARN(name << ": a step's peak " << peak << " B over " << ranks << " ranks, estimated " << per_rank << " B a rank");
  CHECK(peak <= ranks * per_rank);
  CHECK(ranks * per_rank <= 3 * peak);
}

TEST_CASE("a parallel plan the model or the devices cannot run is refused at load", "[pipeline][parallel]") {
  PipelineOptions no_devices;
  no_devices.parallel = {2, 1};
  CHECK_THAT(load_refusal(no_devices), ContainsSubstring("cfg 2 x ulysses 1 needs a list of devices"));
  CHECK_THAT(load_refusal(on_cpu_ranks({1, 4})), ContainsSubstring("2 attention heads are fewer than ulysses 4 ranks"));
  PipelineOptions short_list = on_cpu_ranks({2, 2});
  short_list.devices.pop_back();
  CHECK_THAT(load_refusal(short_list), ContainsSubstring("needs 4 devices, got 3"));
  PipelineOptions other_first = on_cpu_ranks({2, 1});
  other_first.device = c10::Device("cuda:0");
  CHECK_THAT(load_refusal(other_first), ContainsSubstring("is not the first of its devices"));
}
