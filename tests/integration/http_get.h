#pragma once
// A minimal HTTP/1.0 GET over a plain socket (or OpenSSL for HTTPS), for the /metrics tests: the suite stays
// free of cpp-httplib, whose compile definitions would disable the suites' shared precompiled header.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <optional>
#include <string>

namespace sagevid::test {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// HTTPS: the CA that must have signed the server's certificate, and optionally a client certificate.
struct TlsClientFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

struct GetOptions {
  std::string authorization;  // the Authorization header's value; empty: none
  std::optional<TlsClientFiles> tls;
};

namespace detail {

// A TCP connection to 127.0.0.1:port whose reads give up after 5 s; -1 when nothing listens there.
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  const timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(uint16_t(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) return fd;
  ::close(fd);
  return -1;
}

inline std::string exchange_plain(int fd, const std::string& request) {
  std::string reply;
  if (::send(fd, request.data(), request.size(), 0) != ssize_t(request.size())) return reply;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) reply.append(buffer, size_t(n));
  return reply;
}

// Empty when the handshake fails: the server's certificate is not signed by the CA, or the server wants a
// client certificate that is missing.
inline std::string exchange_tls(int fd, const std::string& request, const TlsClientFiles& files) {
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  bool ready = SSL_CTX_load_verify_locations(context, files.ca_file.c_str(), nullptr) == 1;
  if (!files.cert_file.empty())
    ready = ready && SSL_CTX_use_certificate_file(context, files.cert_file.c_str(), SSL_FILETYPE_PEM) == 1 &&
            SSL_CTX_use_PrivateKey_file(context, files.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
  SSL* ssl = SSL_new(context);
  SSL_set_fd(ssl, fd);
  std::string reply;
  if (ready && SSL_connect(ssl) == 1 && SSL_write(ssl, request.data(), int(request.size())) == int(request.size())) {
    char buffer[4096];
    for (int n; (n = SSL_read(ssl, buffer, sizeof buffer)) > 0;) reply.append(buffer, size_t(n));
  }
  SSL_free(ssl);
  SSL_CTX_free(context);
  return reply;
}

inline std::optional<HttpResponse> parse_reply(const std::string& reply) {
  const size_t header_end = reply.find("\r\n\r\n");
  if (!reply.starts_with("HTTP/1.") || header_end == std::string::npos) return std::nullopt;
  HttpResponse response;
  response.status = std::stoi(reply.substr(9, 3));
  response.body = reply.substr(header_end + 4);
  const std::string headers = reply.substr(0, header_end);
  for (const char* name : {"\r\nContent-Type: ", "\r\ncontent-type: "}) {
    const size_t at = headers.find(name);
    if (at == std::string::npos) continue;
    const size_t start = at + std::string(name).size();
    response.content_type = headers.substr(start, headers.find("\r\n", start) - start);
  }
  return response;
}

}  // namespace detail

// GET http(s)://127.0.0.1:port/path; nullopt when nothing listens there, the TLS handshake fails or the
// reply is not HTTP.
inline std::optional<HttpResponse> http_get(int port, const std::string& path, const GetOptions& options = {}) {
  const int fd = detail::connect_loopback(port);
  if (fd < 0) return std::nullopt;
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n";
  if (!options.authorization.empty()) request += "Authorization: " + options.authorization + "\r\n";
  request += "\r\n";
  const std::string reply =
      options.tls ? detail::exchange_tls(fd, request, *options.tls) : detail::exchange_plain(fd, request);
  ::close(fd);
  return detail::parse_reply(reply);
}

}  // namespace sagevid::test
