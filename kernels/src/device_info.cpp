#include "sagevid/kernels/device_info.h"

#include "sagevid/kernels/cuda_check.h"

namespace sagevid::kernels {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later calls are not blamed for it
    return 0;
  }
  return count;
}

std::vector<DeviceInfo> cuda_devices() {
  std::vector<DeviceInfo> devices;
  for (int i = 0; i < cuda_device_count(); ++i) {
    cudaDeviceProp prop{};
    SAGEVID_CUDA_CHECK(cudaGetDeviceProperties(&prop, i));
    devices.push_back({i, prop.name, prop.major * 10 + prop.minor, prop.multiProcessorCount, prop.totalGlobalMem});
  }
  return devices;
}

int compute_capability(int device_index) {
  int major = 0, minor = 0;
  SAGEVID_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_index));
  SAGEVID_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_index));
  return major * 10 + minor;
}

int multiprocessor_count(int device_index) {
  int count = 0;
  SAGEVID_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device_index));
  return count;
}

DeviceMemory device_memory(int device_index) {
  int current = 0;
  SAGEVID_CUDA_CHECK(cudaGetDevice(&current));
  SAGEVID_CUDA_CHECK(cudaSetDevice(device_index));
  DeviceMemory memory;
  const cudaError_t read = cudaMemGetInfo(&memory.free_bytes, &memory.total_bytes);
  SAGEVID_CUDA_CHECK(cudaSetDevice(current));
  SAGEVID_CUDA_CHECK(read);
  return memory;
}

}  // namespace sagevid::kernels
