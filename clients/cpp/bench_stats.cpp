#include "bench_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <optional>
#include <stdexcept>

namespace sagevid::client {

double percentile(std::vector<double> samples, double percent) {
  if (samples.empty()) throw std::invalid_argument("percentile of no samples");
  if (!(percent > 0 && percent <= 100)) throw std::invalid_argument("percentile: percent must be in (0, 100]");
  std::sort(samples.begin(), samples.end());
  const auto rank = static_cast<size_t>(std::ceil(percent / 100.0 * static_cast<double>(samples.size())));
  return samples[std::max<size_t>(rank, 1) - 1];
}

double extrapolated_latency(const RequestSample& sample, int steps) {
  return sample.latency + (steps - sample.steps) * sample.times.denoise_step_seconds();
}

namespace {

constexpr int kExtrapolatedSteps = 50;  // CogVideoX's default

using Measure = std::function<std::optional<double>(const RequestSample&)>;

std::string fixed(double value, int decimals = 3) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

// The mean of a measure over the samples that have it.
std::optional<double> mean_of(const std::vector<RequestSample>& samples, const Measure& measure) {
  double sum = 0;
  int count = 0;
  for (const RequestSample& sample : samples)
    if (const std::optional<double> value = measure(sample)) {
      sum += *value;
      ++count;
    }
  if (count == 0) return std::nullopt;
  return sum / count;
}

std::string cell(std::optional<double> value, int decimals = 3) { return value ? fixed(*value, decimals) : "-"; }

std::vector<double> latencies(const BenchRun& run) {
  std::vector<double> values;
  for (const RequestSample& sample : run.samples) values.push_back(sample.latency);
  return values;
}

std::string latency_percentile(const BenchRun& run, double percent) {
  return run.samples.empty() ? "-" : fixed(percentile(latencies(run), percent));
}

std::string rate(double count, double wall_seconds) { return wall_seconds > 0 ? fixed(count / wall_seconds) : "-"; }

std::string error_summary(const std::map<std::string, int>& errors) {
  std::string text;
  for (const auto& [code, count] : errors) text += (text.empty() ? "" : " ") + code + "=" + std::to_string(count);
  return text.empty() ? "0" : text;
}

std::string backend_label(const BenchRun& run) {
  if (!run.backend_used.empty()) return run.backend_used;
  return run.backend.empty() ? "default" : run.backend;
}

const Measure latency = [](const RequestSample& s) { return s.latency; };
const Measure extrapolated = [](const RequestSample& s) { return extrapolated_latency(s, kExtrapolatedSteps); };

using Row = std::pair<std::string, std::vector<std::string>>;

// Each run's mean of `measure` over flash's: how much faster than flash the whole request is.
Row speedup_row(const std::string& label, const std::vector<BenchRun>& runs, const Measure& measure) {
  const auto flash =
      std::find_if(runs.begin(), runs.end(), [](const BenchRun& r) { return backend_label(r) == "flash"; });
  const std::optional<double> reference = mean_of(flash->samples, measure);
  Row row{label, {}};
  for (const BenchRun& run : runs) {
    const std::optional<double> value = mean_of(run.samples, measure);
    row.second.push_back(reference && value && *value > 0 ? fixed(*reference / *value) : "-");
  }
  return row;
}

std::vector<Row> table_rows(const std::vector<BenchRun>& runs) {
  const auto times = [](double (sagevid::v1::PhaseTimes::*field)() const) -> Measure {
    return [field](const RequestSample& s) { return (s.times.*field)(); };
  };
  const std::vector<std::pair<std::string, Measure>> means = {
      {"first video byte (s)", [](const RequestSample& s) { return s.first_byte; }},
      {"denoise end to first byte (s)", [](const RequestSample& s) { return s.denoise_end_to_first_byte; }},
      {"queue (s)", times(&sagevid::v1::PhaseTimes::queued_seconds)},
      {"text encode (s)", times(&sagevid::v1::PhaseTimes::text_encode_seconds)},
      {"denoise (s)", times(&sagevid::v1::PhaseTimes::denoise_seconds)},
      {"denoise step, median (s)", times(&sagevid::v1::PhaseTimes::denoise_step_seconds)},
      {"decode (s)", times(&sagevid::v1::PhaseTimes::decode_seconds)},
      {"encode (s)", times(&sagevid::v1::PhaseTimes::encode_seconds)},
      {"server overhead (s)", [](const RequestSample& s) { return s.overhead(); }},
  };
  std::vector<Row> rows = {{"backend", {}},         {"requests", {}},        {"concurrency", {}},
                           {"succeeded", {}},       {"errors", {}},          {"steps", {}},
                           {"latency p50 (s)", {}}, {"latency p90 (s)", {}}, {"latency p99 (s)", {}},
                           {"latency mean (s)", {}}};
  for (const auto& [label, measure] : means) rows.push_back({label, {}});
  for (const char* label : {"server overhead (% of latency)", "video bytes", "throughput (req/s)", "frames/s",
                            "wall time (s)", "50-step latency, extrapolated (s)"})
    rows.push_back({label, {}});

  for (const BenchRun& run : runs) {
    const std::optional<double> mean_latency = mean_of(run.samples, latency);
    const std::optional<double> overhead = mean_of(run.samples, [](const RequestSample& s) { return s.overhead(); });
    const int64_t frames = std::accumulate(run.samples.begin(), run.samples.end(), int64_t(0),
                                           [](int64_t sum, const RequestSample& s) { return sum + s.frames; });
    std::vector<std::string> cells = {
        backend_label(run),
        std::to_string(run.requests),
        std::to_string(run.concurrency),
        std::to_string(run.samples.size()),
        error_summary(run.errors),
        cell(mean_of(run.samples, [](const RequestSample& s) { return double(s.steps); }), 0),
        latency_percentile(run, 50),
        latency_percentile(run, 90),
        latency_percentile(run, 99),
        cell(mean_latency)};
    for (const auto& [label, measure] : means) cells.push_back(cell(mean_of(run.samples, measure)));
    cells.push_back(overhead && mean_latency && *mean_latency > 0 ? fixed(100 * *overhead / *mean_latency, 2) : "-");
    cells.push_back(cell(mean_of(run.samples, [](const RequestSample& s) { return double(s.bytes); }), 0));
    cells.push_back(rate(double(run.samples.size()), run.wall_seconds));
    cells.push_back(rate(double(frames), run.wall_seconds));
    cells.push_back(fixed(run.wall_seconds));
    cells.push_back(cell(mean_of(run.samples, extrapolated)));
    for (size_t i = 0; i < rows.size(); ++i) rows[i].second.push_back(cells[i]);
  }
  if (std::any_of(runs.begin(), runs.end(), [](const BenchRun& r) { return backend_label(r) == "flash"; })) {
    rows.push_back(speedup_row("speedup over flash", runs, latency));
    rows.push_back(speedup_row("speedup over flash, 50 steps extrapolated", runs, extrapolated));
  }
  return rows;
}

std::string text_table(const std::vector<Row>& rows, size_t columns) {
  size_t label_width = 0;
  std::vector<size_t> column_width(columns, 0);
  for (const auto& [label, cells] : rows) {
    label_width = std::max(label_width, label.size());
    for (size_t c = 0; c < cells.size(); ++c) column_width[c] = std::max(column_width[c], cells[c].size());
  }
  std::string table;
  for (const auto& [label, cells] : rows) {
    table += label + std::string(label_width - label.size(), ' ');
    for (size_t c = 0; c < cells.size(); ++c)
      table += "  " + std::string(column_width[c] - cells[c].size(), ' ') + cells[c];
    table += "\n";
  }
  return table;
}

// The backend row is the header; numbers align right.
std::string markdown_table(const std::vector<Row>& rows) {
  std::string table;
  const auto line = [&table](const std::string& label, const std::vector<std::string>& cells) {
    table += "| " + label;
    for (const std::string& c : cells) table += " | " + c;
    table += " |\n";
  };
  line(rows.front().first, rows.front().second);
  line("---", std::vector<std::string>(rows.front().second.size(), "---:"));
  for (size_t r = 1; r < rows.size(); ++r) line(rows[r].first, rows[r].second);
  return table;
}

}  // namespace

std::string format_bench_table(const std::vector<BenchRun>& runs, TableStyle style) {
  const std::vector<Row> rows = table_rows(runs);
  return style == TableStyle::markdown ? markdown_table(rows) : text_table(rows, runs.size());
}

}  // namespace sagevid::client
