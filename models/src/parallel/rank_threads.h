#pragma once
// The ranks of one process as threads: all started together, all joined, the first failure reported.
#include <exception>
#include <functional>

namespace sagevid::parallel {

// Runs fn(rank) for every rank of `count` at once, rank 0 on this thread. Once all have returned, rethrows the
// error that came first: the others' are most often their collectives ending because of it. on_error runs on a
// failing rank's thread as soon as it fails, with the rank (-1: a rank's thread could not start) and its error,
// e.g. to abort the collectives the others wait in.
void run_ranks(int count, const std::function<void(int rank)>& fn,
               const std::function<void(int rank, const std::exception_ptr& error)>& on_error = {});

}  // namespace sagevid::parallel
