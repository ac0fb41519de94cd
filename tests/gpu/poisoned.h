#pragma once
// Output tensors filled with a NaN pattern before a kernel writes them, so an element it never wrote shows.
#include "sagevid/kernels/poison.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

namespace sagevid::test {

inline at::Tensor poisoned(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor out = at::empty(sizes, options);
  sagevid::kernels::poison_device_memory(out.data_ptr(), out.nbytes(), nullptr);
  return out;
}

inline at::Tensor poisoned_like(const at::Tensor& x) { return poisoned(x.sizes(), x.options()); }

}  // namespace sagevid::test
