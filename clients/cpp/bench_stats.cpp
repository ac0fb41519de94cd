#include "bench_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <stdexcept>

namespace sagevid::client {

double percentile(std::vector<double> samples, double percent) {
  if (samples.empty()) throw std::invalid_argument("percentile of no samples");
  if (!(percent > 0 && percent <= 100)) throw std::invalid_argument("percentile: percent must be in (0, 100]");
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<size_t>(std::ceil(percent / 100.0 * static_cast<double>(samples.size())));
  return samples[std::max<size_t>(rank, 1) - 1];
}

namespace {

std::string fixed3(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3f", value);
  return text;
}

std::string seconds(const std::vector<double>& samples, double percent) {
  return samples.empty() ? "-" : fixed3(percentile(samples, percent));
}

std::string mean(const std::vector<double>& samples) {
  if (samples.empty()) return "-";
  return fixed3(std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size()));
}

std::string rate(double count, double wall_seconds) { return wall_seconds > 0 ? fixed3(count / wall_seconds) : "-"; }

std::string error_summary(const std::map<std::string, int>& errors) {
  std::string text;
  for (const auto& [code, count] : errors) text += (text.empty() ? "" : " ") + code + "=" + std::to_string(count);
  return text.empty() ? "0" : text;
}

}  // namespace

std::string format_bench_table(const std::vector<BenchRun>& runs) {
  std::vector<std::pair<std::string, std::vector<std::string>>> rows = {
      {"backend", {}}, {"requests", {}}, {"concurrency", {}}, {"succeeded", {}}, {"errors", {}},
      {"latency p50 (s)", {}}, {"latency p90 (s)", {}}, {"latency p99 (s)", {}}, {"latency mean (s)", {}},
      {"denoise mean (s)", {}}, {"throughput (req/s)", {}}, {"frames/s", {}}, {"wall time (s)", {}}};
  for (const BenchRun& run : runs) {
    const std::string backend = run.backend_used.empty() ? (run.backend.empty() ? "default" : run.backend)
                                                         : run.backend_used;
    const std::vector<std::string> cells = {
        backend, std::to_string(run.requests), std::to_string(run.concurrency), std::to_string(run.latencies.size()),
        error_summary(run.errors), seconds(run.latencies, 50), seconds(run.latencies, 90), seconds(run.latencies, 99),
        mean(run.latencies), mean(run.denoise_seconds), rate(double(run.latencies.size()), run.wall_seconds),
        rate(double(run.frames), run.wall_seconds), fixed3(run.wall_seconds)};
    for (size_t i = 0; i < rows.size(); ++i) rows[i].second.push_back(cells[i]);
  }
  size_t label_width = 0;
  std::vector<size_t> column_width(runs.size(), 0);
  for (const auto& [label, cells] : rows) {
    label_width = std::max(label_width, label.size());
    for (size_t c = 0; c < cells.size(); ++c) column_width[c] = std::max(column_width[c], cells[c].size());
  }
  std::string table;
  for (const auto& [label, cells] : rows) {
    table += label + std::string(label_width - label.size(), ' ');
    for (size_t c = 0; c < cells.size(); ++c) table += "  " + std::string(column_width[c] - cells[c].size(), ' ') + cells[c];
    table += "\n";
  }
  return table;
}

}  // namespace sagevid::client
