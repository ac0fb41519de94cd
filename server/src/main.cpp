// sagevid: the server binary. Until the pipeline and service land it reports what it is built from and
// the validated configuration it would serve.
#include "build_info.h"
#include "server_config.h"
#include "sagevid/models/logging.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* kUsage = R"(usage: sagevid [--config FILE] [--set KEY=VALUE]... [--version] [--help]
  --config FILE     JSON config (default configs/tiny.json)
  --set KEY=VALUE   override a config key, dotted path: --set attention.backend=flash,
                    --set models.0.path=/weights/CogVideoX-2b (VALUE is JSON if it parses, else a string)
  --version         print version and library information and exit
)";

struct Options {
  std::string config = "configs/tiny.json";
  std::vector<std::string> overrides;
  bool version_only = false;
};

Options parse_args(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--config") options.config = value();
    else if (arg == "--set") options.overrides.push_back(value());
    else if (arg == "--version") options.version_only = true;
    else if (arg == "--help" || arg == "-h") { std::fputs(kUsage, stdout); std::exit(0); }
    else throw std::invalid_argument("unknown argument '" + std::string(arg) + "'");
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse_args(argc, argv);
    std::cout << "build: " << sagevid::build_info().dump(2) << "\n";
    if (options.version_only) return 0;
    const sagevid::ServerConfig config = sagevid::load_server_config(options.config, options.overrides);
    sagevid::set_log_level(config.log_level);
    std::cout << "config (" << options.config << "): " << sagevid::to_json(config).dump(2) << "\n";
    spdlog::info("sagevid: configuration valid; the generation service arrives with the pipeline");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sagevid: error: %s\n%s", e.what(), kUsage);
    return 2;
  }
}
