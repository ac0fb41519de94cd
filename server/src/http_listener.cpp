#include "http_listener.h"

#include <sys/socket.h>

#include <stdexcept>

namespace sagevid {
namespace {

std::unique_ptr<httplib::Server> make_http_server(const std::string& name, const TlsFiles& tls) {
  if (!tls.enabled()) return std::make_unique<httplib::Server>();
  const std::string client_ca = tls.client_ca_file.string();
  auto server = std::make_unique<httplib::SSLServer>(tls.cert_file.c_str(), tls.key_file.c_str(),
                                                     client_ca.empty() ? nullptr : client_ca.c_str());
  if (!server->is_valid())
    throw std::runtime_error(name + ": cannot load the TLS certificate " + tls.cert_file.string() + ", key " +
                             tls.key_file.string() + (client_ca.empty() ? "" : " or client CA " + client_ca));
  return server;
}

// Runs before httplib reads a request's body: the token first, then the body's declared size.
httplib::Server::HandlerWithResponse admission(std::shared_ptr<const BearerTokens> tokens, std::size_t max_body_bytes,
                                               const std::string& unauthorized, const std::string& unauthorized_type) {
  return [=](const httplib::Request& request, httplib::Response& response) {
    if (tokens && !tokens->accepts(request.get_header_value("Authorization"))) {
      response.status = 401;
      response.set_header("WWW-Authenticate", "Bearer");
      response.set_content(unauthorized, unauthorized_type.c_str());
      return httplib::Server::HandlerResponse::Handled;
    }
    if (max_body_bytes && request.get_header_value<uint64_t>("Content-Length") > max_body_bytes) {
      response.status = 413;
      response.set_header("Connection", "close");  // the body was not read: the connection cannot go on
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  };
}

}  // namespace

HttpListener::HttpListener(HttpListenerOptions options, const TlsFiles& tls, std::shared_ptr<const BearerTokens> tokens,
                           const std::string& unauthorized, const std::string& unauthorized_type)
    : options_(std::move(options)), server_(make_http_server(options_.name, tls)) {
  httplib::Server& server = *server_;
  server.new_task_queue = [threads = options_.threads] { return new httplib::ThreadPool(threads); };
  server.set_read_timeout(options_.read_timeout);
  server.set_write_timeout(options_.write_timeout);
  server.set_keep_alive_timeout(options_.keep_alive_seconds);
  // httplib's default SO_REUSEPORT would let a second server share a port that is taken; plain SO_REUSEADDR
  // still allows a quick restart while the old socket sits in TIME_WAIT.
  server.set_socket_options([](socket_t socket) {
    const int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  if (options_.max_body_bytes) server.set_payload_max_length(options_.max_body_bytes);  // chunked bodies too
  if (tokens || options_.max_body_bytes)
    server.set_pre_routing_handler(
        admission(std::move(tokens), options_.max_body_bytes, unauthorized, unauthorized_type));
}

void HttpListener::start(const std::string& host, int port) {
  if (port < 0 || port > 65535)
    throw std::invalid_argument(options_.name + ": port must be in [0, 65535], got " + std::to_string(port));
  httplib::Server& server = *server_;
  port_ = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (port_ < 0)
    throw std::runtime_error(options_.name + ": cannot listen on " + host + ":" + std::to_string(port) +
                             " (address in use or not local?)");
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_returned_ = true;
  });
  // stop() only takes effect once the accept loop runs; wait for it so the destructor cannot miss it.
  while (!server.is_running() && !listen_returned_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

HttpListener::~HttpListener() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

}  // namespace sagevid
