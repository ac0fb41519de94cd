#include "metrics.h"

#include "http_listener.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <stdexcept>

namespace sagevid {

namespace {

// Text format label values escape backslash, double quote and newline.
std::string escape_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// Shortest round-tripping decimal form; Prometheus spells infinity "+Inf".
std::string format_number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

void require_duration(std::string_view what, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0)
    throw std::invalid_argument(std::string(what) + ": seconds must be finite and >= 0, got " +
                                std::to_string(seconds));
}

void write_header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// The _bucket, _sum and _count series of one histogram; `label` is `key="value"` or empty.
void write_histogram(std::string& out, std::string_view name, const std::string& label, const Histogram& histogram) {
  const std::string prefix = label.empty() ? "{" : "{" + label + ",";
  const std::string labels = label.empty() ? "" : "{" + label + "}";
  const std::vector<uint64_t> cumulative = histogram.cumulative_counts();
  for (size_t i = 0; i < cumulative.size(); ++i) {
    out.append(name)
        .append("_bucket")
        .append(prefix)
        .append("le=\"")
        .append(format_number(histogram.upper_bounds()[i]))
        .append("\"} ")
        .append(std::to_string(cumulative[i]))
        .append("\n");
  }
  out.append(name)
      .append("_bucket")
      .append(prefix)
      .append("le=\"+Inf\"} ")
      .append(std::to_string(histogram.count()))
      .append("\n");
  out.append(name).append("_sum").append(labels).append(" ").append(format_number(histogram.sum())).append("\n");
  out.append(name).append("_count").append(labels).append(" ").append(std::to_string(histogram.count())).append("\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), bucket_counts_(upper_bounds_.size() + 1, 0) {
  if (!std::is_sorted(upper_bounds_.begin(), upper_bounds_.end()) ||
      std::adjacent_find(upper_bounds_.begin(), upper_bounds_.end()) != upper_bounds_.end())
    throw std::invalid_argument("Histogram: upper bounds must be strictly increasing");
}

void Histogram::observe(double value) {
  // The first bucket whose upper bound is >= value; the extra last one when there is none.
  const auto bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++bucket_counts_[bucket];
  ++count_;
  sum_ += value;
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  std::vector<uint64_t> cumulative(upper_bounds_.size());
  uint64_t running = 0;
  for (size_t i = 0; i < upper_bounds_.size(); ++i) cumulative[i] = running += bucket_counts_[i];
  return cumulative;
}

// Phases run from milliseconds (text encode of the tiny model) to minutes (denoise of a 5B model on 49 frames).
const std::vector<double>& ServerMetrics::phase_buckets() {
  static const std::vector<double> buckets{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
  return buckets;
}

const std::vector<double>& ServerMetrics::step_buckets() {
  static const std::vector<double> buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return buckets;
}

ServerMetrics::ServerMetrics() : step_seconds_(step_buckets()) {}

void ServerMetrics::request_finished(std::string_view outcome) {
  if (outcome.empty()) throw std::invalid_argument("request_finished: outcome must not be empty");
  const std::lock_guard lock(mutex_);
  auto entry = requests_by_outcome_.find(outcome);
  if (entry == requests_by_outcome_.end()) entry = requests_by_outcome_.emplace(std::string(outcome), 0).first;
  ++entry->second;
}

void ServerMetrics::set_queue_depth(int depth) {
  if (depth < 0) throw std::invalid_argument("set_queue_depth: depth must be >= 0, got " + std::to_string(depth));
  const std::lock_guard lock(mutex_);
  queue_depth_ = depth;
}

void ServerMetrics::observe_phase(std::string_view phase, double seconds) {
  if (phase.empty()) throw std::invalid_argument("observe_phase: phase must not be empty");
  require_duration("observe_phase(" + std::string(phase) + ")", seconds);
  const std::lock_guard lock(mutex_);
  auto entry = phase_seconds_.find(phase);
  if (entry == phase_seconds_.end()) entry = phase_seconds_.emplace(std::string(phase), phase_buckets()).first;
  entry->second.observe(seconds);
}

void ServerMetrics::observe_step(double seconds) {
  require_duration("observe_step", seconds);
  const std::lock_guard lock(mutex_);
  step_seconds_.observe(seconds);
}

void ServerMetrics::set_gpu_memory(uint64_t used, uint64_t total) {
  if (used > total)
    throw std::invalid_argument("set_gpu_memory: used (" + std::to_string(used) + ") exceeds total (" +
                                std::to_string(total) + ")");
  const std::lock_guard lock(mutex_);
  gpu_memory_used_ = used;
  gpu_memory_total_ = total;
}

std::string ServerMetrics::render() const {
  const std::lock_guard lock(mutex_);
  std::string out;
  write_header(out, "sagevid_requests_total", "counter", "Generate requests finished, by outcome.");
  for (const auto& [outcome, count] : requests_by_outcome_)
    out.append("sagevid_requests_total{outcome=\"")
        .append(escape_label(outcome))
        .append("\"} ")
        .append(std::to_string(count))
        .append("\n");
  write_header(out, "sagevid_queue_depth", "gauge", "Jobs waiting in the queue, not counting running ones.");
  out.append("sagevid_queue_depth ").append(std::to_string(queue_depth_)).append("\n");
  write_header(out, "sagevid_phase_seconds", "histogram", "Time a job spent in each phase.");
  for (const auto& [phase, histogram] : phase_seconds_)
    write_histogram(out, "sagevid_phase_seconds", "phase=\"" + escape_label(phase) + "\"", histogram);
  write_header(out, "sagevid_denoise_step_seconds", "histogram", "Time of one denoising step.");
  write_histogram(out, "sagevid_denoise_step_seconds", "", step_seconds_);
  write_header(out, "sagevid_gpu_memory_used_bytes", "gauge", "GPU memory in use on the serving device.");
  out.append("sagevid_gpu_memory_used_bytes ").append(std::to_string(gpu_memory_used_)).append("\n");
  write_header(out, "sagevid_gpu_memory_total_bytes", "gauge", "GPU memory of the serving device.");
  out.append("sagevid_gpu_memory_total_bytes ").append(std::to_string(gpu_memory_total_)).append("\n");
  return out;
}

namespace {

// Scrapes are rare and quick; the pool and the timeouts are for clients that are not. A stalled connection
// (headers never finished, a response never read) holds a thread until a timeout, and a handful of slow ones
// (headers sent a byte at a time) still leave threads for the scraper.
HttpListenerOptions metrics_listener_options() {
  return {.name = "metrics",
          .threads = 16,
          .read_timeout = std::chrono::seconds(2),
          .write_timeout = std::chrono::seconds(5),
          .keep_alive_seconds = 2};
}

}  // namespace

struct MetricsHttpServer::Impl {
  Impl(const TlsFiles& tls, std::shared_ptr<const BearerTokens> tokens)
      : listener(metrics_listener_options(), tls, std::move(tokens)) {}
  HttpListener listener;
};

MetricsHttpServer::MetricsHttpServer(const std::string& host, int port, const ServerMetrics& metrics,
                                     const TlsFiles& tls, std::shared_ptr<const BearerTokens> tokens)
    : impl_(std::make_unique<Impl>(tls, std::move(tokens))) {
  impl_->listener.server().Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& response) {
    response.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl_->listener.start(host, port);
}

MetricsHttpServer::~MetricsHttpServer() = default;

int MetricsHttpServer::port() const { return impl_->listener.port(); }

}  // namespace sagevid
