// Parity of the CogVideoX schedulers with diffusers, on the fixtures of
// tests/fixtures/make_scheduler_fixtures.py: alphas_cumprod, timesteps for many step counts, and every
// step of full denoising loops (each step fed diffusers' own input, so errors can't accumulate).
#include "catch.h"
#include "sagevid/models/config_reader.h"
#include "sagevid/models/safetensors.h"
#include "sagevid/models/scheduler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/max.h>
#include <ATen/ops/zeros.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sagevid::ConfigError;
using sagevid::SafetensorsModel;
using sagevid::SchedulerConfig;

const fs::path kDir = fs::path(SAGEVID_FIXTURES_DIR) / "schedulers";
constexpr double kTolerance = 1e-5;

// max |got - want| / max |want|: relative to the tensor's scale, so entries near zero don't blow it up.
double relative_error(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  const double scale = std::max(at::max(at::abs(w)).item<double>(), 1e-30);
  return at::max(at::abs(g - w)).item<double>() / scale;
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// One full loop as the pipeline runs it; returns the largest per-step relative error.
double loop_error(sagevid::Scheduler& scheduler, const SafetensorsModel& fixture, int n) {
  char prefix_chars[16];  // "n50/"; snprintf because GCC 12 warns falsely on "n" + std::to_string(n)
  std::snprintf(prefix_chars, sizeof prefix_chars, "n%d/", n);
  const std::string prefix = prefix_chars;
  at::Generator noise =
      at::make_generator<at::CPUGeneratorImpl>(uint64_t(to_vector(fixture.view(prefix + "noise_seed"))[0]));
  scheduler.set_timesteps(n);
  double worst = 0;
  for (int i = 0; i < int(scheduler.timesteps().size()); ++i) {
    const std::string index = std::to_string(i);
    const at::Tensor out = scheduler.step(fixture.view(prefix + "model_output_" + index), i,
                                          fixture.view(prefix + "sample_" + index), &noise);
    worst = std::max(worst, relative_error(out, fixture.view(prefix + "prev_sample_" + index)));
  }
  return worst;
}

SchedulerConfig config_of(const std::string& text) { return SchedulerConfig::from_json(json::parse(text), "test"); }

}  // namespace

TEST_CASE("schedulers match diffusers on the shipped and synthetic configs", "[scheduler]") {
  const std::string name =
      GENERATE(as<std::string>{}, "cogvideox-2b", "cogvideox-5b", "ddim-linear-leading", "dpm-cosine-linspace");
  CAPTURE(name);
  const auto scheduler = sagevid::make_scheduler(kDir / (name + ".scheduler_config.json"));
  const SafetensorsModel fixture = SafetensorsModel::open(kDir / (name + ".safetensors"));
  CHECK(scheduler->init_noise_sigma() == 1.0);

  const at::Tensor want_alphas = fixture.view("alphas_cumprod");
  CHECK(scheduler->alphas_cumprod().scalar_type() == want_alphas.scalar_type());
  const double alphas_error = relative_error(scheduler->alphas_cumprod(), want_alphas);
  CHECK(alphas_error <= kTolerance);

  int timestep_sets = 0;
  for (const std::string& tensor : fixture.names()) {
    if (tensor.rfind("timesteps_n", 0) != 0) continue;
    const int n = std::stoi(tensor.substr(11));
    CAPTURE(n);
    scheduler->set_timesteps(n);
    CHECK(scheduler->timesteps() == to_vector(fixture.view(tensor)));
    ++timestep_sets;
  }
  CHECK(timestep_sets >= 9);

  // The synthetic cosine schedule draws its betas through libm's cos: a 1-ulp difference between C libraries
  // (seen on Ubuntu 24.04 against the Debian 12 that wrote the fixture) grows to ~4e-4 where ᾱ nears 0.
  const double tolerance = name == "dpm-cosine-linspace" ? 1e-3 : kTolerance;
  for (int n : {50, 7}) {
    CAPTURE(n);
    const double error = loop_error(*scheduler, fixture, n);
    std::printf("scheduler %-20s n=%-2d alphas_cumprod rel err %.3g, max step rel err %.3g\n", name.c_str(), n,
                alphas_error, error);
    CHECK(error <= tolerance);
  }
}

TEST_CASE("scheduler config takes diffusers' defaults and ignores unknown keys", "[scheduler]") {
  const SchedulerConfig c = config_of(R"({"_class_name": "CogVideoXDPMScheduler", "_diffusers_version": "0.30.0",
                                          "some_future_key": [1, 2]})");
  CHECK(c.kind == sagevid::SchedulerKind::dpm);
  CHECK(c.num_train_timesteps == 1000);
  CHECK(c.beta_start == 0.00085);
  CHECK(c.beta_end == 0.012);
  CHECK(c.beta_schedule == sagevid::BetaSchedule::scaled_linear);
  CHECK(c.prediction_type == sagevid::PredictionType::epsilon);
  CHECK(c.timestep_spacing == sagevid::TimestepSpacing::leading);
  CHECK(c.snr_shift_scale == 3.0);
  CHECK(c.set_alpha_to_one);
  CHECK_FALSE(c.rescale_betas_zero_snr);
  CHECK(c.trained_betas.empty());
}

TEST_CASE("scheduler config errors name the key and the bad value", "[scheduler]") {
  REQUIRE_THROWS_WITH(config_of(R"({"_class_name": "DDIMScheduler"})"),
                      ContainsSubstring("test: _class_name: unknown value \"DDIMScheduler\"") &&
                          ContainsSubstring("CogVideoXDPMScheduler"));
  REQUIRE_THROWS_WITH(config_of(R"({"beta_schedule": "linear"})"), ContainsSubstring("_class_name: missing"));
  REQUIRE_THROWS_WITH(
      config_of(R"({"_class_name": "CogVideoXDDIMScheduler", "beta_schedule": "cosine"})"),
      ContainsSubstring("beta_schedule: unknown value \"cosine\"") && ContainsSubstring("squaredcos_cap_v2"));
  REQUIRE_THROWS_WITH(config_of(R"({"_class_name": "CogVideoXDDIMScheduler", "prediction_type": "flow"})"),
                      ContainsSubstring("prediction_type: unknown value \"flow\""));
  REQUIRE_THROWS_WITH(config_of(R"({"_class_name": "CogVideoXDDIMScheduler", "timestep_spacing": 3})"),
                      ContainsSubstring("timestep_spacing: expected a string"));
  REQUIRE_THROWS_WITH(config_of(R"({"_class_name": "CogVideoXDDIMScheduler", "trained_betas": [0.1]})"),
                      ContainsSubstring("trained_betas: expected num_train_timesteps (1000) values, got 1"));
  REQUIRE_THROWS_AS(sagevid::make_scheduler(kDir / "no-such.scheduler_config.json"), ConfigError);
}

TEST_CASE("schedulers reject misuse", "[scheduler]") {
  for (const char* kind : {"CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"}) {
    CAPTURE(kind);
    const auto scheduler = sagevid::make_scheduler(config_of(std::string(R"({"_class_name": ")") + kind + "\"}"));
    const at::Tensor x = at::zeros({1, 2, 3});
    REQUIRE_THROWS_WITH(scheduler->step(x, 0, x), ContainsSubstring("set_timesteps"));
    REQUIRE_THROWS_AS(scheduler->set_timesteps(0), std::invalid_argument);
    REQUIRE_THROWS_AS(scheduler->set_timesteps(1001), std::invalid_argument);
    scheduler->set_timesteps(4);
    REQUIRE_THROWS_AS(scheduler->step(x, 4, x), std::out_of_range);
  }
  const auto dpm = sagevid::make_scheduler(config_of(R"({"_class_name": "CogVideoXDPMScheduler"})"));
  dpm->set_timesteps(4);
  const at::Tensor x = at::zeros({2});
  REQUIRE_THROWS_WITH(dpm->step(x, 1, x), ContainsSubstring("expected step 0"));
  dpm->step(x, 0, x);
  REQUIRE_THROWS_WITH(dpm->step(x, 2, x), ContainsSubstring("expected step 1"));
}
