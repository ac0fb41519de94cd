#include "sagevid/models/logging.h"

#include "sagevid/models/config_reader.h"

#include <spdlog/spdlog.h>

namespace sagevid {

spdlog::level::level_enum parse_log_level(const std::string& name) {
  static const std::pair<const char*, spdlog::level::level_enum> levels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},   {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
      {"off", spdlog::level::off}};
  for (const auto& [level_name, level] : levels)
    if (name == level_name) return level;
  throw ConfigError("log level '" + name + "': expected trace, debug, info, warn, error, critical or off");
}

void set_log_level(const std::string& name) { spdlog::set_level(parse_log_level(name)); }

}  // namespace sagevid
