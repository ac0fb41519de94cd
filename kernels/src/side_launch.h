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
  ~SideLaunch() {
    if (event_) cudaEventDestroy(event_);  // (an error between fork and join)
  }

  void fork(cudaStream_t caller, int device) {
    side_ = device_stream(device);
    SAGEVID_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    SAGEVID_CUDA_CHECK(cudaEventRecord(event_, caller));
    SAGEVID_CUDA_CHECK(cudaStreamWaitEvent(side_, event_, 0));
  }
  cudaStream_t stream() const { return side_; }
  // Nothing where nothing was forked. (A wait takes the event's record at the time it is enqueued, so the one event
  // serves both ways.)
  void join(cudaStream_t caller) {
    if (!event_) return;
    SAGEVID_CUDA_CHECK(cudaEventRecord(event_, side_));
    SAGEVID_CUDA_CHECK(cudaStreamWaitEvent(caller, event_, 0));
    SAGEVID_CUDA_CHECK(cudaEventDestroy(event_));  // (released once the record completes)
    event_ = nullptr;
  }

 private:
  // One a device, for the process's life; calls from several threads share it, their side work in turn.
  static cudaStream_t device_stream(int device) {
    static std::mutex mutex;
    static std::map<int, cudaStream_t> streams;
    const std::lock_guard<std::mutex> lock(mutex);
    cudaStream_t& stream = streams[device];
    if (!stream) SAGEVID_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    return stream;
  }

  cudaStream_t side_ = nullptr;
  cudaEvent_t event_ = nullptr;
};

}  // namespace sagevid::kernels
