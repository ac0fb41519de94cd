// CogVideoXDDIMScheduler: the deterministic DDIM step (eta = 0). diffusers' CogVideoX variant never adds
// variance noise, clips or thresholds, whatever the config says, so neither do we.
#include "sagevid/models/scheduler.h"

#include <ATen/TensorOperators.h>

#include <stdexcept>

namespace sagevid {

at::Tensor predict_original_sample(PredictionType type, const at::Tensor& model_output, const at::Tensor& sample,
                                   const at::Tensor& alpha) {
  const double sqrt_alpha = alpha.pow(0.5).item<double>();
  const double sqrt_beta = (1 - alpha).pow(0.5).item<double>();
  switch (type) {
    case PredictionType::epsilon: return (sample - model_output * sqrt_beta) / sqrt_alpha;
    case PredictionType::v_prediction: return sample * sqrt_alpha - model_output * sqrt_beta;
    case PredictionType::sample: return model_output;
  }
  throw std::logic_error("unhandled prediction type");
}

namespace {

class DdimScheduler final : public Scheduler {
 public:
  explicit DdimScheduler(SchedulerConfig config) : table_(std::move(config)) {}

  void set_timesteps(int num_inference_steps) override { table_.set_timesteps(num_inference_steps); }
  const std::vector<int64_t>& timesteps() const override { return table_.timesteps(); }
  double init_noise_sigma() const override { return 1.0; }
  const at::Tensor& alphas_cumprod() const override { return table_.alphas_cumprod(); }
  at::Tensor original_sample(const at::Tensor& model_output, int step_index, const at::Tensor& sample) const override {
    return predict_original_sample(table_.config().prediction_type, model_output, sample, table_.at(step_index).alpha);
  }

  // x_prev = c x_t + (sqrt(a_prev) - sqrt(a) c) x0 with c = sqrt((1 - a_prev) / (1 - a)): DDIM with eta = 0,
  // the noise direction carried by x_t's own coefficient.
  at::Tensor step(const at::Tensor& model_output, int step_index, const at::Tensor& sample,
                  at::Generator* /*noise: DDIM draws none*/) override {
    const ScheduleTable::Step s = table_.at(step_index);
    const at::Tensor to_sample = ((1 - s.alpha_prev) / (1 - s.alpha)).pow(0.5);
    const at::Tensor to_x0 = s.alpha_prev.pow(0.5) - s.alpha.pow(0.5) * to_sample;
    const at::Tensor x0 = original_sample(model_output, step_index, sample);
    return sample * to_sample.item<double>() + x0 * to_x0.item<double>();
  }

 private:
  ScheduleTable table_;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim_scheduler(const SchedulerConfig& config) {
  return std::make_unique<DdimScheduler>(config);
}

}  // namespace sagevid
