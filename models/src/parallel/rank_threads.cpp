#include "parallel/rank_threads.h"

#include <mutex>
#include <thread>
#include <vector>

namespace sagevid::parallel {

void run_ranks(int count, const std::function<void(int rank)>& fn,
               const std::function<void(int rank, const std::exception_ptr& error)>& on_error) {
  std::mutex mutex;
  std::exception_ptr first_error;
  const auto fail = [&](int rank, const std::exception_ptr& error) {
    {
      const std::lock_guard lock(mutex);
      if (!first_error) first_error = error;
    }
    if (on_error) on_error(rank, error);
  };
  const auto run = [&](int rank) {
    try {
      fn(rank);
    } catch (...) {
      fail(rank, std::current_exception());
    }
  };
  std::vector<std::thread> others;
  try {
    for (int rank = 1; rank < count; ++rank) others.emplace_back(run, rank);
  } catch (...) {  // no thread for a rank: the ranks started would wait for it in their collectives
    fail(-1, std::current_exception());
  }
  if (int(others.size()) == count - 1) run(0);
  for (std::thread& thread : others) thread.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace sagevid::parallel
