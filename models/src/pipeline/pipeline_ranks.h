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
  // Set by this rank's run as it stops where every rank stops (an agreed cancel): nothing to abort then.
  mutable bool stopping_together = false;
  void abort() const;  // ends this rank's collectives in flight (parallel::Collectives::abort)
};

class CogVideoXPipeline::Ranks {
 public:
  // Loads each rank's parts with `load` (options with the rank's device, the rank) and joins their groups.
  using LoadParts = std::function<std::shared_ptr<const Parts>(const PipelineOptions& options, int rank)>;
  Ranks(const PipelineOptions& options, const LoadParts& load);

  const std::shared_ptr<const Parts>& first_parts() const { return ranks_[0].parts; }
  // Runs fn on every rank at once, each on its own thread with its device current, one call at a time. The first
  // error is rethrown here. An error on any rank ends every rank's collectives, and the groups are joined afresh
  // before the next call, unless the rank stopped where every rank stops (PipelineRank::stopping_together).
  void run(const std::function<void(const PipelineRank&)>& fn);

 private:
  void join();  // every rank's groups, new

  PipelineOptions options_;
  std::vector<PipelineRank> ranks_;
  std::mutex running_;
  bool rejoin_ = false;
};

}  // namespace sagevid
