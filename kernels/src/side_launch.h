#pragma once
// Work launched on a stream beside the caller's, to run concurrently with what the caller's stream runs next: fork
// makes a stream of the device's own wait for the caller's work so far, join makes the caller's stream wait for what
// was launched beside it since (the sm_90 ragged tail: sm90/attention_sm90.cu). Stream-ordered both ways, so that
// the call's buffers and outputs are safe for whatever the caller's stream runs after it.
#include "sagevid/kernels/cuda_check.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>

namespace sagevid::kernels {

class SideLaunch {
 public:
  SideLaunch() = default;
  SideLaunch(const SideLaunch&) = delete;
  SideLaunch& operator=(const SideLaunch&) = delete;

  void fork(cudaStream_t caller, int device) {
    side_ = &device_side(device);
    handoff(caller, side_->stream);
  }
  cudaStream_t stream() const { return side_->stream; }
  // Nothing where nothing was forked.
  void join(cudaStream_t caller) {
    if (side_) handoff(side_->stream, caller);
  }

 private:
  // One stream and one event a device, for the process's life (no event made and destroyed each call); calls from
  // several threads share them, their side work in turn.
  struct DeviceSide {
    std::mutex mutex;
    cudaStream_t stream = nullptr;
    cudaEvent_t event = nullptr;
  };
  static DeviceSide& device_side(int device) {
    static std::mutex mutex;
    static std::map<int, DeviceSide> sides;
    const std::lock_guard<std::mutex> lock(mutex);
    DeviceSide& side = sides[device];  // (each made on its own: a failed creation is retried by the next call)
    if (!side.stream) SAGEVID_CUDA_CHECK(cudaStreamCreateWithFlags(&side.stream, cudaStreamNonBlocking));
    if (!side.event) SAGEVID_CUDA_CHECK(cudaEventCreateWithFlags(&side.event, cudaEventDisableTiming));
    return side;
  }

  // `to` waits for what `from` holds so far. A wait takes the event's record as it is when the wait is enqueued, so
  // one event serves every handoff, each a record and its wait under the device's lock.
  void handoff(cudaStream_t from, cudaStream_t to) {
    const std::lock_guard<std::mutex> lock(side_->mutex);
    SAGEVID_CUDA_CHECK(cudaEventRecord(side_->event, from));
    SAGEVID_CUDA_CHECK(cudaStreamWaitEvent(to, side_->event, 0));
  }

  DeviceSide* side_ = nullptr;
};

}  // namespace sagevid::kernels
