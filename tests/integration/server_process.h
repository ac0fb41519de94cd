#pragma once
// Test helper: the `sagevid` binary of this build run as a separate process (`sagevid serve` on the tiny
// config, with overrides), so tests can drive the real service path, send it signals and read its exit status.
#include "catch.h"
#include "test_server_support.h"

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sagevid::test {

// The sagevid binary of this build (server/sagevid next to tests/), or $SAGEVID_BINARY.
inline std::string sagevid_binary() {
  if (const char* path = std::getenv("SAGEVID_BINARY")) return path;
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path().parent_path() / "server" / "sagevid").string();
}

inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

inline pid_t spawn(const std::vector<std::string>& arguments) {
  std::vector<char*> argv;
  for (const auto& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
  return pid;
}

// A spawned `sagevid serve`, killed when the test ends if it still runs: a failed REQUIRE must not leave a
// server behind holding ctest's output pipe open.
struct ServerProcess {
  pid_t pid;
  explicit ServerProcess(pid_t process) : pid(process) {}
  ServerProcess(ServerProcess&& other) noexcept : pid(std::exchange(other.pid, -1)) {}
  ServerProcess& operator=(ServerProcess&&) = delete;
  ~ServerProcess() {
    if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

// `sagevid serve` of the tiny config on address, quiet, with these `--set` overrides on top; returns once it
// says SERVING.
inline ServerProcess serve_tiny(const std::string& address, const std::vector<std::string>& overrides) {
  std::vector<std::string> arguments = {sagevid_binary(), "serve",
                                        "--config",       kTinyConfig.string(),
                                        "--set",          "server.address=\"" + address + "\"",
                                        "--set",          "log_level=warn"};
  for (const std::string& override : overrides) arguments.insert(arguments.end(), {"--set", override});
  ServerProcess server{spawn(arguments)};
  const auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (health_status(channel) != kServing && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(health_status(channel) == kServing);
  return server;
}

inline int wait_exit(pid_t pid) {
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

}  // namespace sagevid::test
