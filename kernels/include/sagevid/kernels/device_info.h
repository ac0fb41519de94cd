#pragma once
// What CUDA devices this process sees; used to pick kernel variants and to report server status.
#include <cstddef>
#include <string>
#include <vector>

namespace sagevid::kernels {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability = 0;  // major * 10 + minor, e.g. 90 for H100
  int multiprocessors = 0;
  std::size_t total_memory_bytes = 0;
};

// 0 when there is no driver or no device: never throws, so CPU-only machines can ask.
int cuda_device_count();
std::vector<DeviceInfo> cuda_devices();
// major * 10 + minor of one device; throws if it does not exist.
int compute_capability(int device_index);
// The multiprocessors of one device (an attribute read, cheap enough for every launch); throws if it does not exist.
int multiprocessor_count(int device_index);

struct DeviceMemory {
  std::size_t free_bytes = 0, total_bytes = 0;
};
// One device's free and total memory, read without changing the calling thread's current device; throws if
// the device does not exist.
DeviceMemory device_memory(int device_index);

}  // namespace sagevid::kernels
