// A parallel plan's ranks: their parts, their groups, and a run on all of them at once.
#include "pipeline_ranks.h"

#include "parallel/rank_threads.h"

#include <ATen/ops/full.h>
#include <c10/core/DeviceGuard.h>
#include <spdlog/spdlog.h>

#include <optional>
#include <string>

namespace sagevid {
namespace {

// The device a rank thread makes current: its GPU, or none for a CPU rank.
std::optional<c10::Device> gpu_of(const c10::Device& device) {
  return device.is_cuda() ? std::optional(device) : std::nullopt;
}

// Joins rank r's groups: the world; its cfg pair (the same Ulysses rank in each half); its half's Ulysses ranks.
void join_groups(const parallel::Rendezvous& rendezvous, const PipelineOptions& options, PipelineRank& rank) {
  const ParallelPlan& plan = options.parallel;
  const int r = rank.rank, u = plan.ulysses, cfg_rank = r / u, ulysses_rank = r % u;
  const c10::Device device = rank.parts->options.device;
  const auto join = [&](const std::string& name, int member, int size) {
    return std::make_unique<parallel::Collectives>(rendezvous, name, member, size, device, options.collective_timeout);
  };
  rank.sequence.reset();
  rank.world = join("world/", r, plan.world());
  rank.cfg = plan.cfg > 1 ? join("cfg" + std::to_string(ulysses_rank) + "/", cfg_rank, plan.cfg) : nullptr;
  rank.ulysses = u > 1 ? join("ulysses" + std::to_string(cfg_rank) + "/", ulysses_rank, u) : nullptr;
  if (rank.ulysses) rank.sequence = std::make_unique<parallel::SequenceParallel>(*rank.ulysses);
}

}  // namespace

bool PipelineRank::agree(bool rank0_answer) const {
  const auto on_device = at::TensorOptions().dtype(at::kInt).device(parts->options.device);
  at::Tensor flag = at::full({1}, rank0_answer ? 1 : 0, on_device);
  world->broadcast(flag, 0);
  return flag.item<int>() != 0;
}

void PipelineRank::abort() const {
  for (const auto* group : {world.get(), cfg.get(), ulysses.get()})
    if (group) group->abort();
}

CogVideoXPipeline::Ranks::Ranks(const PipelineOptions& options, const LoadParts& load)
    : options_(options), ranks_(options.devices.size()) {
  // Each rank's copy loads on its own thread (tensor by tensor from the checkpoint), so a group loads in about the
  // time one device takes.
  parallel::run_ranks(int(ranks_.size()), [&](int r) {
    PipelineOptions rank_options = options;
    rank_options.device = options.devices[size_t(r)];
    const c10::OptionalDeviceGuard guard(gpu_of(rank_options.device));
    ranks_[size_t(r)].rank = r;
    ranks_[size_t(r)].parts = load(rank_options, r);
  });
  join();
  spdlog::info("pipeline: {}", describe(options.parallel, options.devices));
}

void CogVideoXPipeline::Ranks::join() {
  const parallel::Rendezvous rendezvous;  // a fresh store: a new group never meets an old one's keys
  std::vector<PipelineRank>& ranks = ranks_;
  parallel::run_ranks(int(ranks.size()), [&](int r) { join_groups(rendezvous, options_, ranks[size_t(r)]); });
}

void CogVideoXPipeline::Ranks::run(const std::function<void(const PipelineRank&)>& fn) {
  const std::lock_guard lock(running_);
  if (rejoin_) {  // the last run aborted its groups
    join();
    rejoin_ = false;
  }
  for (const PipelineRank& rank : ranks_) rank.stopping_together = false;
  std::once_flag aborted;
  parallel::run_ranks(
      int(ranks_.size()),
      [&](int r) {
        const PipelineRank& rank = ranks_[size_t(r)];
        const c10::OptionalDeviceGuard guard(gpu_of(rank.parts->options.device));
        fn(rank);
      },
      [&](int r, const std::exception_ptr&) {
        if (r >= 0 && ranks_[size_t(r)].stopping_together) return;  // every rank stops here: the groups are in step
        std::call_once(aborted, [&] {  // the others may wait in a collective for this rank: end them all
          rejoin_ = true;
          for (const PipelineRank& rank : ranks_) rank.abort();
        });
      });
}

}  // namespace sagevid
