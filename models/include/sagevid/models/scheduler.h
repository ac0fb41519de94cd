#pragma once
// The CogVideoX noise schedulers, matching diffusers' CogVideoXDDIMScheduler and CogVideoXDPMScheduler
// (diffusers 0.39) step for step: same alphas_cumprod (dtype included), same timesteps, same arithmetic
// order, and for DPM the same draws from the noise generator.
//
// Typical use (the pipeline):
//   auto scheduler = make_scheduler(model_dir / "scheduler/scheduler_config.json");
//   scheduler->set_timesteps(50);
//   latents = randn(...) * scheduler->init_noise_sigma();
//   for (size_t i = 0; i < scheduler->timesteps().size(); ++i)
//     latents = scheduler->step(model(latents, scheduler->timesteps()[i]), int(i), latents, &generator);
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sagevid {

enum class SchedulerKind { ddim, dpm };                            // "_class_name"
enum class BetaSchedule { linear, scaled_linear, squaredcos_cap_v2 };
enum class PredictionType { epsilon, v_prediction, sample };      // what the model predicts
enum class TimestepSpacing { leading, trailing, linspace };

// scheduler/scheduler_config.json as diffusers reads it: absent keys take diffusers' defaults and keys we
// don't use are ignored (these files carry "_diffusers_version" and the like). Bad values are ConfigErrors
// naming the key.
struct SchedulerConfig {
  SchedulerKind kind = SchedulerKind::ddim;
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  BetaSchedule beta_schedule = BetaSchedule::scaled_linear;
  std::vector<double> trained_betas;  // when set, replaces beta_start/beta_end/beta_schedule
  PredictionType prediction_type = PredictionType::epsilon;
  TimestepSpacing timestep_spacing = TimestepSpacing::leading;
  int64_t steps_offset = 0;           // added to "leading" timesteps only
  bool set_alpha_to_one = true;       // alpha before t = 0: 1, or alphas_cumprod[0]
  bool rescale_betas_zero_snr = false;
  double snr_shift_scale = 3.0;
  // Read and kept for completeness; the CogVideoX schedulers never clip or threshold.
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  double sample_max_value = 1.0;

  static SchedulerConfig from_json(const nlohmann::json& document, const std::string& source);
  static SchedulerConfig from_file(const std::filesystem::path& scheduler_config_json);
};

// alphas_cumprod[t] for t in [0, num_train_timesteps): float64 for scaled_linear betas, float32 otherwise,
// exactly as diffusers computes it (SNR shift, then optional zero-terminal-SNR rescaling). CPU.
at::Tensor make_alphas_cumprod(const SchedulerConfig& config);

// The descending timesteps set_timesteps(n) picks under config.timestep_spacing (numpy's rounding).
std::vector<int64_t> make_timesteps(const SchedulerConfig& config, int num_inference_steps);

// What both schedulers read per step: the config, alphas_cumprod and the current timesteps.
class ScheduleTable {
 public:
  explicit ScheduleTable(SchedulerConfig config);

  // The alphas of one step as 0-d CPU tensors in alphas_cumprod's dtype: diffusers does the per-step scalar
  // math on such tensors, and torch's scalar kernels don't always round like libm (its float32 sqrt and
  // log differ in the last bit), so the schedulers do that math with the same kernels.
  struct Step {
    int64_t timestep = 0, prev_timestep = 0;  // prev may be < 0 on the last steps
    at::Tensor alpha, alpha_prev;             // alphas_cumprod there (the "final" alpha below 0)
  };

  void set_timesteps(int num_inference_steps);
  const SchedulerConfig& config() const { return config_; }
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  at::Tensor alpha(int64_t timestep) const;  // 0-d; bounds-checked
  Step at(int step_index) const;             // throws before set_timesteps or for an index out of range

 private:
  SchedulerConfig config_;
  at::Tensor alphas_cumprod_;  // CPU, float64 or float32 as diffusers
  at::Tensor final_alpha_;     // 0-d: 1, or alphas_cumprod[0] without set_alpha_to_one
  std::vector<int64_t> timesteps_;
  int num_inference_steps_ = 0;
};

// What both schedulers share: the table, its accessors and the x0 prediction; each adds its step.
class Scheduler {  // abstract
 public:
  virtual void set_timesteps(int num_inference_steps) { table_.set_timesteps(num_inference_steps); }
  const std::vector<int64_t>& timesteps() const { return table_.timesteps(); }
  double init_noise_sigma() const { return 1.0; }  // both CogVideoX schedulers start from unit-variance noise
  const at::Tensor& alphas_cumprod() const { return table_.alphas_cumprod(); }
  // One denoising step at timesteps()[step_index]. model_output and sample are fp32 [B, F, C, H, W] (any
  // shape, any device); returns the previous sample. DPM keeps the previous x0 prediction itself (steps
  // must then come in order 0, 1, 2, ...); DDIM ignores it. noise: generator for the DPM's noise (nullptr:
  // the default generator); a CPU generator draws on the CPU and moves the noise, as diffusers does.
  // Other dtypes work and promote as in diffusers: its pipeline passes the latents in the model's dtype
  // (bf16 for 5b), and DPM draws its noise in sample's dtype, so pass the same to reproduce its draws.
  virtual at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                          at::Generator* noise = nullptr) = 0;
  // The clean sample x0 that the model output at step_index predicts (what step() moves toward), for previews.
  at::Tensor original_sample(const at::Tensor& model_output, int step_index, const at::Tensor& sample) const;
  virtual ~Scheduler() = default;

 protected:
  explicit Scheduler(SchedulerConfig config) : table_(std::move(config)) {}
  ScheduleTable table_;
};

std::unique_ptr<Scheduler> make_ddim_scheduler(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_dpm_scheduler(const SchedulerConfig& config);
std::unique_ptr<Scheduler> make_scheduler(const SchedulerConfig& config);  // by config.kind
// Picks DDIM or DPM from "_class_name" (CogVideoXDDIMScheduler / CogVideoXDPMScheduler).
std::unique_ptr<Scheduler> make_scheduler(const std::filesystem::path& scheduler_config_json);

}  // namespace sagevid
