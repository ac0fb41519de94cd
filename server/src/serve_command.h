#pragma once
// The server's life: bind the address (health NOT_SERVING), load the models (then SERVING), serve until
// asked to stop, then drain: new calls get UNAVAILABLE, queued and running work gets server.drain_seconds,
// whatever is left is cancelled, and the gRPC server shuts down. The HTTP video API, when configured, starts
// its jobs through the same service, so the drain covers them too.
#include "server_config.h"

#include <memory>
#include <mutex>

namespace grpc {
class Server;
}

namespace sagevid {

class BearerTokens;
class GenerationService;
class HttpVideoApi;
class MetricsHttpServer;
class ServerMetrics;

class SagevidServer {
 public:
  // Starts answering on config.address (port 0: a free one) with the models not loaded yet; throws
  // std::runtime_error when the address (or the metrics address) cannot be bound, or the TLS files or
  // tokens cannot be read.
  explicit SagevidServer(const ServerConfig& config);
  ~SagevidServer();  // shutdown(0) unless done
  SagevidServer(const SagevidServer&) = delete;
  SagevidServer& operator=(const SagevidServer&) = delete;

  int port() const { return port_; }
  int metrics_port() const;  // 0 without a metrics endpoint
  int http_port() const;     // 0 without the HTTP video API

  // Loads the configured models; throws std::runtime_error naming the model that failed. SERVING after.
  void load_models();
  // Refuses new work, waits up to drain_seconds for the queued and running jobs, cancels the rest and stops.
  // Safe to call more than once and from any thread; later calls wait for the first.
  void shutdown(double drain_seconds);
  // Cancels the running jobs and drops the waiting ones: a drain under way ends once they have stopped.
  void cancel_all();

 private:
  SagevidServer(const ServerConfig& config, std::shared_ptr<const BearerTokens> tokens);  // tokens read once
  void drain_and_stop(double drain_seconds);

  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<HttpVideoApi> http_api_;  // after service_, whose jobs it starts
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::once_flag shutdown_once_;
};

// `sagevid serve`: serves until SIGTERM or SIGINT, then drains. Returns the exit code: 0 after a drain,
// 1 when the models could not be loaded (the error is logged), 128 + the signal's number when a second
// SIGTERM or SIGINT cut the drain short.
int run_server(const ServerConfig& config);

}  // namespace sagevid
