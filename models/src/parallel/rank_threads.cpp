#include "parallel/rank_threads.h"

#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sagevid::parallel {

void run_ranks(int count, const std::function<void(int rank)>& fn, const std::function<void()>& on_first_error) {
  std::mutex mutex;
  std::exception_ptr first_error;
  const auto run = [&](int rank) {
    try {
      fn(rank);
    } catch (...) {
      bool first = false;
      {
        const std::lock_guard lock(mutex);
        first = !first_error;
        if (first) first_error = std::current_exception();
      }
      if (first && on_first_error) on_first_error();
    }
  };
  std::vector<std::thread> others;
  for (int rank = 1; rank < count; ++rank) others.emplace_back(run, rank);
  run(0);
  for (std::thread& thread : others) thread.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace sagevid::parallel
