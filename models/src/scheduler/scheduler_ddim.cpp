// CogVideoXDDIMScheduler: the deterministic DDIM step (eta = 0). diffusers' CogVideoX variant never adds
// variance noise, clips or thresholds, whatever the config says, so neither do we.
#include "sagevid/models/scheduler.h"

#include <ATen/TensorOperators.h>

namespace sagevid {

namespace {

class DdimScheduler final : public Scheduler {
 public:
  explicit DdimScheduler(SchedulerConfig config) : Scheduler(std::move(config)) {}

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
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim_scheduler(const SchedulerConfig& config) {
  return std::make_unique<DdimScheduler>(config);
}

}  // namespace sagevid
