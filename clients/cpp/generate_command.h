#pragma once
// `sagevid-client generate`: one video, written to a file as it streams in, with progress and timings.
#include "rpc.h"

#include <string>
#include <vector>

namespace sagevid::client {

extern const char* const kGenerateHelp;
int generate_command(const Connection& connection, const std::vector<std::string>& args);

}  // namespace sagevid::client
