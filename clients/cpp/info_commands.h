#pragma once
// The short calls: `models` (ListModels), `status` (GetStatus) and `health` (grpc.health.v1 Check).
#include "rpc.h"

#include <string>
#include <vector>

namespace sagevid::client {

int models_command(const Connection& connection, const std::vector<std::string>& args);
int status_command(const Connection& connection, const std::vector<std::string>& args);
int health_command(const Connection& connection, const std::vector<std::string>& args);  // exit 0 only if SERVING

}  // namespace sagevid::client
