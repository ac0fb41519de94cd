#include "parallel/gather_to_first.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <c10/util/accumulate.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace sagevid::parallel {

std::vector<std::vector<at::Tensor>> gather_to_first(const Collectives& group, const std::vector<at::Tensor>& mine,
                                                     int64_t max_count, int64_t dims,
                                                     const at::TensorOptions& options) {
  if (int64_t(mine.size()) > max_count)
    throw std::invalid_argument("gather_to_first: " + std::to_string(mine.size()) + " tensors, at most " +
                                std::to_string(max_count));
  // Each member's header: its count, then each tensor's sizes. The all-gathers take pieces of one size: headers of
  // max_count tensors, values padded to the largest member's.
  std::vector<int64_t> header(size_t(1 + max_count * dims), 0);
  header[0] = int64_t(mine.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    if (mine[i].dim() != dims)
      throw std::invalid_argument("gather_to_first: a tensor of " + std::to_string(mine[i].dim()) +
                                  " dimensions, not " + std::to_string(dims));
    std::copy(mine[i].sizes().begin(), mine[i].sizes().end(), header.begin() + 1 + int64_t(i) * dims);
  }
  const at::Tensor headers = group.all_gather(at::tensor(header, at::kLong).to(options.device())).cpu();
  std::vector<std::vector<std::vector<int64_t>>> shapes(size_t(group.size()));  // every member's tensors' sizes
  int64_t largest = 1;  // the most values a member sends (a piece is never empty)
  for (int member = 0; member < group.size(); ++member) {
    const int64_t* row = headers[member].data_ptr<int64_t>();
    // Checked before it is read: after an abort (another rank failed) the buffer holds whatever it held.
    if (row[0] < 0 || row[0] > max_count ||
        std::any_of(row + 1, row + 1 + row[0] * dims, [](int64_t v) { return v < 0; }))
      throw std::runtime_error("gather_to_first: member " + std::to_string(member) + "'s header is not one");
    int64_t total = 0;
    for (int64_t i = 0; i < row[0]; ++i) {
      const std::vector<int64_t>& sizes =
          shapes[size_t(member)].emplace_back(row + 1 + i * dims, row + 1 + (i + 1) * dims);
      total += c10::multiply_integers(sizes);
    }
    largest = std::max(largest, total);
  }
  at::Tensor values = at::empty({largest}, options);
  int64_t offset = 0;
  for (const at::Tensor& x : mine) {
    values.narrow(0, offset, x.numel()).copy_(x.reshape({-1}));
    offset += x.numel();
  }
  const at::Tensor everyone = group.all_gather(values);  // [members, largest]
  std::vector<std::vector<at::Tensor>> gathered;
  if (group.rank() != 0) return gathered;
  for (int member = 0; member < group.size(); ++member) {
    std::vector<at::Tensor>& list = gathered.emplace_back();
    offset = 0;
    for (const std::vector<int64_t>& sizes : shapes[size_t(member)]) {
      const int64_t numel = c10::multiply_integers(sizes);
      list.push_back(everyone[member].narrow(0, offset, numel).view(sizes));
      offset += numel;
    }
  }
  return gathered;
}

}  // namespace sagevid::parallel
