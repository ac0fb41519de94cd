// sagevid-client: the command-line client of the sagevid server (proto/sagevid/v1/sagevid.proto).
#include "bench_command.h"
#include "command_line.h"
#include "generate_command.h"
#include "info_commands.h"
#include "request_flags.h"
#include "rpc.h"

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace sagevid::client;

namespace {

constexpr const char* kUsage = R"(usage: sagevid-client [--server HOST:PORT] [--deadline SECONDS] COMMAND [flags]
commands:
  generate    make a video: --prompt TEXT [--output FILE] [request flags]
  models      list the models the server serves
  status      queue, running job, device, memory, attention backend
  health      grpc.health.v1 check; prints SERVING or NOT_SERVING (exit 0 only if SERVING) [--service NAME]
  bench       latency and throughput: --requests N --concurrency C [--backend A --backend B]
global flags (before or after the command):
  --server HOST:PORT        default 127.0.0.1:50051
  --deadline SECONDS        per call; default none for generate and bench, 10 for the others
  --tls                     TLS, trusting the system's CAs
  --tls-ca FILE             TLS, trusting the CA certificate(s) in FILE (PEM)
  --tls-cert FILE --tls-key FILE
                            a client certificate, for servers that require one (implies TLS)
  --token-file FILE         bearer token for servers that require one (default: $SAGEVID_TOKEN); needs TLS
exit status: 0 done, 1 the call or the run failed (the gRPC status code is printed), 2 bad command line
)";

using Command = std::function<int(const Connection&, const std::vector<std::string>&)>;

// Takes the global flags (connection and security) out of the arguments wherever they stand. Any other flag
// without "=" that is not a switch takes the next argument as its value, so a value is never mistaken for a
// global flag.
std::vector<std::string> take_global_flags(const std::vector<std::string>& args, Connection& connection) {
  const std::set<std::string> global_values = {"--server",   "--deadline", "--tls-ca",
                                               "--tls-cert", "--tls-key",  "--token-file"};
  const auto is_switch = [](const std::string& arg) {
    return arg == "--dynamic-cfg" || arg == "--quiet" || arg == "--tls";
  };
  std::vector<std::string> rest;
  std::vector<std::string> globals;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const std::string name = arg.substr(0, arg.find('='));
    const bool has_value_inline = arg.find('=') != std::string::npos;
    std::vector<std::string>& into = (global_values.count(name) || name == "--tls") ? globals : rest;
    into.push_back(arg);
    if (arg.starts_with("--") && !has_value_inline && !is_switch(arg) && i + 1 < args.size()) into.push_back(args[++i]);
  }
  const Flags flags(globals, {global_values, {"--tls"}, {}});
  connection.server = flags.text("--server", connection.server);
  connection.deadline_seconds = flags.real("--deadline", 0, 0, 1e7);
  read_security_flags(flags, connection);
  return rest;
}

int run(const std::vector<std::string>& all_args) {
  Connection connection;
  std::vector<std::string> args = take_global_flags(all_args, connection);
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::printf("%s\n%s\n%s\n%s", kUsage, kGenerateHelp, kRequestFlagsHelp, kBenchHelp);
    return 0;
  }
  const std::map<std::string, Command> commands = {{"generate", generate_command},
                                                   {"models", models_command},
                                                   {"status", status_command},
                                                   {"health", health_command},
                                                   {"bench", bench_command}};
  const auto command = commands.find(args[0]);
  if (command == commands.end()) throw UsageError("unknown command '" + args[0] + "'");
  const std::vector<std::string> command_args(args.begin() + 1, args.end());
  for (const std::string& arg : command_args)
    if (arg == "--help" || arg == "-h") {
      std::printf("%s\n%s\n%s\n%s", kUsage, kGenerateHelp, kRequestFlagsHelp, kBenchHelp);
      return 0;
    }
  return command->second(connection, command_args);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const UsageError& error) {
    std::fprintf(stderr, "sagevid-client: %s\n(sagevid-client --help lists commands and flags)\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sagevid-client: error: %s\n", error.what());
    return 1;
  }
}
