// sagevid: the server binary. `sagevid serve` runs the gRPC server; without a subcommand it reports what it
// is built from and the validated configuration it would serve.
#include "build_info.h"
#include "generate_command.h"
#include "serve_command.h"
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

constexpr const char* kUsage = R"(usage: sagevid [serve] [--config FILE] [--set KEY=VALUE]... [--version] [--help]
  serve             run the gRPC server until SIGTERM/SIGINT, then drain (without it: print build and config)
  generate ...      make one video without the server (sagevid generate --help)
  --config FILE     JSON config (default configs/tiny.json)
  --set KEY=VALUE   override a config key, dotted path: --set attention.backend=flash,
                    --set models.0.path=/weights/CogVideoX-2b (VALUE is JSON if it parses, else a string)
  --version         print version and library information and exit
)";

struct Options {
  std::string command;  // empty: print what would be served
  std::string config = "configs/tiny.json";
  std::vector<std::string> overrides;
  bool version_only = false;
};

Options parse_args(int argc, char** argv) {
  Options options;
  int first = 1;
  if (argc > 1 && std::string_view(argv[1]) == "serve") options.command = argv[first++];
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--config") options.config = value();
    else if (arg == "--set") options.overrides.push_back(value());
    else if (arg == "--version") options.version_only = true;
    else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else throw std::invalid_argument("unknown argument '" + std::string(arg) + "'");
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "generate") return sagevid::run_generate({argv + 2, argv + argc});
  try {
    const Options options = parse_args(argc, argv);
    std::cout << "build: " << sagevid::build_info().dump(2) << "\n";
    if (options.version_only) return 0;
    const sagevid::ServerConfig config = sagevid::load_server_config(options.config, options.overrides);
    sagevid::set_log_level(config.log_level);
    if (options.command == "serve") return sagevid::run_server(config);
    std::cout << "config (" << options.config << "): " << sagevid::to_json(config).dump(2) << "\n";
    spdlog::info("sagevid: configuration valid; `sagevid serve` serves it");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sagevid: error: %s\n%s", e.what(), kUsage);
    return 2;
  }
}
