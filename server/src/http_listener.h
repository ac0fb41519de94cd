#pragma once
// One HTTP(S) endpoint of the server (/metrics, the video API) on its own threads: TLS and bearer tokens as
// the gRPC side has them, a thread pool and timeouts so that a slow client holds a thread only so long, and
// no port sharing with another server. Routes go on server() before start(). Only .cpp files include this:
// cpp-httplib's definitions would disable the test suites' shared precompiled header.
#include "access_control.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>

namespace sagevid {

struct HttpListenerOptions {
  std::string name;  // in errors: "metrics: cannot listen on ..."
  std::size_t threads = 16;
  std::chrono::seconds read_timeout{2};
  std::chrono::seconds write_timeout{5};
  time_t keep_alive_seconds = 2;
  // A request whose Content-Length is larger gets 413 (with an empty body, for the error handler to fill) before
  // any of its body is read, and its connection is closed; 0: no limit.
  std::size_t max_body_bytes = 0;
};

class HttpListener {
 public:
  // Throws std::runtime_error when the TLS files cannot be loaded. With tokens, every request needs
  // "Authorization: Bearer <token>" (else 401 with `unauthorized`'s body), checked before the body size.
  HttpListener(HttpListenerOptions options, const TlsFiles& tls, std::shared_ptr<const BearerTokens> tokens,
               const std::string& unauthorized = "a valid 'Authorization: Bearer <token>' header is required\n",
               const std::string& unauthorized_type = "text/plain");
  ~HttpListener();  // stops serving and joins the threads
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  httplib::Server& server() { return *server_; }
  // Binds host:port (0: a free port) and serves from a background thread; throws std::runtime_error naming
  // the address when it cannot be bound.
  void start(const std::string& host, int port);
  int port() const { return port_; }

 private:
  const HttpListenerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> listen_returned_ = false;
  int port_ = 0;
};

}  // namespace sagevid
