#pragma once
// Every CUDA runtime call and kernel launch is checked; a failure throws with the call and its location.
#include <cuda_runtime_api.h>

namespace sagevid::kernels {

[[noreturn]] void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line);

inline void check_cuda(cudaError_t error, const char* expression, const char* file, int line) {
  if (error != cudaSuccess) throw_cuda_error(error, expression, file, line);
}

}  // namespace sagevid::kernels

#define SAGEVID_CUDA_CHECK(expr) ::sagevid::kernels::check_cuda((expr), #expr, __FILE__, __LINE__)
// After a <<<...>>> launch: catches bad launch configurations at once.
#define SAGEVID_CUDA_CHECK_LAUNCH() SAGEVID_CUDA_CHECK(cudaGetLastError())
