#pragma once
// What this binary is: version, commit and the versions of the libraries it was built with and runs on.
#include <nlohmann/json.hpp>

namespace sagevid {

nlohmann::json build_info();

}  // namespace sagevid
