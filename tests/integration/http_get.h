#pragma once
// A minimal HTTP/1.0 GET over a plain socket, for the /metrics tests: the suite stays free of cpp-httplib,
// whose compile definitions would disable the suites' shared precompiled header.
#include <arpa/inet.h>
#include <netinet/in.h>
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

// GET http://127.0.0.1:port/path; nullopt when nothing listens there or the reply is not HTTP.
inline std::optional<HttpResponse> http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  const timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(uint16_t(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), 0) == ssize_t(request.size())) {
      char buffer[4096];
      for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) reply.append(buffer, size_t(n));
    }
  }
  ::close(fd);
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

}  // namespace sagevid::test
