#include "serve_command.h"

#include "access_control.h"
#include "generation_service.h"
#include "http_video_api.h"
#include "metrics.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <functional>
#include <thread>

namespace sagevid {
namespace {

using Clock = std::chrono::steady_clock;
// After the drain, how long cancelled jobs get to notice (one denoising step) before the server stops anyway.
constexpr auto kCancelGrace = std::chrono::seconds(30);

// Server reflection exactly when configured. Linking grpc++_reflection may already have given every
// ServerBuilder its plugin (a static initializer does), so it is taken out or put in as needed.
class ReflectionSwitch : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionSwitch(bool enabled) : enabled_(enabled) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    std::erase_if(*plugins, [](const auto& plugin) {
      return dynamic_cast<const grpc::reflection::ProtoServerReflectionPlugin*>(plugin.get()) != nullptr;
    });
    if (enabled_) plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
  }

 private:
  bool enabled_;
};

std::shared_ptr<const BearerTokens> load_tokens(const ServerConfig& config) {
  return config.auth.enabled() ? BearerTokens::load(config.auth) : nullptr;
}

std::unique_ptr<MetricsHttpServer> start_metrics_http(const ServerConfig& config, const ServerMetrics& metrics,
                                                      std::shared_ptr<const BearerTokens> tokens) {
  const std::string& address = config.metrics_address;
  if (address.empty()) return nullptr;
  const std::size_t colon = address.rfind(':');  // the config checked the host:port form
  auto server = std::make_unique<MetricsHttpServer>(address.substr(0, colon), std::stoi(address.substr(colon + 1)),
                                                    metrics, config.tls, std::move(tokens));
  spdlog::info("metrics on {}://{}:{}/metrics", config.tls.enabled() ? "https" : "http", address.substr(0, colon),
               server->port());
  return server;
}

// Waits for one of the (blocked) stop signals while done() is false: the signal, or 0 once done() holds.
int wait_for_signal(const sigset_t& signals, const std::function<bool()>& done) {
  while (!done()) {
    const timespec poll{0, 100'000'000};
    if (const int signal = sigtimedwait(&signals, nullptr, &poll); signal > 0) return signal;
  }
  return 0;
}

std::unique_ptr<HttpVideoApi> start_http_api(const ServerConfig& config, GenerationService& service,
                                             std::shared_ptr<const BearerTokens> tokens) {
  if (!config.http.enabled()) return nullptr;
  auto api = std::make_unique<HttpVideoApi>(config, service, std::move(tokens));
  const std::string host = config.http.address.substr(0, config.http.address.rfind(':'));
  spdlog::info("video API on {}://{}:{}/v1/videos", config.tls.enabled() ? "https" : "http", host, api->port());
  return api;
}

}  // namespace

SagevidServer::SagevidServer(const ServerConfig& config) : SagevidServer(config, load_tokens(config)) {}

SagevidServer::SagevidServer(const ServerConfig& config, std::shared_ptr<const BearerTokens> tokens)
    : metrics_(std::make_unique<ServerMetrics>()),
      metrics_http_(start_metrics_http(config, *metrics_, tokens)),
      service_(std::make_unique<GenerationService>(config, metrics_.get())),
      http_api_(start_http_api(config, *service_, tokens)) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.SetOption(std::make_unique<ReflectionSwitch>(config.reflection));
  // gRPC's default SO_REUSEPORT would let a second server share a port that is taken, splitting the calls.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(config.address, grpc_server_credentials(config.tls, std::move(tokens)), &port_);
  builder.RegisterService(service_.get());
  // A request carrying an image of server.max_image_bytes must arrive, so that a larger one gets our error naming
  // the limit rather than gRPC's; the other fields (prompts of at most 8 KiB each) fit in the headroom.
  constexpr int64_t kRequestHeadroom = int64_t(64) << 10, kGrpcDefault = int64_t(4) << 20;
  builder.SetMaxReceiveMessageSize(int(std::max(kGrpcDefault, config.image.max_bytes + kRequestHeadroom)));
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0)
    throw std::runtime_error("cannot listen on " + config.address + " (address in use, not an address of this host" +
                             (config.tls.enabled() ? ", or the TLS certificate and key are not valid PEM)" : ")"));
  server_->GetHealthCheckService()->SetServingStatus(false);  // until the models are loaded
}

SagevidServer::~SagevidServer() { shutdown(0); }

int SagevidServer::metrics_port() const { return metrics_http_ ? metrics_http_->port() : 0; }

int SagevidServer::http_port() const { return http_api_ ? http_api_->port() : 0; }

void SagevidServer::load_models() {
  service_->load_models();
  server_->GetHealthCheckService()->SetServingStatus(true);
}

void SagevidServer::shutdown(double drain_seconds) {
  std::call_once(shutdown_once_, [&] { drain_and_stop(drain_seconds); });
}

void SagevidServer::cancel_all() { service_->cancel_all(); }

void SagevidServer::drain_and_stop(double drain_seconds) {
  service_->stop_accepting();
  server_->GetHealthCheckService()->SetServingStatus(false);
  const auto drain_end =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(drain_seconds));
  if (!service_->wait_idle(drain_end)) {
    spdlog::warn("drain: {} s passed with work left; cancelling it", drain_seconds);
    service_->cancel_all();
    if (!service_->wait_idle(Clock::now() + kCancelGrace)) spdlog::error("drain: a cancelled job did not stop");
  }
  service_->cancel_all();  // closes the queues for good
  // The handlers end once their jobs have; the deadline only guards against a stuck client connection.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server_->Wait();
  http_api_.reset();
  metrics_http_.reset();
}

int run_server(const ServerConfig& config) {
  // Block the stop signals before any thread starts (all inherit the mask); this thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  SagevidServer server(config);
  spdlog::info("sagevid listening on {} (port {}), loading models", config.address, server.port());
  std::exception_ptr load_error;
  std::atomic<bool> load_done{false};
  std::thread loader([&] {
    try {
      server.load_models();
    } catch (...) {
      load_error = std::current_exception();
    }
    load_done = true;
  });

  bool announced = false;
  const int signal = wait_for_signal(stop_signals, [&] {
    if (load_done && !load_error && !announced) {
      spdlog::info("sagevid serving on port {}", server.port());
      announced = true;
    }
    return load_done && load_error;
  });
  if (signal > 0 && !load_done) spdlog::warn("{} while loading models: stopping once loading ends", strsignal(signal));
  loader.join();
  if (load_error) {
    try {
      std::rethrow_exception(load_error);
    } catch (const std::exception& e) {
      spdlog::error("sagevid: cannot serve: {}", e.what());
    }
    server.shutdown(0);
    return 1;
  }
  spdlog::info("{}: draining (up to {} s; a second signal cancels the running work)", strsignal(signal),
               config.drain_seconds);
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    server.shutdown(config.drain_seconds);
    drained = true;
  });
  const int second = wait_for_signal(stop_signals, [&] { return drained.load(); });
  if (second > 0) {
    spdlog::warn("{} during the drain: cancelling the running work", strsignal(second));
    server.cancel_all();
  }
  drainer.join();
  spdlog::info("sagevid stopped");
  return second > 0 ? 128 + second : 0;
}

}  // namespace sagevid
