#include "sagevid/kernels/cuda_check.h"

#include <stdexcept>
#include <string>

namespace sagevid::kernels {

void throw_cuda_error(cudaError_t error, const char* expression, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) +
                           ") in " + expression + " at " + file + ":" + std::to_string(line));
}

}  // namespace sagevid::kernels
