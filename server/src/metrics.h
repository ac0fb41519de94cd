#pragma once
// Server metrics in the Prometheus text exposition format (version 0.0.4), and a small HTTP server that
// serves them on GET /metrics. ServerMetrics is thread-safe: the service and workers update it while the
// HTTP thread renders it.
#include "access_control.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sagevid {

// A cumulative histogram with fixed upper bounds, as Prometheus exposes them.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // cumulative_counts()[i]: observations <= upper_bounds()[i]; count() also includes those above the last bound.
  std::vector<uint64_t> cumulative_counts() const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> bucket_counts_;  // per bucket, not cumulative; one extra for +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();
  // outcome: ok, cancelled, deadline_exceeded, stalled, invalid_argument, ...
  void request_finished(std::string_view outcome);
  void set_queue_depth(int depth);
  void observe_phase(std::string_view phase, double seconds);  // queued, text_encode, denoise, decode, encode, total
  void observe_step(double seconds);
  void set_gpu_memory(uint64_t used, uint64_t total);
  std::string render() const;

  static const std::vector<double>& phase_buckets();
  static const std::vector<double>& step_buckets();

 private:
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t, std::less<>> requests_by_outcome_;
  int queue_depth_ = 0;
  std::map<std::string, Histogram, std::less<>> phase_seconds_;
  Histogram step_seconds_;
  uint64_t gpu_memory_used_ = 0;
  uint64_t gpu_memory_total_ = 0;
};

// Serves GET /metrics from background threads until destroyed. `metrics` must outlive the server.
// Port 0 picks a free port; port() tells which. Over HTTPS when `tls` is enabled; with `tokens`, every
// request needs "Authorization: Bearer <token>" (else 401). Throws std::runtime_error if the address
// cannot be bound or the TLS files cannot be loaded.
class MetricsHttpServer {
 public:
  MetricsHttpServer(const std::string& host, int port, const ServerMetrics& metrics, const TlsFiles& tls = {},
                    std::shared_ptr<const BearerTokens> tokens = nullptr);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sagevid
