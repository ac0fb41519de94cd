#pragma once
#include <spdlog/common.h>

#include <string>

namespace sagevid {

// A config/CLI log level name: trace, debug, info, warn, error, critical, off. Unknown names throw
// ConfigError (spdlog's own from_str would silently map them to "off").
spdlog::level::level_enum parse_log_level(const std::string& name);
void set_log_level(const std::string& name);

}  // namespace sagevid
