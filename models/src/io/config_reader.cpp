#include "sagevid/models/config_reader.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sagevid {
namespace {

std::string type_name(const nlohmann::json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number()) return "number";
  return value.type_name();
}

}  // namespace

ConfigReader::ConfigReader(const nlohmann::json& object, std::string path) : object_(object), path_(std::move(path)) {
  if (!object_.is_object())
    throw ConfigError((path_.empty() ? std::string("config") : path_) + ": expected an object, got " +
                      type_name(object_));
}

bool ConfigReader::has(const std::string& key) const { return object_.contains(key); }

std::string ConfigReader::key_path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

void ConfigReader::fail(const std::string& key, const std::string& message) const {
  throw ConfigError(key_path(key) + ": " + message);
}

const nlohmann::json* ConfigReader::lookup(const std::string& key) {
  read_.insert(key);
  auto it = object_.find(key);
  return it == object_.end() ? nullptr : &*it;
}

template <>
bool ConfigReader::convert<bool>(const std::string& key, const nlohmann::json& v) const {
  if (!v.is_boolean()) fail(key, "expected true or false, got " + type_name(v));
  return v.get<bool>();
}

template <>
int64_t ConfigReader::convert<int64_t>(const std::string& key, const nlohmann::json& v) const {
  // JSON numbers past 64 bits (1e20, or 20 digits) parse as floats: say what is wrong with them.
  const bool whole =
      v.is_number_float() && std::isfinite(v.get<double>()) && std::trunc(v.get<double>()) == v.get<double>();
  const bool beyond_int64 = (whole && std::fabs(v.get<double>()) >= 0x1p63) ||
                            (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX));
  if (beyond_int64)
    fail(key, v.dump() + " is too large for an integer (the limit is " + std::to_string(INT64_MAX) + ")");
  if (!v.is_number_integer()) fail(key, "expected an integer, got " + type_name(v));
  return v.get<int64_t>();
}

template <>
double ConfigReader::convert<double>(const std::string& key, const nlohmann::json& v) const {
  if (!v.is_number()) fail(key, "expected a number, got " + type_name(v));
  return v.get<double>();
}

template <>
std::string ConfigReader::convert<std::string>(const std::string& key, const nlohmann::json& v) const {
  if (!v.is_string()) fail(key, "expected a string, got " + type_name(v));
  return v.get<std::string>();
}

template <>
std::vector<std::string> ConfigReader::convert<std::vector<std::string>>(const std::string& key,
                                                                         const nlohmann::json& v) const {
  if (!v.is_array()) fail(key, "expected an array of strings, got " + type_name(v));
  std::vector<std::string> strings;
  for (const nlohmann::json& item : v) {
    if (!item.is_string()) fail(key, "expected an array of strings, holding " + type_name(item));
    strings.push_back(item.get<std::string>());
  }
  return strings;
}

ConfigReader ConfigReader::object(const std::string& key) {
  static const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json* value = lookup(key);
  if (value && !value->is_object()) fail(key, "expected an object, got " + type_name(*value));
  return ConfigReader(value ? *value : empty, key_path(key));
}

std::vector<ConfigReader> ConfigReader::objects(const std::string& key) {
  const nlohmann::json* value = lookup(key);
  std::vector<ConfigReader> items;
  if (!value) return items;
  if (!value->is_array()) fail(key, "expected an array, got " + type_name(*value));
  for (size_t i = 0; i < value->size(); ++i)
    items.emplace_back((*value)[i], key_path(key) + "[" + std::to_string(i) + "]");
  return items;
}

void ConfigReader::finish() const {
  for (const auto& [key, value] : object_.items())
    if (!read_.count(key)) fail(key, "unknown key");
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (status.type() == std::filesystem::file_type::not_found) {
    // A default such as configs/tiny.json names a file under the checkout: say where it was looked for.
    const std::string where =
        path.is_relative() ? " (relative to the working directory, " + std::filesystem::current_path().string() + ")"
                           : "";
    throw ConfigError(path.string() + ": no such file" + where);
  }
  if (status.type() == std::filesystem::file_type::directory)
    throw ConfigError(path.string() + ": is a directory, not a JSON file");
  std::ifstream in(path);
  if (!in) throw ConfigError(path.string() + ": cannot open: " + std::strerror(errno));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw ConfigError(path.string() + ": invalid JSON: " + e.what());
  }
}

void apply_override(nlohmann::json& document, const std::string& assignment) {
  const auto equals = assignment.find('=');
  const auto fail = [&](const std::string& why) { throw ConfigError("override '" + assignment + "': " + why); };
  if (equals == std::string::npos || equals == 0) fail("expected key=value");
  const std::string key = assignment.substr(0, equals);
  const std::string text = assignment.substr(equals + 1);

  nlohmann::json* node = &document;
  std::string walked;
  std::stringstream parts(key);
  for (std::string part; std::getline(parts, part, '.');) {
    if (part.empty()) fail("empty key segment");
    if (node->is_array()) {  // "models.0.path": arrays are indexed by number
      const bool digits = part.find_first_not_of("0123456789") == std::string::npos && part.size() < 9;
      if (!digits || std::stoul(part) >= node->size()) fail(walked + " has no element " + part);
      node = &(*node)[std::stoul(part)];
    } else if (node->is_object() || node->is_null()) {
      node = &(*node)[part];
    } else {
      fail(walked + " is not an object");
    }
    walked += (walked.empty() ? "" : ".") + part;
  }
  if (key.back() == '.') fail("empty key segment");
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  *node = value.is_discarded() ? nlohmann::json(text) : value;
}

}  // namespace sagevid
