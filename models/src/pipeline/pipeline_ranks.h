#pragma once
// A parallel plan's ranks as the pipeline runs them: each rank's models (its Parts, on its device) and the
// groups it belongs to. Rank r = cfg_rank * ulysses + ulysses_rank (parallel.h).
#include "pipeline_parts.h"

#include "parallel/collectives.h"
#include "parallel/sequence_parallel.h"

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace sagevid {

struct PipelineRank {
  int rank = 0;
  std::shared_ptr<const CogVideoXPipeline::Parts> parts;
  std::unique_ptr<parallel::Collectives> world;    // every rank: the cancel vote
  std::unique_ptr<parallel::Collectives> cfg;      // the two ranks of this Ulysses rank, one per half; or null
  std::unique_ptr<parallel::Collectives> ulysses;  // the ranks sharing this half's video tokens; or null
  std::unique_ptr<parallel::SequenceParallel> sequence;  // over `ulysses`

  // Rank 0's answer, on every rank (a collective: every rank asks at the same point of the run).
  bool agree(bool rank0_answer) const;
};

struct CogVideoXPipeline::Ranks {
  std::vector<PipelineRank> ranks;
  std::mutex running;  // one request at a time: the groups serve one run
};

// Loads each rank's parts with `load` (on its device) and joins the groups, every rank from a thread of its own.
std::shared_ptr<CogVideoXPipeline::Ranks> join_ranks(
    const PipelineOptions& options,
    const std::function<std::shared_ptr<const CogVideoXPipeline::Parts>(const PipelineOptions&)>& load);

// Runs fn(rank) for every rank at once, rank 0 on this thread, each with its device current. An exception from
// any rank is rethrown here once all have finished (rank 0's before the others').
void run_on_every_rank(const std::vector<PipelineRank>& ranks, const std::function<void(const PipelineRank&)>& fn);

}  // namespace sagevid
