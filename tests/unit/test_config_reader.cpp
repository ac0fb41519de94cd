#include "catch.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/logging.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using sagevid::apply_override;
using sagevid::ConfigError;
using sagevid::ConfigReader;
using json = nlohmann::json;

TEST_CASE("config reader returns typed values and defaults", "[config]") {
  const json doc = json::parse(R"({"name": "x", "count": 3, "ratio": 0.5, "on": true, "nested": {"k": 7}})");
  ConfigReader root(doc, "");
  CHECK(root.require<std::string>("name") == "x");
  CHECK(root.get<int64_t>("count", 0) == 3);
  CHECK(root.get<double>("ratio", 0.0) == 0.5);
  CHECK(root.get<double>("count", 0.0) == 3.0);  // an integer is a valid number
  CHECK(root.get<bool>("on", false));
  CHECK(root.get<int64_t>("absent", 42) == 42);
  CHECK_FALSE(root.optional<std::string>("also_absent").has_value());
  ConfigReader nested = root.object("nested");
  CHECK(nested.get<int64_t>("k", 0) == 7);
  nested.finish();
  root.finish();
}

TEST_CASE("config errors name the full key path", "[config]") {
  const json doc = json::parse(R"({"server": {"queue_size": "8", "adress": "x"}, "models": [{"name": 1}]})");
  ConfigReader root(doc, "");
  ConfigReader server = root.object("server");
  REQUIRE_THROWS_WITH(server.get<int64_t>("queue_size", 1),
                      ContainsSubstring("server.queue_size: expected an integer, got string"));
  REQUIRE_THROWS_WITH(server.finish(), ContainsSubstring("server.adress: unknown key"));
  REQUIRE_THROWS_WITH(server.require<std::string>("address"),
                      ContainsSubstring("server.address: missing required key"));
  auto models = root.objects("models");
  REQUIRE(models.size() == 1);
  REQUIRE_THROWS_WITH(models[0].require<std::string>("name"),
                      ContainsSubstring("models[0].name: expected a string, got integer"));
  REQUIRE_THROWS_WITH(root.get<bool>("models", false), ContainsSubstring("models: expected true or false"));
  REQUIRE_THROWS_AS(ConfigReader(json::array(), "x"), ConfigError);
}

TEST_CASE("a choice key names one of a table's values or fails listing them", "[config]") {
  enum class Mode { slow, fast };
  const json doc = json::parse(R"({"mode": "fast", "typo": "fsat", "number": 3})");
  ConfigReader reader(doc, "section");
  const auto choose = [&](const std::string& key) {
    return reader.choice(key, Mode::slow, {{"slow", Mode::slow}, {"fast", Mode::fast}});
  };
  CHECK(choose("mode") == Mode::fast);
  CHECK(choose("absent") == Mode::slow);
  REQUIRE_THROWS_WITH(choose("typo"),
                      ContainsSubstring("section.typo: unknown value \"fsat\" (expected one of: slow, fast)"));
  REQUIRE_THROWS_WITH(choose("number"), ContainsSubstring("section.number: expected a string"));
}

TEST_CASE("integers beyond int64 are rejected as too large", "[config]") {
  const json doc = json::parse(R"({"big": 18446744073709551615, "huge": 1e20, "very_negative": -1e19,
                                   "twenty_digits": 123456789012345678901, "fraction": 1.5})");
  ConfigReader root(doc, "");
  REQUIRE_THROWS_WITH(root.get<int64_t>("big", 0),
                      ContainsSubstring("big: 18446744073709551615 is too large for an integer"));
  REQUIRE_THROWS_WITH(root.get<int64_t>("huge", 0), ContainsSubstring("huge: 1e+20 is too large for an integer"));
  REQUIRE_THROWS_WITH(root.get<int64_t>("very_negative", 0), ContainsSubstring("is too large for an integer"));
  REQUIRE_THROWS_WITH(root.get<int64_t>("twenty_digits", 0), ContainsSubstring("is too large for an integer"));
  REQUIRE_THROWS_WITH(root.get<int64_t>("fraction", 0), ContainsSubstring("fraction: expected an integer, got number"));
}

TEST_CASE("overrides set nested keys with JSON or string values", "[config]") {
  json doc = json::parse(R"({"server": {"queue_size": 8}, "models": [{"path": "a"}, {"path": "b"}]})");
  apply_override(doc, "server.queue_size=16");
  apply_override(doc, "server.address=0.0.0.0:1234");
  apply_override(doc, "attention.backend=flash");
  apply_override(doc, "attention.fallback=null");
  apply_override(doc, "models.1.path=/weights/x=y");
  apply_override(doc, "quoted=\"007\"");
  CHECK(doc["server"]["queue_size"] == 16);
  CHECK(doc["server"]["address"] == "0.0.0.0:1234");
  CHECK(doc["attention"]["backend"] == "flash");
  CHECK(doc["attention"]["fallback"].is_null());
  CHECK(doc["models"][1]["path"] == "/weights/x=y");
  CHECK(doc["models"][0]["path"] == "a");
  CHECK(doc["quoted"] == "007");
}

TEST_CASE("malformed overrides are errors that quote them", "[config]") {
  json doc = json::parse(R"({"server": {"queue_size": 8}, "models": [{"path": "a"}]})");
  REQUIRE_THROWS_WITH(apply_override(doc, "novalue"), ContainsSubstring("'novalue': expected key=value"));
  REQUIRE_THROWS_WITH(apply_override(doc, "=3"), ContainsSubstring("expected key=value"));
  REQUIRE_THROWS_WITH(apply_override(doc, "server..x=1"), ContainsSubstring("empty key segment"));
  REQUIRE_THROWS_WITH(apply_override(doc, "server.=1"), ContainsSubstring("empty key segment"));
  REQUIRE_THROWS_WITH(apply_override(doc, "models.5.path=x"), ContainsSubstring("models has no element 5"));
  REQUIRE_THROWS_WITH(apply_override(doc, "models.x.path=x"), ContainsSubstring("models has no element x"));
  REQUIRE_THROWS_WITH(apply_override(doc, "server.queue_size.x=1"),
                      ContainsSubstring("server.queue_size is not an object"));
  CHECK(doc["server"]["queue_size"] == 8);
}

TEST_CASE("JSON files with syntax errors name the file", "[config]") {
  const auto path = std::filesystem::temp_directory_path() / "sagevid_bad_config.json";
  std::ofstream(path) << "{\"a\": 1,\n \"b\": }";
  REQUIRE_THROWS_WITH(sagevid::read_json_file(path), ContainsSubstring("sagevid_bad_config.json: invalid JSON"));
  std::filesystem::remove(path);
}

TEST_CASE("a config path that is missing or a folder says which", "[config]") {
  const auto folder = std::filesystem::temp_directory_path() / ("sagevid_config_dir_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  REQUIRE_THROWS_WITH(sagevid::read_json_file(folder), ContainsSubstring(folder.string() + ": is a directory"));
  std::filesystem::remove(folder);
  REQUIRE_THROWS_WITH(sagevid::read_json_file(folder), ContainsSubstring(folder.string() + ": no such file"));
  // A relative path (the commands' default configs/tiny.json) says where it was looked for.
  REQUIRE_THROWS_WITH(sagevid::read_json_file("no-such-folder/tiny.json"),
                      ContainsSubstring("no-such-folder/tiny.json: no such file (relative to the working directory, " +
                                        std::filesystem::current_path().string() + ")"));
}

TEST_CASE("log levels are validated", "[config]") {
  sagevid::set_log_level("debug");
  CHECK(spdlog::get_level() == spdlog::level::debug);
  sagevid::set_log_level("warn");
  CHECK(spdlog::get_level() == spdlog::level::warn);
  REQUIRE_THROWS_WITH(sagevid::set_log_level("verbose"), ContainsSubstring("log level 'verbose'"));
  sagevid::set_log_level("info");
}
