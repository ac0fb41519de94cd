#pragma once
// Before a job starts: does the request's estimated memory fit in what its device has free? Refusing then
// costs nothing; running out half way costs the work done and may take the server down with it (the CPU).
#include "sagevid/models/pipeline.h"

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace sagevid {

// Bytes a new job can take on the device: on the CPU the kernel's MemAvailable (/proc/meminfo); on CUDA the
// driver's free memory plus what torch's caching allocator holds unused. Resident weights are already taken.
int64_t free_device_memory(const c10::Device& device);

// Throws RequestTooLarge with both numbers when the estimate's peak is more than free_bytes.
void check_memory_fits(const MemoryEstimate& estimate, int64_t free_bytes, const std::string& device);

// The two together, for the pipeline's device.
void check_memory(const CogVideoXPipeline& pipeline, const GenerationRequest& request);

}  // namespace sagevid
