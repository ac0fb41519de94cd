#include "server_config.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/logging.h"

#include <regex>
#include <set>

namespace sagevid {
namespace {

void check_device(ConfigReader& reader, const std::string& device) {
  static const std::regex pattern("cpu|cuda(:[0-9]+)?");
  if (!std::regex_match(device, pattern)) reader.fail("device", "'" + device + "': expected cpu, cuda or cuda:N");
}

void check_dtype(ConfigReader& reader, const std::string& dtype) {
  if (dtype != "float32" && dtype != "float16" && dtype != "bfloat16")
    reader.fail("dtype", "'" + dtype + "': expected float32, float16 or bfloat16");
}

ModelEntry read_model(ConfigReader reader, const std::filesystem::path& base_dir) {
  ModelEntry model;
  model.name = reader.require<std::string>("name");
  if (model.name.empty()) reader.fail("name", "must not be empty");
  model.path = reader.require<std::string>("path");
  if (model.path.is_relative()) model.path = (base_dir / model.path).lexically_normal();
  model.device = reader.get<std::string>("device", model.device);
  check_device(reader, model.device);
  model.dtype = reader.get<std::string>("dtype", model.dtype);
  check_dtype(reader, model.dtype);
  model.max_latent_token_steps = reader.optional<int64_t>("max_latent_token_steps");
  if (model.max_latent_token_steps && *model.max_latent_token_steps < 1)
    reader.fail("max_latent_token_steps", "must be positive (or null for the model's default)");
  reader.finish();
  return model;
}

}  // namespace

ServerConfig parse_server_config(const nlohmann::json& document, const std::filesystem::path& base_dir) {
  ConfigReader root(document, "");
  ServerConfig config;
  config.log_level = root.get<std::string>("log_level", config.log_level);
  try {
    parse_log_level(config.log_level);
  } catch (const ConfigError& e) {
    root.fail("log_level", e.what());
  }

  ConfigReader server = root.object("server");
  config.address = server.get<std::string>("address", config.address);
  config.queue_size = server.get<int64_t>("queue_size", config.queue_size);
  if (config.queue_size < 1 || config.queue_size > 10000) server.fail("queue_size", "must be in 1..10000");
  config.drain_seconds = server.get<double>("drain_seconds", config.drain_seconds);
  if (config.drain_seconds < 0) server.fail("drain_seconds", "must not be negative");
  config.allow_request_backend = server.get<bool>("allow_request_backend", config.allow_request_backend);
  config.metrics_address = server.get<std::string>("metrics_address", config.metrics_address);
  if (!config.metrics_address.empty() && !std::regex_match(config.metrics_address, std::regex(".+:[0-9]+")))
    server.fail("metrics_address", "'" + config.metrics_address + "': expected host:port, or empty for none");
  server.finish();

  ConfigReader attention = root.object("attention");
  config.attention = read_attention_config(attention);

  std::set<std::string> names;
  for (ConfigReader& entry : root.objects("models")) {
    config.models.push_back(read_model(entry, base_dir));
    if (!names.insert(config.models.back().name).second)
      throw ConfigError("models: duplicate model name '" + config.models.back().name + "'");
  }
  root.finish();
  return config;
}

ServerConfig load_server_config(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  nlohmann::json document = read_json_file(file);
  for (const std::string& assignment : overrides) apply_override(document, assignment);
  try {
    return parse_server_config(document, std::filesystem::absolute(file).parent_path());
  } catch (const ConfigError& e) {
    throw ConfigError(file.string() + ": " + e.what());
  }
}

nlohmann::json to_json(const ServerConfig& config) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelEntry& m : config.models)
    models.push_back({{"name", m.name}, {"path", m.path.string()}, {"device", m.device}, {"dtype", m.dtype},
                      {"max_latent_token_steps", m.max_latent_token_steps ? nlohmann::json(*m.max_latent_token_steps)
                                                                          : nlohmann::json(nullptr)}});
  const auto& attention = config.attention;
  return {{"log_level", config.log_level},
          {"server",
           {{"address", config.address},
            {"queue_size", config.queue_size},
            {"drain_seconds", config.drain_seconds},
            {"allow_request_backend", config.allow_request_backend},
            {"metrics_address", config.metrics_address}}},
          {"attention",
           {{"backend", backend_name(attention.backend)},
            {"fallback", attention.fallback ? nlohmann::json(backend_name(*attention.fallback)) : nullptr}}},
          {"models", models}};
}

}  // namespace sagevid
