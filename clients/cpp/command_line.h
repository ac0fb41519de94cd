#pragma once
// Flags of one sagevid-client subcommand: "--name value", "--name=value" and bare switches, checked against
// the flags the subcommand knows, with typed getters whose errors name the flag.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid::client {

// A mistake on the command line: main() prints it with the usage and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct FlagSpec {
  std::set<std::string> values;      // take a value
  std::set<std::string> switches;    // take none
  std::set<std::string> repeatable;  // values that may be given more than once
};

class Flags {
 public:
  Flags(const std::vector<std::string>& args, const FlagSpec& spec);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::vector<std::string> all(const std::string& name) const;
  std::string text(const std::string& name, const std::string& fallback) const;
  int64_t integer(const std::string& name, int64_t fallback, int64_t min, int64_t max) const;
  uint64_t unsigned_integer(const std::string& name, uint64_t fallback) const;
  double real(const std::string& name, double fallback, double min, double max) const;

 private:
  std::optional<std::string> single(const std::string& name) const;
  std::map<std::string, std::vector<std::string>> values_;  // switches hold one empty value
};

}  // namespace sagevid::client
