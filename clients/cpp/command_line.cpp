#include "command_line.h"

#include <charconv>
#include <cmath>
#include <sstream>

namespace sagevid::client {

namespace {

template <typename Number>
Number parse_number(const std::string& name, const std::string& text, const char* kind) {
  Number value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty())
    throw UsageError(name + ": '" + text + "' is not " + kind);
  return value;
}

std::string show(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace

Flags::Flags(const std::vector<std::string>& args, const FlagSpec& spec) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!arg.starts_with("--")) throw UsageError("unexpected argument '" + arg + "' (flags start with --)");
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    if (spec.switches.count(name)) {
      if (equals != std::string::npos) throw UsageError(name + " takes no value");
      values_[name] = {""};
      continue;
    }
    if (!spec.values.count(name)) throw UsageError("unknown flag " + name);
    std::string value;
    if (equals != std::string::npos) value = arg.substr(equals + 1);
    else if (i + 1 < args.size()) value = args[++i];
    else throw UsageError(name + " needs a value");
    std::vector<std::string>& slot = values_[name];
    if (!slot.empty() && !spec.repeatable.count(name)) throw UsageError(name + " given more than once");
    slot.push_back(value);
  }
}

std::optional<std::string> Flags::single(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.front();
}

std::vector<std::string> Flags::all(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Flags::text(const std::string& name, const std::string& fallback) const {
  return single(name).value_or(fallback);
}

int64_t Flags::integer(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
  const auto text = single(name);
  if (!text) return fallback;
  const auto value = parse_number<int64_t>(name, *text, "an integer");
  if (value < min || value > max)
    throw UsageError(name + ": " + *text + " is out of range [" + std::to_string(min) + ", " + std::to_string(max) +
                     "]");
  return value;
}

uint64_t Flags::unsigned_integer(const std::string& name, uint64_t fallback) const {
  const auto text = single(name);
  return text ? parse_number<uint64_t>(name, *text, "a non-negative integer") : fallback;
}

double Flags::real(const std::string& name, double fallback, double min, double max) const {
  const auto text = single(name);
  if (!text) return fallback;
  const auto value = parse_number<double>(name, *text, "a number");
  if (!std::isfinite(value) || value < min || value > max)
    throw UsageError(name + ": " + *text + " is out of range [" + show(min) + ", " + show(max) + "]");
  return value;
}

}  // namespace sagevid::client
