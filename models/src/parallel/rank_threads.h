#pragma once
// The ranks of one process as threads: all started together, all joined, the first failure reported.
#include <functional>

namespace sagevid::parallel {

// Runs fn(rank) for every rank of `count` at once, rank 0 on this thread. Once all have returned, rethrows the
// error that came first: the others' are most often their collectives ending because of it. on_first_error runs on
// the failing rank's thread as soon as it fails, e.g. to abort the collectives the others wait in.
void run_ranks(int count, const std::function<void(int rank)>& fn, const std::function<void()>& on_first_error = {});

}  // namespace sagevid::parallel
