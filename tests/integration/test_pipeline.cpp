// The whole text-to-video pipeline on the tiny model (assets/tiny-cogvideox) on the CPU in fp32: parity with
// the frames diffusers' CogVideoXPipeline made from it (tests/fixtures/pipeline, scripts/make_tiny_model.py),
// frame streaming, progress, cancellation, validation, seeding and failing on non-finite latents.
#include "catch.h"
#include "test_random.h"
#include "unit/safetensors_writer.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/pipeline.h"
#include "sagevid/models/safetensors.h"

#include "counting_cpu_allocator.h"
#include "pipeline_parity.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using sagevid::CogVideoXPipeline;
using sagevid::GenerationPhase;
using sagevid::GenerationRequest;
using sagevid::test::check_frames_match;
using sagevid::test::request_from_json;
using sagevid::test::generated_frames;

const fs::path kModel = fs::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox";
const fs::path kFixture = fs::path(SAGEVID_FIXTURES_DIR) / "pipeline";
const fs::path kVariants = kFixture / "variants";  // tests/fixtures/make_pipeline_fixtures.py

const CogVideoXPipeline& tiny_pipeline() {
  static const CogVideoXPipeline pipeline = CogVideoXPipeline::load(kModel, {});
  return pipeline;
}

// The request diffusers ran for the fixture frames.
GenerationRequest fixture_request() { return request_from_json(sagevid::read_json_file(kFixture / "request.json")); }

// A model folder of symlinks: the tiny model with another scheduler, transformer folder and/or model_index.json.
// Removed at scope end.
struct VariantModel {
  fs::path dir;
  VariantModel(const std::string& name, const fs::path& scheduler, const fs::path& transformer,
               const fs::path& model_index = kModel / "model_index.json")
      : dir(fs::temp_directory_path() / ("sagevid-pipeline-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* part : {"tokenizer", "text_encoder", "vae"}) fs::create_symlink(kModel / part, dir / part);
    fs::create_symlink(model_index, dir / "model_index.json");
    fs::create_symlink(scheduler, dir / "scheduler");
    fs::create_symlink(transformer, dir / "transformer");
  }
  ~VariantModel() { fs::remove_all(dir); }
};

// Everything one generate() call handed out.
struct Outcome {
  std::vector<at::Tensor> batches;
  std::vector<sagevid::GenerationProgress> progress;
  std::vector<std::string> phases;  // each phase begun, with how many progress reports came before it
  sagevid::GenerationResult result;
  at::Tensor frames() const { return at::cat(batches, 0); }
  size_t count(GenerationPhase phase) const {
    return size_t(std::count_if(progress.begin(), progress.end(), [&](const auto& p) { return p.phase == phase; }));
  }
};

// Runs the request; stop_after(outcome) is polled as the cancel callback.
Outcome run(const GenerationRequest& request, const std::function<bool(const Outcome&)>& stop_after = {}) {
  Outcome outcome;
  sagevid::GenerationCallbacks callbacks;
  callbacks.on_frames = [&](const at::Tensor& frames) { outcome.batches.push_back(frames); };
  callbacks.on_progress = [&](const sagevid::GenerationProgress& p) { outcome.progress.push_back(p); };
  callbacks.on_phase = [&](GenerationPhase phase) {
    outcome.phases.push_back(std::string(sagevid::phase_name(phase)) + " after " +
                             std::to_string(outcome.progress.size()));
  };
  if (stop_after) callbacks.cancelled = [&] { return stop_after(outcome); };
  outcome.result = tiny_pipeline().generate(request, callbacks);
  return outcome;
}

// Expects generate() to be cancelled, and returns what it handed out before.
Outcome run_cancelled(const GenerationRequest& request, const std::function<bool(const Outcome&)>& stop_after) {
  Outcome outcome;
  sagevid::GenerationCallbacks callbacks;
  callbacks.on_frames = [&](const at::Tensor& frames) { outcome.batches.push_back(frames); };
  callbacks.on_progress = [&](const sagevid::GenerationProgress& p) { outcome.progress.push_back(p); };
  callbacks.cancelled = [&] { return stop_after(outcome); };
  CHECK_THROWS_AS(tiny_pipeline().generate(request, callbacks), sagevid::GenerationCancelled);
  return outcome;
}

// The field an InvalidRequest names, or "" when the request passes.
std::string invalid_field(const GenerationRequest& request) {
  try {
    tiny_pipeline().validate(request);
  } catch (const sagevid::InvalidRequest& e) {
    return e.field;
  }
  return "";
}

// Smaller and shorter than the fixture's, for the tests that compare runs with each other.
GenerationRequest quick_request(uint64_t seed) {
  GenerationRequest request = fixture_request();
  request.height = 32;
  request.width = 48;
  request.num_inference_steps = 2;
  request.seed = seed;
  return request;
}

}  // namespace

TEST_CASE("the pipeline's frames match diffusers' CogVideoXPipeline on the tiny model", "[pipeline]") {
  const GenerationRequest request = fixture_request();
  const Outcome outcome = run(request);
  const auto fixture = sagevid::SafetensorsModel::open(kFixture / "frames.safetensors");
  check_frames_match(outcome.frames(), fixture.view("frames"), "DDIM, guidance 6");
  CHECK(outcome.result.num_frames == request.num_frames);
  CHECK(outcome.result.height == request.height);
  CHECK(outcome.result.width == request.width);
  CHECK(outcome.result.seed == request.seed);
  CHECK(outcome.result.attention_backend == "math");
}

TEST_CASE("DPM with dynamic CFG, no guidance, a 1.5-like transformer and the index's scheduler class match diffusers",
          "[pipeline]") {
  const std::string name =
      GENERATE(as<std::string>{}, "dpm-dynamic-cfg", "no-guidance", "1.5-patch-t", "index-names-dpm");
  CAPTURE(name);
  const nlohmann::json variant = sagevid::read_json_file(kVariants / "requests.json").at(name);
  // model_index.json names the scheduler class diffusers ran, which is the scheduler config's own except where
  // the variant says otherwise (index-names-dpm: a CogVideoXDDIMScheduler config under an index naming DPM).
  const std::string scheduler_class = variant.value("model_index", variant.at("scheduler").get<std::string>());
  const fs::path model_index =
      scheduler_class == "dpm" ? kVariants / "model-index-dpm" / "model_index.json" : kModel / "model_index.json";
  const VariantModel model(name, variant.at("scheduler") == "dpm" ? kVariants / "scheduler-dpm" : kModel / "scheduler",
                           variant.at("transformer") == "1.5" ? kVariants / "transformer-1.5" : kModel / "transformer",
                           model_index);
  const auto pipeline = CogVideoXPipeline::load(model.dir, {});
  const at::Tensor frames = generated_frames(pipeline, request_from_json(variant.at("request")));
  const auto fixture = sagevid::SafetensorsModel::open(kVariants / "frames.safetensors");
  check_frames_match(frames, fixture.view(name), name);
}

TEST_CASE("NaN transformer weights fail the job naming the denoising step, with no frames", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const sagevid::testing::TempDir transformer;
  const auto weights = sagevid::SafetensorsModel::open(kModel / "transformer");
  sagevid::testing::SafetensorsWriter writer;
  for (const std::string& name : weights.names()) {
    const at::Tensor nan = at::full(weights.info(name).shape, std::numeric_limits<float>::quiet_NaN(), at::kFloat);
    writer.add(name, "F32", nan.sizes().vec(), sagevid::testing::bytes_of(nan));
  }
  writer.write(transformer / "diffusion_pytorch_model.safetensors");
  fs::copy_file(kModel / "transformer" / "config.json", transformer / "config.json");
  const VariantModel model("nan-weights", kModel / "scheduler", transformer.path);
  const auto pipeline = CogVideoXPipeline::load(model.dir, {});
  const GenerationRequest request = quick_request(rng.seed);
  size_t batches = 0;
  REQUIRE_THROWS_WITH(pipeline.generate(request, {.on_frames = [&](const at::Tensor&) { ++batches; }}),
                      ContainsSubstring("denoising step 1 of " + std::to_string(request.num_inference_steps)) &&
                          ContainsSubstring("non-finite latents"));
  CHECK(batches == 0);
}

TEST_CASE("fixed initial latents replace the seeded draw", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  GenerationRequest request = quick_request(rng.seed + 1);  // rng's own draws must differ from the seed's
  const Outcome seeded = run(request);
  // The draw the seed makes (fp32 pipeline): the tiny model's DDIM steps take no noise, so these latents alone
  // decide the frames.
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(request.seed);
  request.latents = at::randn({1, 3, 4, 4, 6}, generator, at::TensorOptions().dtype(at::kFloat));
  CHECK(at::equal(run(request).frames(), seeded.frames()));
  request.latents = rng.normal({1, 3, 4, 4, 6});
  CHECK_FALSE(at::equal(run(request).frames(), seeded.frames()));
}

TEST_CASE("the same seed gives the same frames, another seed others", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  const at::Tensor first = run(quick_request(rng.seed)).frames();
  CHECK(at::equal(run(quick_request(rng.seed)).frames(), first));
  CHECK_FALSE(at::equal(run(quick_request(rng.seed + 1)).frames(), first));
}

TEST_CASE("frames stream batch by batch, with phases and progress in order", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  GenerationRequest request = quick_request(rng.seed);
  request.num_frames = 17;  // 5 latent frames: VAE batches of 3 and 2 latent frames, 9 and 8 pixel frames
  request.num_inference_steps = 3;
  const Outcome outcome = run(request);

  REQUIRE(outcome.batches.size() == 2);
  CHECK(outcome.batches[0].size(0) == 9);
  CHECK(outcome.batches[1].size(0) == 8);
  for (const at::Tensor& batch : outcome.batches) {
    CHECK(batch.scalar_type() == at::kByte);
    CHECK(batch.device().is_cpu());
    CHECK(batch.is_contiguous());
    CHECK(batch.sizes().slice(1) == at::IntArrayRef({32, 48, 3}));
  }
  CHECK(outcome.result.num_frames == 17);

  REQUIRE(outcome.progress.size() == 5);
  for (int i = 0; i < 3; ++i) {
    CHECK(outcome.progress[size_t(i)].phase == GenerationPhase::denoise);
    CHECK(outcome.progress[size_t(i)].step == i + 1);
    CHECK(outcome.progress[size_t(i)].total == 3);
  }
  CHECK(outcome.progress[3].phase == GenerationPhase::decode);
  CHECK(outcome.progress[3].step == 9);
  CHECK(outcome.progress[4].step == 17);
  CHECK(outcome.progress[4].total == 17);
  CHECK(outcome.phases == std::vector<std::string>{"text_encode after 0", "denoise after 0", "decode after 3"});
  for (size_t i = 1; i < outcome.progress.size(); ++i)
    CHECK(outcome.progress[i].elapsed_s >= outcome.progress[i - 1].elapsed_s);
  const auto& timings = outcome.result.timings;
  CHECK(timings.text_encode_s > 0);
  CHECK(timings.decode_s > 0);
  CHECK(timings.step_s_median > 0);
  CHECK(timings.denoise_s >= timings.step_s_median);
}

TEST_CASE("cancellation stops before the next step or decoded batch", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  GenerationRequest request = quick_request(rng.seed);
  request.num_frames = 17;
  request.num_inference_steps = 4;

  SECTION("during denoising") {
    const size_t steps_done = size_t(rng.seed % 4);  // cancel after 0..3 of the 4 steps
    CAPTURE(steps_done);
    const Outcome outcome = run_cancelled(request, [&](const Outcome& o) { return o.progress.size() >= steps_done; });
    CHECK(outcome.count(GenerationPhase::denoise) == steps_done);
    CHECK(outcome.count(GenerationPhase::decode) == 0);
    CHECK(outcome.batches.empty());
  }
  SECTION("between decoded batches") {
    const Outcome outcome = run_cancelled(request, [](const Outcome& o) { return !o.batches.empty(); });
    CHECK(outcome.count(GenerationPhase::denoise) == 4);
    CHECK(outcome.count(GenerationPhase::decode) == 1);
    CHECK(outcome.batches.size() == 1);
  }
  SECTION("a request cancelled from the start runs nothing") {
    const Outcome outcome = run_cancelled(request, [](const Outcome&) { return true; });
    CHECK(outcome.progress.empty());
  }
}

TEST_CASE("the tiny model's limits come from its configs", "[pipeline]") {
  const sagevid::ModelLimits& limits = tiny_pipeline().limits();
  CHECK(limits.spatial_factor == 16);    // VAE 8x, patch 2
  CHECK(limits.temporal_compression == 4);
  CHECK(limits.frame_step == 8);
  CHECK(limits.max_text_tokens == 226);
  CHECK(limits.min_size == 16);
  CHECK(limits.max_size == 192);         // twice the 12-latent-pixel sample width, in pixels
  CHECK(limits.max_frames == 17);        // twice the 9-frame sample
  CHECK(limits.max_steps == 1000);
  CHECK(limits.max_work == 4 * 72 * 50);  // 4x the sample's 3 x 4 x 6 latent tokens at 50 steps
}

TEST_CASE("work over the cap is refused with its numbers and the model's default request fits", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  GenerationRequest request = fixture_request();  // the sample size: 72 latent tokens
  request.num_inference_steps = 50;
  CHECK(tiny_pipeline().work(request) == 72 * 50);
  CHECK_NOTHROW(tiny_pipeline().validate(request));

  const int64_t cap = 72 * (1 + int64_t(rng.seed % 100));
  sagevid::PipelineOptions options;
  options.max_work = cap;
  const auto capped = CogVideoXPipeline::load(kModel, options);
  request.num_inference_steps = int(cap / 72);
  CHECK_NOTHROW(capped.validate(request));
  request.num_inference_steps += 1;
  CHECK_THROWS_WITH(capped.validate(request),
                    ContainsSubstring("72 latent tokens x " + std::to_string(request.num_inference_steps) +
                                      " steps = " + std::to_string(72 * request.num_inference_steps)) &&
                        ContainsSubstring("limit of " + std::to_string(cap)));
  CHECK_THROWS_AS(capped.generate(request), sagevid::RequestTooLarge);
}

// The estimate must never be below what a phase holds (the admission check would let a request run out of
// memory), and not so far above that it refuses requests the device could run: 3x leaves room for what the
// counts round up (temporaries, the scheduler's state) and for other backends' buffers, while any term
// counted wrongly by a shape factor (a missing batch or channel factor, the conv columns) would break it.
// Phases are told apart by GenerationCallbacks::on_phase; the RoPE transformer (1.5-like) has its own term.
TEST_CASE("the memory estimate covers the measured CPU peak of each phase, within 3x", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  auto& allocator = sagevid::test::CountingCpuAllocator::installed();
  sagevid::PipelineOptions tiled_options;
  tiled_options.vae.tiling = true;  // small tiles: every request larger than 32 x 48 decodes tile by tile
  tiled_options.vae.tile_sample_min_height = 32;
  tiled_options.vae.tile_sample_min_width = 48;
  tiled_options.vae.tile_overlap_factor_height = 0.25;  // whole latents of overlap, so the tiles fit together
  tiled_options.vae.tile_overlap_factor_width = 1.0 / 6;
  const CogVideoXPipeline tiled = CogVideoXPipeline::load(kModel, tiled_options);
  const VariantModel rope_model("estimate-rope", kModel / "scheduler", kVariants / "transformer-1.5");
  const CogVideoXPipeline rope = CogVideoXPipeline::load(rope_model.dir, {});
  for (int i = 0; i < 6; ++i) {
    const CogVideoXPipeline& pipeline = i < 2 ? tiny_pipeline() : i < 4 ? tiled : rope;
    CAPTURE(i);
    GenerationRequest request = quick_request(draw());
    request.num_frames = 1 + 8 * std::uniform_int_distribution<int64_t>(1, 2)(draw);
    request.height = 16 * std::uniform_int_distribution<int64_t>(1, 12)(draw);
    request.width = 16 * std::uniform_int_distribution<int64_t>(1, 12)(draw);
    request.num_inference_steps = 1;
    request.guidance_scale = i % 2 ? 1.0 : std::uniform_real_distribution<double>(1.5, 8)(draw);
    CAPTURE(request.num_frames, request.height, request.width, request.guidance_scale);
    const sagevid::MemoryEstimate estimate = pipeline.estimate_memory(request);

    // Each phase's peak above what was live when the request started.
    allocator.reset_peak();
    const int64_t resident = allocator.live();
    std::vector<int64_t> peaks;
    const auto close_phase = [&] {
      peaks.push_back(allocator.peak() - resident);
      allocator.reset_peak();
    };
    sagevid::GenerationCallbacks callbacks;
    callbacks.on_phase = [&](GenerationPhase phase) {
      if (phase != GenerationPhase::text_encode) close_phase();
    };
    pipeline.generate(request, callbacks);
    close_phase();
    REQUIRE(peaks.size() == 3);
    const std::vector<int64_t> estimated{estimate.text_encode, estimate.denoise, estimate.decode};
    for (size_t phase = 0; phase < 3; ++phase) {
      CAPTURE(phase, peaks[phase], estimated[phase]);
      CHECK(peaks[phase] <= estimated[phase]);
      CHECK(estimated[phase] <= 3 * peaks[phase]);
    }
  }
}

TEST_CASE("VAE tiles that would not fit together are refused at load, tiles that do give the request's size",
          "[pipeline]") {
  sagevid::PipelineOptions options;
  options.vae.tiling = true;
  options.vae.tile_sample_min_height = 32;  // 4 latents, stride 3 (24 px), but 27 px kept at the default 1/6 overlap
  options.vae.tile_sample_min_width = 48;
  CHECK_THROWS_WITH(CogVideoXPipeline::load(kModel, options),
                    ContainsSubstring("a tile height of 32 px") && ContainsSubstring("steps 24 px but keeps 27 px"));
  options.vae.tile_overlap_factor_height = 0.25;
  options.vae.tile_overlap_factor_width = 1.0 / 6;
  const CogVideoXPipeline tiled = CogVideoXPipeline::load(kModel, options);
  GenerationRequest request = quick_request(1);
  request.height = 64;  // 3 x 3 tiles
  request.width = 96;
  CHECK(generated_frames(tiled, request).sizes() == at::IntArrayRef({request.num_frames, 64, 96, 3}));
}

TEST_CASE("invalid requests are rejected naming the field", "[pipeline]") {
  const GenerationRequest good = fixture_request();
  REQUIRE(invalid_field(good).empty());
  const auto with = [&](const std::function<void(GenerationRequest&)>& edit) {
    GenerationRequest request = good;
    edit(request);
    return invalid_field(request);
  };
  CHECK(with([](auto& r) { r.prompt = ""; }) == "prompt");
  CHECK(with([](auto& r) { r.prompt = " \t\n  "; }) == "prompt");
  CHECK(with([](auto& r) { r.height = 72; }) == "height");
  CHECK(with([](auto& r) { r.height = 0; }) == "height");
  CHECK(with([](auto& r) { r.height = 208; }) == "height");
  CHECK(with([](auto& r) { r.width = 100; }) == "width");
  CHECK(with([](auto& r) { r.width = -16; }) == "width");
  CHECK(with([](auto& r) { r.num_frames = 13; }) == "num_frames");  // 4 latent frames decode to 16
  CHECK(with([](auto& r) { r.num_frames = 1; }) == "num_frames");
  CHECK(with([](auto& r) { r.num_frames = 10; }) == "num_frames");
  CHECK(with([](auto& r) { r.num_frames = 25; }) == "num_frames");
  CHECK(with([](auto& r) { r.num_inference_steps = 0; }) == "num_inference_steps");
  CHECK(with([](auto& r) { r.num_inference_steps = 1001; }) == "num_inference_steps");
  CHECK(with([](auto& r) { r.guidance_scale = -0.5; }) == "guidance_scale");
  CHECK(with([](auto& r) { r.guidance_scale = std::numeric_limits<double>::quiet_NaN(); }) == "guidance_scale");
  CHECK(with([](auto& r) { r.latents = at::zeros({1, 3, 4, 8, 11}); }) == "latents");
  CHECK(with([](auto& r) { r.latents = at::zeros({1, 3, 4, 8, 12}, at::kLong); }) == "latents");
  CHECK(with([](auto& r) { r.latents = at::zeros({1, 3, 4, 8, 12}); }).empty());
  CHECK(with([](auto& r) { r.num_frames = 17, r.height = 16, r.width = 192; }).empty());

  // generate() validates first: nothing runs for a bad request.
  GenerationRequest bad = good;
  bad.num_frames = 12;
  int calls = 0;
  sagevid::GenerationCallbacks callbacks;
  callbacks.cancelled = [&] { return ++calls, false; };
  CHECK_THROWS_AS(tiny_pipeline().generate(bad, callbacks), sagevid::InvalidRequest);
  CHECK(calls == 0);
}

TEST_CASE("a folder that is not a CogVideoX text-to-video model is refused naming the file", "[pipeline]") {
  const fs::path empty = fs::temp_directory_path() / ("sagevid-no-model-" + std::to_string(::getpid()));
  fs::create_directories(empty);
  CHECK_THROWS_WITH(CogVideoXPipeline::load(empty, {}), ContainsSubstring("model_index.json"));
  fs::remove_all(empty);
}

TEST_CASE("a scheduler class model_index.json names that is not served is refused naming it", "[pipeline]") {
  nlohmann::json index = sagevid::read_json_file(kModel / "model_index.json");
  index["scheduler"] = {"diffusers", "EulerDiscreteScheduler"};
  const sagevid::testing::TempDir dir;
  sagevid::testing::write_file(dir / "model_index.json", index.dump());
  const VariantModel model("euler-index", kModel / "scheduler", kModel / "transformer", dir / "model_index.json");
  CHECK_THROWS_WITH(CogVideoXPipeline::load(model.dir, {}),
                    ContainsSubstring("EulerDiscreteScheduler") && ContainsSubstring("model_index.json"));
}

TEST_CASE("a request's own backend runs with the pipeline's fallback, counted on that backend", "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  sagevid::PipelineOptions options;
  options.attention.fallback = sagevid::AttentionBackend::math;  // flash cannot run on the CPU
  const auto pipeline = CogVideoXPipeline::load(kModel, options);
  GenerationRequest request = quick_request(rng.seed);
  std::vector<at::Tensor> math_frames, flash_frames;
  pipeline.generate(request, {.on_frames = [&](const at::Tensor& f) { math_frames.push_back(f); }});
  CHECK(pipeline.attention().fallback_count() == 0);
  request.attention_backend = sagevid::AttentionBackend::flash;
  const auto result =
      pipeline.generate(request, {.on_frames = [&](const at::Tensor& f) { flash_frames.push_back(f); }});
  CHECK(result.attention_backend == "flash");
  CHECK(pipeline.attention(sagevid::AttentionBackend::flash).fallback_count() > 0);
  CHECK(pipeline.attention().fallback_count() == 0);
  CHECK(at::equal(at::cat(flash_frames, 0), at::cat(math_frames, 0)));  // every call fell back to math
}

TEST_CASE("previews come every preview_every steps after their progress, and the last is the first frame",
          "[pipeline]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  GenerationRequest request = quick_request(rng.seed);
  request.num_inference_steps = 6;
  request.preview_every = 2;
  std::vector<std::string> order;
  std::vector<sagevid::GenerationPreview> previews;
  std::vector<at::Tensor> batches;
  const auto result =
      tiny_pipeline().generate(request, {.on_progress =
                                             [&](const sagevid::GenerationProgress& p) {
                                               if (p.phase == GenerationPhase::denoise)
                                                 order.push_back("step " + std::to_string(p.step));
                                             },
                                         .on_frames = [&](const at::Tensor& frames) { batches.push_back(frames); },
                                         .on_preview =
                                             [&](const sagevid::GenerationPreview& preview) {
                                               order.push_back("preview " + std::to_string(preview.step));
                                               previews.push_back(preview);
                                             }});
  CHECK(order == std::vector<std::string>{"step 1", "step 2", "preview 2", "step 3", "step 4", "preview 4", "step 5",
                                          "step 6", "preview 6"});
  REQUIRE(previews.size() == 3);
  CHECK(result.timings.previews == 3);
  CHECK(result.timings.preview_s > 0);
  for (const auto& preview : previews) {
    CHECK(preview.total == 6);
    CHECK(preview.rgb.sizes() == at::IntArrayRef{32, 48, 3});  // 48 x 32 is under kPreviewLongSide: full size
    CHECK(preview.rgb.scalar_type() == at::kByte);
  }
  // DDIM's last step lands on its x0: the last preview shows the video's first frame, decoded alone (the VAE's
  // norms and temporal upsampling see one latent frame instead of a batch, so not bit for bit).
  const at::Tensor first_frame = at::cat(batches, 0)[0].to(at::kFloat);
  const auto distance = [&](const sagevid::GenerationPreview& p) {
    return (p.rgb.to(at::kFloat) - first_frame).abs().mean().item<double>();
  };
  CAPTURE(distance(previews[0]), distance(previews[1]), distance(previews[2]));
  CHECK(distance(previews[0]) > distance(previews[1]));  // each estimate closer to where the video lands
  CHECK(distance(previews[1]) > distance(previews[2]));
  CHECK(distance(previews[2]) < 16);  // of 255

  request.preview_every = -1;
  CHECK_THROWS_WITH(tiny_pipeline().generate(request, {}), ContainsSubstring("preview_every: -1 is negative"));
  request.preview_every = 0;
  bool any = false;
  tiny_pipeline().generate(request, {.on_preview = [&](const sagevid::GenerationPreview&) { any = true; }});
  CHECK_FALSE(any);
}
