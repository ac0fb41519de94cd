#pragma once
// Tensors of any number and shape from every member of a group onto its first member: what a shared VAE decode
// needs to bring its ranks' tiles to rank 0, which blends them.
#include "parallel/collectives.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace sagevid::parallel {

// Every member's `mine` (at most max_count tensors, each of `dims` dimensions, all of options' dtype and device),
// on member 0 in member order: result[m] is member m's list. The others get an empty result. A collective: every
// member calls it, with the same max_count, dims and options.
std::vector<std::vector<at::Tensor>> gather_to_first(const Collectives& group, const std::vector<at::Tensor>& mine,
                                                     int64_t max_count, int64_t dims, const at::TensorOptions& options);

}  // namespace sagevid::parallel
