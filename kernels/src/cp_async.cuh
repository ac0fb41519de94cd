#pragma once
// cp.async: 16 bytes from global to shared memory without passing through registers, in commit groups that a
// wait drains. Used by the mma.sync kernel's K/V tiles and the preprocessing's slices (sage2_slices.cuh).
#include <cstdint>

namespace sagevid::kernels::sage2 {

__device__ __forceinline__ void copy_async_16(void* shared, const void* global) {
  asm volatile(
      "cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(shared))),
      "l"(global)
      : "memory");
}
// The same, writing zeros instead where !valid (global must still be a valid address).
__device__ __forceinline__ void copy_async_16(void* shared, const void* global, bool valid) {
  asm volatile(
      "cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(shared))),
      "l"(global), "r"(valid ? 16 : 0)
      : "memory");
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Until at most kPending of this thread's groups are in flight.
template <int kPending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace sagevid::kernels::sage2
