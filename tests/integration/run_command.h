#pragma once
// Runs a shell command line to its end and keeps what it printed, for the tests of the binaries' exit
// statuses and messages.
#include "catch.h"

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace sagevid::test {

struct CommandResult {
  int exit_status = -1;  // -1: killed by a signal
  std::string output;    // stdout and stderr together
};

inline CommandResult run_command(const std::string& command_line) {
  CommandResult result;
  FILE* pipe = popen((command_line + " 2>&1").c_str(), "r");
  REQUIRE(pipe);
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace sagevid::test
