#pragma once
// Summaries of a benchmark run: latency percentiles (nearest rank), the server's phases, time to the first video
// byte, server overhead, throughput, and the side-by-side table that compares runs with different attention
// backends (with a 50-step extrapolation and, where flash ran too, each backend's speedup over it).
#include "request_timing.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sagevid::client {

// The smallest sample with at least `percent` % of the samples <= it. Throws on an empty set.
double percentile(std::vector<double> samples, double percent);

struct BenchRun {
  std::string backend;                       // as asked for; "" = the server's
  std::string backend_used;                  // as the server reported it
  int requests = 0;
  int concurrency = 0;
  std::vector<RequestSample> samples;        // the requests that succeeded
  std::map<std::string, int> errors;         // status code name -> count
  std::map<std::string, std::string> error_examples;  // status code name -> the first such message
  double wall_seconds = 0;
};

// The request's latency had it run `steps` denoising steps: its latency plus the steps it did not run at its
// median step time. An extrapolation, not a measurement: it assumes every step costs the same.
double extrapolated_latency(const RequestSample& sample, int steps);

enum class TableStyle { text, markdown };

// One row per measure, one column per run; the phase rows are means over the requests that succeeded.
std::string format_bench_table(const std::vector<BenchRun>& runs, TableStyle style = TableStyle::text);

}  // namespace sagevid::client
