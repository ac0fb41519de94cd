#pragma once
// A group of ranks and the three collectives the parallel pipeline needs over it, on libtorch's c10d backends:
// NCCL between CUDA devices, Gloo between CPU ranks. Only collectives.cpp includes c10d.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sagevid::parallel {

// Where the rank threads of this process meet to set up their groups: one store, shared by all of them. Made before
// the rank threads start (it sets the environment c10d reads).
class Rendezvous {
 public:
  Rendezvous();
  struct Store;  // c10d's, private to collectives.cpp
  const std::shared_ptr<Store>& store() const { return store_; }

 private:
  std::shared_ptr<Store> store_;
};

class Collectives {
 public:
  // Joins group `name` as its member `rank` of `size`, with tensors on `device`. Every member calls this at once,
  // each from its own thread, and the members are connected before it returns. A collective that waits longer than
  // `timeout` for the others throws.
  Collectives(const Rendezvous& rendezvous, const std::string& name, int rank, int size, const c10::Device& device,
              std::chrono::milliseconds timeout);
  ~Collectives();
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

  // Sends `in`'s elements, in consecutive runs of in_counts[j], to member j, and receives member j's run of
  // out_counts[j] elements into `out`, in member order. in and out contiguous, of one dtype.
  void all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_counts,
                  const std::vector<int64_t>& in_counts) const;
  // Every member's x (all of one shape) stacked in member order: [size, *x.sizes()].
  at::Tensor all_gather(const at::Tensor& x) const;
  // Member root's x into every member's x (contiguous).
  void broadcast(at::Tensor& x, int root) const;
  // Ends the group's collectives in flight with an error, where the backend can (NCCL; Gloo's wait out their
  // timeout). The group is of no use afterwards.
  void abort() const;

 private:
  struct Backend;
  std::unique_ptr<Backend> backend_;
  int rank_ = 0, size_ = 1;
};

}  // namespace sagevid::parallel
