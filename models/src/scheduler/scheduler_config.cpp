// The schedule a diffusers scheduler_config.json defines: the config itself, alphas_cumprod, the timesteps
// for a step count, the per-step table both schedulers read, what they share (Scheduler), and the factory that
// picks DDIM or DPM.
#include "sagevid/models/config_reader.h"
#include "sagevid/models/scheduler.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cumprod.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linspace.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/sqrt.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace sagevid {
namespace {

// trained_betas is a list (or null); ConfigReader has no list type, so read the JSON directly.
std::vector<double> read_trained_betas(const nlohmann::json& document, ConfigReader& reader) {
  auto it = document.find("trained_betas");
  if (it == document.end() || it->is_null()) return {};
  if (!it->is_array()) reader.fail("trained_betas", "expected a list of numbers or null");
  std::vector<double> betas;
  for (const auto& value : *it) {
    if (!value.is_number()) reader.fail("trained_betas", "expected a list of numbers or null");
    betas.push_back(value.get<double>());
  }
  return betas;
}

SchedulerConfig read_config(const nlohmann::json& document) {
  ConfigReader reader(document, "");
  SchedulerConfig c;
  if (!reader.has("_class_name"))
    reader.fail("_class_name", "missing (expected CogVideoXDDIMScheduler or CogVideoXDPMScheduler)");
  c.kind =
      reader.choice("_class_name", c.kind,
                    {{"CogVideoXDDIMScheduler", SchedulerKind::ddim}, {"CogVideoXDPMScheduler", SchedulerKind::dpm}});
  c.num_train_timesteps = reader.get<int64_t>("num_train_timesteps", c.num_train_timesteps);
  if (c.num_train_timesteps < 1) reader.fail("num_train_timesteps", "must be at least 1");
  c.beta_start = reader.get<double>("beta_start", c.beta_start);
  c.beta_end = reader.get<double>("beta_end", c.beta_end);
  c.beta_schedule = reader.choice("beta_schedule", c.beta_schedule,
                                  {{"linear", BetaSchedule::linear},
                                   {"scaled_linear", BetaSchedule::scaled_linear},
                                   {"squaredcos_cap_v2", BetaSchedule::squaredcos_cap_v2}});
  c.trained_betas = read_trained_betas(document, reader);
  if (!c.trained_betas.empty() && int64_t(c.trained_betas.size()) != c.num_train_timesteps)
    reader.fail("trained_betas", "expected num_train_timesteps (" + std::to_string(c.num_train_timesteps) +
                                     ") values, got " + std::to_string(c.trained_betas.size()));
  c.prediction_type = reader.choice("prediction_type", c.prediction_type,
                                    {{"epsilon", PredictionType::epsilon},
                                     {"v_prediction", PredictionType::v_prediction},
                                     {"sample", PredictionType::sample}});
  c.timestep_spacing = reader.choice("timestep_spacing", c.timestep_spacing,
                                     {{"leading", TimestepSpacing::leading},
                                      {"trailing", TimestepSpacing::trailing},
                                      {"linspace", TimestepSpacing::linspace}});
  c.steps_offset = reader.get<int64_t>("steps_offset", c.steps_offset);
  c.set_alpha_to_one = reader.get<bool>("set_alpha_to_one", c.set_alpha_to_one);
  c.rescale_betas_zero_snr = reader.get<bool>("rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  c.snr_shift_scale = reader.get<double>("snr_shift_scale", c.snr_shift_scale);
  c.clip_sample = reader.get<bool>("clip_sample", c.clip_sample);
  c.clip_sample_range = reader.get<double>("clip_sample_range", c.clip_sample_range);
  c.sample_max_value = reader.get<double>("sample_max_value", c.sample_max_value);
  // Deliberately no reader.finish(): diffusers ignores keys it doesn't know, and so must we.
  return c;
}

// A float32 CPU tensor from double values, rounded once each (as torch.tensor(list, dtype=float32)).
at::Tensor float_tensor(const std::vector<double>& values) {
  at::Tensor t = at::empty({int64_t(values.size())}, at::kFloat);
  float* out = t.data_ptr<float>();
  for (size_t i = 0; i < values.size(); ++i) out[i] = float(values[i]);
  return t;
}

// Glide's cosine schedule: betas from alpha_bar(t) = cos²((t + 0.008) / 1.008 · π/2), capped at 0.999.
std::vector<double> cosine_betas(int64_t n) {
  const auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  std::vector<double> betas;
  for (int64_t i = 0; i < n; ++i)
    betas.push_back(std::min(1 - alpha_bar(double(i + 1) / n) / alpha_bar(double(i) / n), 0.999));
  return betas;
}

at::Tensor make_betas(const SchedulerConfig& c) {
  if (!c.trained_betas.empty()) return float_tensor(c.trained_betas);
  switch (c.beta_schedule) {
    case BetaSchedule::linear: return at::linspace(c.beta_start, c.beta_end, c.num_train_timesteps, at::kFloat);
    case BetaSchedule::scaled_linear:  // the one schedule diffusers builds in float64
      return at::pow(at::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), c.num_train_timesteps, at::kDouble),
                     2);
    case BetaSchedule::squaredcos_cap_v2: return float_tensor(cosine_betas(c.num_train_timesteps));
  }
  throw std::logic_error("unhandled beta schedule");
}

// Algorithm 1 of "Common Diffusion Noise Schedules and Sample Steps are Flawed": shift and scale
// sqrt(alphas_cumprod) so the last timestep has zero SNR and the first keeps its value.
at::Tensor rescale_zero_terminal_snr(const at::Tensor& alphas_cumprod) {
  at::Tensor root = at::sqrt(alphas_cumprod);
  const at::Tensor first = root[0].clone();
  const at::Tensor last = root[-1].clone();
  root.sub_(last);
  root.mul_(first / (first - last));
  return at::pow(root, 2);
}

// numpy's float arange(start, stop, step): length ceil((stop - start) / step), element i at
// start + i * ((start + step) - start). That odd delta is numpy's and changes the rounding for some n.
std::vector<double> numpy_arange(double start, double stop, double step) {
  const auto length = int64_t(std::ceil((stop - start) / step));
  const double delta = (start + step) - start;
  std::vector<double> values;
  for (int64_t i = 0; i < length; ++i) values.push_back(start + double(i) * delta);
  return values;
}

}  // namespace

SchedulerConfig SchedulerConfig::from_json(const nlohmann::json& document, const std::string& source) {
  try {
    return read_config(document);
  } catch (const ConfigError& e) {
    throw ConfigError(source + ": " + e.what());
  }
}

SchedulerConfig SchedulerConfig::from_file(const std::filesystem::path& scheduler_config_json) {
  return from_json(read_json_file(scheduler_config_json), scheduler_config_json.string());
}

at::Tensor make_alphas_cumprod(const SchedulerConfig& c) {
  const at::Tensor alphas = 1.0 - make_betas(c);
  at::Tensor cumprod = at::cumprod(alphas, 0);
  // CogVideoX's SNR shift (after SD3): alpha' = alpha / (s + (1 - s) alpha), i.e. SNR divided by s.
  cumprod = cumprod / ((1.0 - c.snr_shift_scale) * cumprod + c.snr_shift_scale);
  return c.rescale_betas_zero_snr ? rescale_zero_terminal_snr(cumprod) : cumprod;
}

std::vector<int64_t> make_timesteps(const SchedulerConfig& c, int num_inference_steps) {
  const int64_t n = num_inference_steps, train = c.num_train_timesteps;
  if (n < 1 || n > train)
    throw std::invalid_argument("num_inference_steps must be in [1, " + std::to_string(train) + "], got " +
                                std::to_string(n));
  std::vector<int64_t> timesteps;
  switch (c.timestep_spacing) {
    case TimestepSpacing::linspace: {  // round(linspace(0, train - 1, n)), descending; the end is exact
      const double step = n > 1 ? double(train - 1) / double(n - 1) : 0.0;
      for (int64_t i = n - 1; i >= 0; --i)
        timesteps.push_back(i == n - 1 && n > 1 ? train - 1 : int64_t(std::nearbyint(double(i) * step)));
      break;
    }
    case TimestepSpacing::leading: {  // 0, r, 2r, ... with r = train // n, descending, plus the offset
      for (int64_t i = n - 1; i >= 0; --i) timesteps.push_back(i * (train / n) + c.steps_offset);
      break;
    }
    case TimestepSpacing::trailing: {  // round(arange(train, 0, -train / n)) - 1: always starts at train - 1
      for (double t : numpy_arange(double(train), 0.0, -double(train) / double(n)))
        timesteps.push_back(int64_t(std::nearbyint(t)) - 1);
      break;
    }
  }
  return timesteps;
}

ScheduleTable::ScheduleTable(SchedulerConfig config)
    : config_(std::move(config)), alphas_cumprod_(make_alphas_cumprod(config_)) {
  final_alpha_ = config_.set_alpha_to_one ? at::ones({}, alphas_cumprod_.options()) : alphas_cumprod_[0];
}

void ScheduleTable::set_timesteps(int num_inference_steps) {
  timesteps_ = make_timesteps(config_, num_inference_steps);
  num_inference_steps_ = num_inference_steps;
}

at::Tensor ScheduleTable::alpha(int64_t timestep) const {
  if (timestep < 0 || timestep >= alphas_cumprod_.numel())
    throw std::out_of_range("timestep " + std::to_string(timestep) + " outside [0, " +
                            std::to_string(alphas_cumprod_.numel()) + ")");
  return alphas_cumprod_[timestep];
}

ScheduleTable::Step ScheduleTable::at(int step_index) const {
  if (timesteps_.empty()) throw std::logic_error("scheduler: call set_timesteps before step");
  if (step_index < 0 || size_t(step_index) >= timesteps_.size())
    throw std::out_of_range("scheduler: step_index " + std::to_string(step_index) + " outside [0, " +
                            std::to_string(timesteps_.size()) + ")");
  Step s;
  s.timestep = timesteps_[size_t(step_index)];
  // diffusers steps back by train // n whatever the spacing, not to the next entry of timesteps.
  s.prev_timestep = s.timestep - config_.num_train_timesteps / num_inference_steps_;
  s.alpha = alpha(s.timestep);
  s.alpha_prev = s.prev_timestep >= 0 ? alpha(s.prev_timestep) : final_alpha_;
  return s;
}

// x0 from the model output: formula (12) of the DDIM paper and its v / sample variants.
at::Tensor Scheduler::original_sample(const at::Tensor& model_output, int step_index, const at::Tensor& sample) const {
  const at::Tensor alpha = table_.at(step_index).alpha;
  const double sqrt_alpha = alpha.pow(0.5).item<double>();
  const double sqrt_beta = (1 - alpha).pow(0.5).item<double>();
  switch (table_.config().prediction_type) {
    case PredictionType::epsilon: return (sample - model_output * sqrt_beta) / sqrt_alpha;
    case PredictionType::v_prediction: return sample * sqrt_alpha - model_output * sqrt_beta;
    case PredictionType::sample: return model_output;
  }
  throw std::logic_error("unhandled prediction type");
}

std::unique_ptr<Scheduler> make_scheduler(const SchedulerConfig& config) {
  return config.kind == SchedulerKind::dpm ? make_dpm_scheduler(config) : make_ddim_scheduler(config);
}

std::unique_ptr<Scheduler> make_scheduler(const std::filesystem::path& scheduler_config_json) {
  return make_scheduler(SchedulerConfig::from_file(scheduler_config_json));
}

}  // namespace sagevid
