#pragma once
// Typed, validated reading of JSON config objects. Every key read is recorded, so finish() can reject keys
// nobody asked for (a typo in a config is an error, not a silently ignored setting). Errors name the full
// dotted key path, e.g. "server.queue_size: expected an integer, got string".
#include "sagevid/models/join.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <ranges>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sagevid {

class ConfigError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ConfigReader {
 public:
  // path: where this object sits in the document ("" for the root), used in error messages.
  ConfigReader(const nlohmann::json& object, std::string path);

  bool has(const std::string& key) const;
  template <class T>
  T get(const std::string& key, T default_value);  // optional key
  template <class T>
  T require(const std::string& key);  // mandatory key
  template <class T>
  std::optional<T> optional(const std::string& key);  // absent or null: nullopt
  // A string naming one of `choices`; absent: default_value. Any other string fails, listing the names.
  template <class Value>
  Value choice(const std::string& key, Value default_value,
               std::initializer_list<std::pair<std::string_view, Value>> choices) {
    return choice(key, default_value, std::span<const std::pair<std::string_view, Value>>(choices));
  }
  template <class Value>
  Value choice(const std::string& key, Value default_value,
               std::span<const std::pair<std::string_view, Value>> choices);
  ConfigReader object(const std::string& key);                        // nested object ({} if absent)
  std::vector<ConfigReader> objects(const std::string& key);          // array of objects ([] if absent)

  // Throws ConfigError naming the first key that was never read.
  void finish() const;
  std::string key_path(const std::string& key) const;
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  const nlohmann::json* lookup(const std::string& key);
  template <class T>
  T convert(const std::string& key, const nlohmann::json& value) const;

  const nlohmann::json& object_;
  std::string path_;
  std::set<std::string> read_;
};

// Reads a JSON file; syntax errors name the file, line and column.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Applies a command-line override "a.b.c=value" to a document: value is taken as JSON when it parses
// (numbers, true/false, null, quoted strings, arrays), else as a plain string. Missing objects are created,
// arrays are indexed by number ("models.0.path=/weights/CogVideoX-2b");
// unknown keys are caught later by the typed reader like any other.
void apply_override(nlohmann::json& document, const std::string& assignment);

// The value types a config can hold; convert<T> exists for exactly these.
template <>
bool ConfigReader::convert<bool>(const std::string&, const nlohmann::json&) const;
template <>
int64_t ConfigReader::convert<int64_t>(const std::string&, const nlohmann::json&) const;
template <>
double ConfigReader::convert<double>(const std::string&, const nlohmann::json&) const;
template <>
std::string ConfigReader::convert<std::string>(const std::string&, const nlohmann::json&) const;
template <>
std::vector<std::string> ConfigReader::convert<std::vector<std::string>>(const std::string&,
                                                                         const nlohmann::json&) const;

template <class T>
T ConfigReader::get(const std::string& key, T default_value) {
  const nlohmann::json* value = lookup(key);
  return value ? convert<T>(key, *value) : default_value;
}

template <class T>
std::optional<T> ConfigReader::optional(const std::string& key) {
  const nlohmann::json* value = lookup(key);
  if (!value || value->is_null()) return std::nullopt;
  return convert<T>(key, *value);
}

template <class Value>
Value ConfigReader::choice(const std::string& key, Value default_value,
                           std::span<const std::pair<std::string_view, Value>> choices) {
  const nlohmann::json* value = lookup(key);
  if (!value) return default_value;
  const std::string name = convert<std::string>(key, *value);
  for (const auto& [choice_name, choice_value] : choices)
    if (name == choice_name) return choice_value;
  fail(key, "unknown value \"" + name + "\" (expected one of: " + join(choices | std::views::keys) + ")");
}

template <class T>
T ConfigReader::require(const std::string& key) {
  const nlohmann::json* value = lookup(key);
  if (!value) fail(key, "missing required key");
  return convert<T>(key, *value);
}

}  // namespace sagevid
