#pragma once
// Summaries of a benchmark run: latency percentiles (nearest rank), throughput, and the side-by-side table
// that compares runs with different attention backends.
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
  std::vector<double> latencies;             // seconds, client-side, of the requests that succeeded
  std::vector<double> denoise_seconds;       // server-reported, same requests
  std::map<std::string, int> errors;         // status code name -> count
  std::map<std::string, std::string> error_examples;  // status code name -> the first such message
  double wall_seconds = 0;
  uint64_t bytes = 0;
  int64_t frames = 0;
};

// One row per measure, one column per run.
std::string format_bench_table(const std::vector<BenchRun>& runs);

}  // namespace sagevid::client
