#include "sagevid/models/step_profile.h"

#include "sagevid/kernels/cuda_check.h"

#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>

namespace sagevid {
namespace {

thread_local StepProfile* active_profile = nullptr;

cudaEvent_t event(void* e) { return static_cast<cudaEvent_t>(e); }

void record_on_current_stream(void* e) {
  SAGEVID_CUDA_CHECK(cudaEventRecord(event(e), c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

StepProfile::StepProfile() : previous_(active_profile) { active_profile = this; }

StepProfile::~StepProfile() {
  active_profile = previous_;
  clear();
  for (void* e : spare_events_) cudaEventDestroy(event(e));
}

void* StepProfile::take_event() {
  if (spare_events_.empty()) {
    cudaEvent_t e = nullptr;
    SAGEVID_CUDA_CHECK(cudaEventCreate(&e));
    return e;
  }
  void* e = spare_events_.back();
  spare_events_.pop_back();
  return e;
}

std::vector<std::pair<std::string, double>> StepProfile::totals() const {
  std::vector<std::pair<std::string, double>> totals;
  for (const Span& span : spans_) {
    SAGEVID_CUDA_CHECK(cudaEventSynchronize(event(span.end)));
    float ms = 0;
    SAGEVID_CUDA_CHECK(cudaEventElapsedTime(&ms, event(span.start), event(span.end)));
    const auto found = std::find_if(totals.begin(), totals.end(), [&](const auto& t) { return t.first == span.name; });
    if (found == totals.end()) totals.emplace_back(span.name, ms);
    else found->second += ms;
  }
  return totals;
}

void StepProfile::clear() {
  for (const Span& span : spans_) spare_events_.push_back(span.start), spare_events_.push_back(span.end);
  spans_.clear();
}

// Both events are taken here, where a CUDA error may throw; the destructor only records (and drops the span if
// that fails: it must not throw).
ProfileRegion::ProfileRegion(const char* name) : profile_(active_profile), name_(name) {
  if (!profile_) return;
  start_ = profile_->take_event();
  end_ = profile_->take_event();
  record_on_current_stream(start_);
}

ProfileRegion::~ProfileRegion() {
  if (!profile_) return;
  if (cudaEventRecord(event(end_), c10::cuda::getCurrentCUDAStream().stream()) == cudaSuccess)
    profile_->spans_.push_back({name_, start_, end_});
  else profile_->spare_events_.push_back(start_), profile_->spare_events_.push_back(end_);
}

}  // namespace sagevid
