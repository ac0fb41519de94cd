#include "sagevid/kernels/cuda_check.h"
#include "sagevid/kernels/poison.h"

#include <cstdint>

namespace sagevid::kernels {
namespace {

// A kernel rather than cudaMemsetAsync so that every architecture in the build list gets device code
// and a broken -gencode setup fails at the first test, not at the first attention call.
__global__ void fill_bytes(unsigned char* data, std::size_t bytes, unsigned char pattern) {
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < bytes; i += stride) data[i] = pattern;
}

}  // namespace

void poison_device_memory(void* data, std::size_t bytes, cudaStream_t stream, unsigned char pattern) {
  if (bytes == 0) return;
  constexpr int threads = 256;
  const std::size_t wanted = (bytes + threads - 1) / threads;
  const int blocks = static_cast<int>(wanted < 4096 ? wanted : 4096);
  fill_bytes<<<blocks, threads, 0, stream>>>(static_cast<unsigned char*>(data), bytes, pattern);
  SAGEVID_CUDA_CHECK_LAUNCH();
}

}  // namespace sagevid::kernels
