#pragma once
// Fills device memory with a byte pattern before a kernel writes it, so tests catch elements the kernel
// never wrote: 0xFF bytes read as NaN in fp32/fp16/bf16 and FP8 E4M3, and as -1 in integer types.
#include <cstddef>
#include <cuda_runtime_api.h>

namespace sagevid::kernels {

void poison_device_memory(void* data, std::size_t bytes, cudaStream_t stream, unsigned char pattern = 0xFF);

}  // namespace sagevid::kernels
