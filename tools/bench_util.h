#pragma once
// Shared bits of the GPU tools: CUDA-event timing (median of repeated runs after warm-up), the host's time per call,
// allocator memory statistics and fresh inputs.
#include "sagevid/kernels/cuda_check.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/randn.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace sagevid::tools {

// What the current stream runs in one call of fn, timed between two CUDA events once it has finished.
class EventTimer {
 public:
  EventTimer() {
    SAGEVID_CUDA_CHECK(cudaEventCreate(&start_));
    SAGEVID_CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~EventTimer() {  // a destructor must not throw: the events go back unchecked
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  double ms(const std::function<void()>& fn) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    SAGEVID_CUDA_CHECK(cudaEventRecord(start_, stream));
    fn();
    SAGEVID_CUDA_CHECK(cudaEventRecord(stop_, stream));
    SAGEVID_CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    SAGEVID_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return ms;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

inline double median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

// Median milliseconds of `runs` timed calls of fn after `warmup` untimed ones, on the current stream.
inline double median_ms(const std::function<void()>& fn, int warmup = 5, int runs = 20) {
  for (int i = 0; i < warmup; ++i) fn();
  EventTimer timer;
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) times.push_back(timer.ms(fn));
  return median(times);
}

// The median over `runs` rounds of b's time over a's, each round one timed call of each (a first in even rounds,
// b in odd ones), after `warmup` untimed rounds: both sides of each ratio meet the same clocks, which drift within a
// run as the GPU meets its power cap (a lone median_ms of each can land on different clocks).
inline double median_ratio(const std::function<void()>& a, const std::function<void()>& b, int warmup = 5,
                           int runs = 20) {
  for (int i = 0; i < warmup; ++i) a(), b();
  EventTimer timer;
  std::vector<double> ratios;
  for (int i = 0; i < runs; ++i) {
    double a_ms = 0.0, b_ms = 0.0;
    if (i % 2 == 0) {
      a_ms = timer.ms(a);
      b_ms = timer.ms(b);
    } else {
      b_ms = timer.ms(b);
      a_ms = timer.ms(a);
    }
    ratios.push_back(b_ms / a_ms);
  }
  return median(ratios);
}

// Milliseconds a call of fn takes when `calls` of them are issued back to back between two events: the host
// runs ahead of the GPU, so its own time per call shows only where it is longer than the GPU's. Median of
// `repeats` such runs after one untimed one.
inline double back_to_back_ms(const std::function<void()>& fn, int calls = 20, int repeats = 5) {
  return median_ms(
             [&] {
               for (int i = 0; i < calls; ++i) fn();
             },
             1, repeats) /
         calls;
}

// Median microseconds the host spends in one call of fn (until it returns, its work queued, not done): the part
// of a lone call's time that runs before its first kernel can start. The device is drained between calls, so that
// no call waits for room in the launch queue.
inline double host_us(const std::function<void()>& fn, int runs = 20) {
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    const auto start = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
  return median(times);
}

// The cosine of the angle between two tensors taken as flat vectors (in fp64).
inline double cosine_similarity(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.to(at::kDouble).flatten(), y = b.to(at::kDouble).flatten();
  return (x.dot(y) / (x.norm() * y.norm())).item<double>();
}

// Bytes the CUDA caching allocator has handed out on device 0: now, and at most since the last resetPeakStats.
inline int64_t allocated_bytes() {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
}
inline int64_t peak_allocated_bytes() {
  return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].peak;
}
inline double gib(int64_t bytes) { return double(bytes) / (1ull << 30); }

inline at::Tensor random_cuda(at::IntArrayRef sizes, at::ScalarType dtype) {
  return at::randn(sizes, at::TensorOptions().device(at::kCUDA).dtype(dtype));
}

}  // namespace sagevid::tools
