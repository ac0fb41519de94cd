// The c10d side of the parallel pipeline: one process group per Collectives, NCCL for CUDA devices and Gloo for
// CPU ranks, both over an in-process HashStore (the ranks are threads of one process).
#include "parallel/collectives.h"

#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#if SAGEVID_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if SAGEVID_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <stdexcept>

namespace sagevid::parallel {

struct Rendezvous::Store {
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::HashStore>();
};

// The environment c10d reads as it makes groups, set here, on the thread that starts the ranks before any of them
// runs (setenv is not safe beside other threads' getenv); a user's own values stay.
Rendezvous::Rendezvous() : store_(std::make_shared<Store>()) {
  // c10d's flight recorder (a trace of recent collectives, for debugging hangs) is one per process, and its record
  // of a collective races with another thread's: with ranks as threads it crashed one run in a few (Gloo, torch
  // 2.11). Off unless the user turns it on.
  ::setenv("TORCH_FR_BUFFER_SIZE", "0", /*overwrite=*/0);
  // An NCCL collective past its timeout (a rank lost) then ends in an error, not in the process's teardown (torch's
  // default): the server lives on and rejoins its groups.
  ::setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
}

struct Collectives::Backend {
  c10::intrusive_ptr<c10d::Backend> group;
};

namespace {

c10::intrusive_ptr<c10d::Backend> make_group(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                             const c10::Device& device, std::chrono::milliseconds timeout) {
  if (device.is_cuda()) {
#if SAGEVID_HAVE_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
    // The communicator now, while every member is here, not at the first collective: a member that failed before
    // then would leave the others in NCCL's set-up, which no timeout or abort ends.
    const c10::DeviceGuard guard(device);
    group->eagerConnectSingleDevice(device);
    return group;
#else
    throw std::runtime_error("parallel ranks on CUDA devices need NCCL, which this build was made without");
#endif
  }
#if SAGEVID_HAVE_GLOO
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));  // ranks share a host
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
#else
  throw std::runtime_error("parallel ranks on the CPU need Gloo, which this build was made without (libgloo-dev)");
#endif
}

}  // namespace

Collectives::Collectives(const Rendezvous& rendezvous, const std::string& name, int rank, int size,
                         const c10::Device& device, std::chrono::milliseconds timeout)
    : backend_(std::make_unique<Backend>()), rank_(rank), size_(size) {
  const auto store = c10::make_intrusive<c10d::PrefixStore>(name, rendezvous.store()->store);
  backend_->group = make_group(store, rank, size, device, timeout);
}

Collectives::~Collectives() = default;

void Collectives::all_to_all(at::Tensor& out, const at::Tensor& in, const std::vector<int64_t>& out_counts,
                             const std::vector<int64_t>& in_counts) const {
  at::Tensor flat_out = out.view({-1}), flat_in = in.view({-1});
  std::vector<int64_t> out_splits = out_counts, in_splits = in_counts;
  backend_->group->alltoall_base(flat_out, flat_in, out_splits, in_splits)->wait();
}

at::Tensor Collectives::all_gather(const at::Tensor& x) const {
  std::vector<int64_t> sizes{size_};
  sizes.insert(sizes.end(), x.sizes().begin(), x.sizes().end());
  const at::Tensor gathered = at::empty(sizes, x.options());
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int member = 0; member < size_; ++member) outputs[0].push_back(gathered[member]);
  std::vector<at::Tensor> inputs{x.contiguous()};
  backend_->group->allgather(outputs, inputs)->wait();
  return gathered;
}

void Collectives::broadcast(at::Tensor& x, int root) const {
  std::vector<at::Tensor> tensors{x};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  backend_->group->broadcast(tensors, options)->wait();
}

void Collectives::abort() const { backend_->group->abort(); }

}  // namespace sagevid::parallel
