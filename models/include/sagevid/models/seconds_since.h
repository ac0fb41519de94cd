#pragma once
// Wall time between a steady-clock instant and now, in seconds: how the pipeline, the server and its commands
// time their phases.
#include <chrono>

namespace sagevid {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace sagevid
