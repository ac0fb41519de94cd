#include "memory_check.h"

#include "sagevid/kernels/device_info.h"

#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid {
namespace {

int64_t cpu_available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  throw std::runtime_error("/proc/meminfo has no MemAvailable line");
}

int64_t cuda_free_bytes(c10::DeviceIndex index) {
  const kernels::DeviceMemory memory = kernels::device_memory(index);
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  const int64_t cached_unused = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
  return int64_t(memory.free_bytes) + cached_unused;
}

std::string mib(int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", double(bytes) / double(1 << 20));
  return text;
}

}  // namespace

int64_t free_device_memory(const c10::Device& device) {
  if (device.is_cpu()) return cpu_available_bytes();
  if (device.is_cuda()) return cuda_free_bytes(device.has_index() ? device.index() : 0);
  throw std::invalid_argument("free memory of " + device.str() + " is not known");
}

void check_memory_fits(const MemoryEstimate& estimate, int64_t free_bytes, const std::string& device) {
  if (estimate.peak() <= free_bytes) return;
  throw RequestTooLarge("the request needs an estimated " + mib(estimate.peak()) + " on " + device + " (" +
                        estimate.peak_phase() + " peak) beyond the resident weights, and " + mib(free_bytes) +
                        " is free (fewer frames or a smaller size)");
}

void check_memory(const CogVideoXPipeline& pipeline, const GenerationRequest& request) {
  const PipelineOptions& options = pipeline.options();
  const std::vector<c10::Device> devices = options.devices.empty() ? std::vector{options.device} : options.devices;
  for (size_t rank = 0; rank < devices.size(); ++rank)
    check_memory_fits(pipeline.estimate_memory(request, int(rank)), free_device_memory(devices[rank]),
                      devices[rank].str());
}

}  // namespace sagevid
