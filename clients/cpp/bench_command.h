#pragma once
// `sagevid-client bench`: N Generate requests at concurrency C, per attention backend, compared side by side.
#include "rpc.h"

#include <string>
#include <vector>

namespace sagevid::client {

extern const char* const kBenchHelp;
int bench_command(const Connection& connection, const std::vector<std::string>& args);

}  // namespace sagevid::client
