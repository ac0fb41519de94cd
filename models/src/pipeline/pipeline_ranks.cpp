// Setting up a parallel plan's ranks (their parts and groups) and running something on all of them at once.
#include "pipeline_ranks.h"

#include <ATen/ops/full.h>
#include <c10/core/DeviceGuard.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <exception>
#include <string>
#include <thread>

namespace sagevid {
namespace {

// How long a rank waits in a collective for the others: far above the longest gap between two of them (a preview's
// decode on rank 0), so that it fires only on a lost rank.
constexpr std::chrono::minutes kCollectiveTimeout{5};

// Joins rank r's groups: the world; its cfg pair (the same Ulysses rank in each half); its half's Ulysses ranks.
void join_groups(const parallel::Rendezvous& rendezvous, const ParallelPlan& plan, PipelineRank& rank,
                 const c10::Device& device) {
  const int r = rank.rank, u = plan.ulysses, cfg_rank = r / u, ulysses_rank = r % u;
  const auto join = [&](const std::string& name, int member, int size) {
    return std::make_unique<parallel::Collectives>(rendezvous, name, member, size, device, kCollectiveTimeout);
  };
  rank.world = join("world/", r, plan.world());
  if (plan.cfg > 1) rank.cfg = join("cfg" + std::to_string(ulysses_rank) + "/", cfg_rank, plan.cfg);
  if (u > 1) {
    rank.ulysses = join("ulysses" + std::to_string(cfg_rank) + "/", ulysses_rank, u);
    rank.sequence = std::make_unique<parallel::SequenceParallel>(*rank.ulysses);
  }
}

}  // namespace

bool PipelineRank::agree(bool rank0_answer) const {
  at::Tensor flag =
      at::full({1}, rank0_answer ? 1 : 0, at::TensorOptions().dtype(at::kInt).device(parts->options.device));
  world->broadcast(flag, 0);
  return flag.item<int>() != 0;
}

void run_on_every_rank(const std::vector<PipelineRank>& ranks, const std::function<void(const PipelineRank&)>& fn) {
  std::vector<std::exception_ptr> errors(ranks.size());
  const auto run = [&](size_t r) {
    try {
      c10::OptionalDeviceGuard guard;
      if (const c10::Device device = ranks[r].parts->options.device; device.is_cuda()) guard.reset_device(device);
      fn(ranks[r]);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  std::vector<std::thread> others;
  for (size_t r = 1; r < ranks.size(); ++r) others.emplace_back(run, r);
  run(0);
  for (std::thread& thread : others) thread.join();
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
}

std::shared_ptr<CogVideoXPipeline::Ranks> join_ranks(
    const PipelineOptions& options,
    const std::function<std::shared_ptr<const CogVideoXPipeline::Parts>(const PipelineOptions&)>& load) {
  auto ranks = std::make_shared<CogVideoXPipeline::Ranks>();
  for (size_t r = 0; r < options.devices.size(); ++r) {
    PipelineOptions rank_options = options;
    rank_options.device = options.devices[r];
    PipelineRank rank;
    rank.rank = int(r);
    rank.parts = load(rank_options);
    ranks->ranks.push_back(std::move(rank));
  }
  const parallel::Rendezvous rendezvous;
  std::vector<PipelineRank>& all = ranks->ranks;
  run_on_every_rank(all, [&](const PipelineRank& rank) {
    PipelineRank& mine = all[size_t(rank.rank)];  // each thread fills in its own rank only
    join_groups(rendezvous, options.parallel, mine, mine.parts->options.device);
  });
  spdlog::info("pipeline: {}", describe(options.parallel, options.devices));
  return ranks;
}

}  // namespace sagevid
