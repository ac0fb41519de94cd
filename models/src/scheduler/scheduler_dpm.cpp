// CogVideoXDPMScheduler: a stochastic DPM-Solver++ (2M SDE style) step in log-SNR time. After the first
// step it extrapolates x0 from the current and the previous x0 prediction (second order). Each step adds
// fresh Gaussian noise; diffusers draws it from the pipeline's generator, twice on second-order steps
// (the first draw is discarded), and we draw the same way so a seeded generator gives the same result.
#include "sagevid/models/scheduler.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/randn.h>

#include <stdexcept>
#include <string>

namespace sagevid {
namespace {

// lambda = log(sqrt(alpha / (1 - alpha))): half the log-SNR, the solver's time variable. 0-d tensors.
at::Tensor half_log_snr(const at::Tensor& alpha) { return (alpha / (1 - alpha)).pow(0.5).log(); }

// The scalars of one step (computed on 0-d tensors like diffusers; see ScheduleTable::Step).
// x_prev = sample x_t - x0 d + noise z, with d = x0 on first-order steps and
// d = current x0 - previous x0_old on second-order ones.
struct DpmCoefficients {
  double sample = 0, x0 = 0, noise = 0, current = 0, previous = 0;
};

DpmCoefficients dpm_coefficients(const ScheduleTable::Step& s, const at::Tensor& alpha_back) {
  const at::Tensor lambda = half_log_snr(s.alpha);
  const at::Tensor h = half_log_snr(s.alpha_prev) - lambda;  // the step in lambda
  DpmCoefficients c;
  c.sample = (((1 - s.alpha_prev) / (1 - s.alpha)).pow(0.5) * (-h).exp()).item<double>();
  c.x0 = ((-2 * h).expm1() * s.alpha_prev.pow(0.5)).item<double>();  // negative
  c.noise = ((1 - s.alpha_prev).pow(0.5) * (1 - (-2 * h).exp()).pow(0.5)).item<double>();
  if (alpha_back.defined()) {  // r: the previous step's size over this one's, both in lambda
    const at::Tensor r = (lambda - half_log_snr(alpha_back)) / h;
    const at::Tensor half_inverse = (2 * r).reciprocal();
    c.current = (1 + half_inverse).item<double>();
    c.previous = half_inverse.item<double>();
  }
  return c;
}

// diffusers' randn_tensor: a CPU generator draws on the CPU, then the noise moves to the sample's device.
at::Tensor draw_noise(const at::Tensor& like, at::Generator* generator) {
  if (!generator) return at::randn(like.sizes(), like.options());
  const at::Device where = generator->device().is_cpu() ? at::Device(at::kCPU) : like.device();
  return at::randn(like.sizes(), *generator, like.options().device(where)).to(like.device());
}

class DpmScheduler final : public Scheduler {
 public:
  explicit DpmScheduler(SchedulerConfig config) : Scheduler(std::move(config)) {}

  void set_timesteps(int num_inference_steps) override {
    Scheduler::set_timesteps(num_inference_steps);
    previous_x0_ = at::Tensor();
    next_step_ = 0;
  }

  at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                  at::Generator* noise) override {
    const ScheduleTable::Step s = table_.at(step_index);
    // The second-order update needs the x0 of the step just before: step 0 starts over, others follow on.
    if (step_index != 0 && step_index != next_step_)
      throw std::logic_error("DPM scheduler: expected step " + std::to_string(next_step_) + " (or 0), got " +
                             std::to_string(step_index));
    // The last step, landing below t = 0, stays first order (diffusers: "save a network evaluation").
    const bool second_order = step_index > 0 && s.prev_timestep >= 0;
    const at::Tensor alpha_back =
        second_order ? table_.alpha(table_.timesteps()[size_t(step_index - 1)]) : at::Tensor();
    const DpmCoefficients c = dpm_coefficients(s, alpha_back);

    const at::Tensor x0 = original_sample(model_output, step_index, sample);
    at::Tensor z = draw_noise(sample, noise);
    at::Tensor prev;
    if (second_order) {
      z = draw_noise(sample, noise);  // diffusers redraws here, discarding its first-order proposal
      const at::Tensor extrapolated_x0 = x0 * c.current - previous_x0_ * c.previous;
      prev = sample * c.sample - extrapolated_x0 * c.x0 + z * c.noise;
    } else {
      prev = sample * c.sample - x0 * c.x0 + z * c.noise;
    }
    previous_x0_ = x0;
    next_step_ = step_index + 1;
    return prev;
  }

 private:
  at::Tensor previous_x0_;
  int next_step_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_scheduler(const SchedulerConfig& config) {
  return std::make_unique<DpmScheduler>(config);
}

}  // namespace sagevid
