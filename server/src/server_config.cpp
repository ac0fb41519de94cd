#include "server_config.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/dtype.h"
#include "sagevid/models/join.h"
#include "sagevid/models/logging.h"

#include <algorithm>
#include <ranges>
#include <regex>
#include <set>
#include <utility>

namespace sagevid {
namespace {

void check_device(ConfigReader& reader, const std::string& device) {
  static const std::regex pattern("cpu|cuda(:[0-9]+)?");
  if (!std::regex_match(device, pattern)) reader.fail("device", "'" + device + "': expected cpu, cuda or cuda:N");
}

// Relative paths in a config are relative to the config file's folder.
std::filesystem::path resolve(const std::filesystem::path& base_dir, const std::filesystem::path& path) {
  return path.is_relative() ? (base_dir / path).lexically_normal() : path;
}

// host:port, the port in 0..65535 (0: any free port). gRPC also listens on unix:PATH sockets.
void check_listen_address(ConfigReader& reader, const std::string& key, const std::string& address) {
  static const std::regex host_port("(.+):([0-9]+)");
  std::smatch match;
  if (!std::regex_match(address, match, host_port)) reader.fail(key, "'" + address + "': expected host:port");
  if (match[2].length() > 5 || std::stoi(match[2]) > 65535)
    reader.fail(key, "'" + address + "': port " + match[2].str() + " is out of range (0..65535)");
}

// An optional file key: empty for none, else the resolved path of an existing file.
std::filesystem::path read_file_key(ConfigReader& reader, const std::string& key,
                                    const std::filesystem::path& base_dir) {
  const std::string value = reader.get<std::string>(key, "");
  if (value.empty()) return {};
  const std::filesystem::path path = resolve(base_dir, value);
  if (!std::filesystem::is_regular_file(path)) reader.fail(key, path.string() + ": no such file");
  return path;
}

TlsFiles read_tls(ConfigReader reader, const std::filesystem::path& base_dir) {
  TlsFiles tls;
  tls.cert_file = read_file_key(reader, "cert_file", base_dir);
  tls.key_file = read_file_key(reader, "key_file", base_dir);
  tls.client_ca_file = read_file_key(reader, "client_ca_file", base_dir);
  if (tls.cert_file.empty() != tls.key_file.empty())
    reader.fail(tls.cert_file.empty() ? "cert_file" : "key_file", "cert_file and key_file go together");
  if (!tls.client_ca_file.empty() && !tls.enabled()) reader.fail("client_ca_file", "needs cert_file and key_file");
  reader.finish();
  return tls;
}

TokenSources read_auth(ConfigReader reader, const std::filesystem::path& base_dir) {
  TokenSources auth;
  auth.file = read_file_key(reader, "token_file", base_dir);
  auth.env = reader.get<std::string>("token_env", "");
  reader.finish();
  return auth;
}

HttpApiConfig read_http(ConfigReader reader, const std::filesystem::path& base_dir) {
  HttpApiConfig http;
  http.address = reader.get<std::string>("address", http.address);
  if (!http.address.empty()) check_listen_address(reader, "address", http.address);
  http.max_body_bytes = reader.get<int64_t>("max_body_bytes", http.max_body_bytes);
  if (http.max_body_bytes < 1024) reader.fail("max_body_bytes", "must be at least 1024");
  http.retention_seconds = reader.get<double>("retention_seconds", http.retention_seconds);
  if (!(http.retention_seconds > 0)) reader.fail("retention_seconds", "must be positive");
  http.max_stored_bytes = reader.get<int64_t>("max_stored_bytes", http.max_stored_bytes);
  if (http.max_stored_bytes < 1) reader.fail("max_stored_bytes", "must be positive");
  const std::string storage = reader.get<std::string>("storage_dir", "");
  if (!storage.empty()) http.storage_dir = resolve(base_dir, storage);
  if (!storage.empty() && !std::filesystem::is_directory(http.storage_dir))
    reader.fail("storage_dir", http.storage_dir.string() + ": no such folder");
  reader.finish();
  return http;
}

ModelEntry read_model(ConfigReader reader, const std::filesystem::path& base_dir) {
  ModelEntry model;
  model.name = reader.require<std::string>("name");
  if (model.name.empty()) reader.fail("name", "must not be empty");
  model.path = resolve(base_dir, reader.require<std::string>("path"));
  model.device = reader.get<std::string>("device", model.device);
  check_device(reader, model.device);
  if (const std::optional<DeviceGroup> group = read_device_group(reader)) {
    for (const c10::Device& device : group->devices) model.devices.push_back(device.str());
    model.device = model.devices[0];
    model.parallel = group->plan;
  }
  model.dtype = read_dtype(reader, model.dtype);
  model.max_latent_token_steps = reader.optional<int64_t>("max_latent_token_steps");
  if (model.max_latent_token_steps && *model.max_latent_token_steps < 1)
    reader.fail("max_latent_token_steps", "must be positive (or null for the model's default)");
  const std::string linear = reader.get<std::string>("linear", "native");
  if (linear != "native" && linear != "fp8") reader.fail("linear", "must be \"native\" or \"fp8\"");
  model.linear = linear == "fp8" ? LinearPrecision::fp8 : LinearPrecision::native;
  model.fp8_fast_accum = reader.get<bool>("fp8_fast_accum", model.fp8_fast_accum);
  if (model.fp8_fast_accum && model.linear != LinearPrecision::fp8)
    reader.fail("fp8_fast_accum", "needs \"linear\": \"fp8\"");
  model.memory = read_memory_config(reader);
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
  if (!config.address.starts_with("unix:")) check_listen_address(server, "address", config.address);
  config.queue_size = server.get<int64_t>("queue_size", config.queue_size);
  if (config.queue_size < 1 || config.queue_size > 10000) server.fail("queue_size", "must be in 1..10000");
  config.drain_seconds = server.get<double>("drain_seconds", config.drain_seconds);
  if (config.drain_seconds < 0) server.fail("drain_seconds", "must not be negative");
  config.allow_request_backend = server.get<bool>("allow_request_backend", config.allow_request_backend);
  config.metrics_address = server.get<std::string>("metrics_address", config.metrics_address);
  if (!config.metrics_address.empty()) check_listen_address(server, "metrics_address", config.metrics_address);
  config.reflection = server.get<bool>("reflection", config.reflection);
  config.tls = read_tls(server.object("tls"), base_dir);
  config.auth = read_auth(server.object("auth"), base_dir);
  if (config.auth.enabled() && !config.tls.enabled())
    server.fail("auth", "bearer tokens need server.tls (they must not travel in clear text)");
  config.max_streams = server.get<int64_t>("max_streams", config.max_streams);
  if (config.max_streams < 1 || config.max_streams > 10000) server.fail("max_streams", "must be in 1..10000");
  config.write_timeout_seconds = server.get<double>("write_timeout_seconds", config.write_timeout_seconds);
  if (!(config.write_timeout_seconds > 0)) server.fail("write_timeout_seconds", "must be positive");
  config.max_stream_buffer_bytes = server.get<int64_t>("max_stream_buffer_bytes", config.max_stream_buffer_bytes);
  if (config.max_stream_buffer_bytes < (int64_t(1) << 20))  // one video chunk must fit
    server.fail("max_stream_buffer_bytes", "must be at least 1048576 (one video chunk)");
  config.http = read_http(server.object("http"), base_dir);
  config.image.max_bytes = server.get<int64_t>("max_image_bytes", config.image.max_bytes);
  if (config.image.max_bytes < 1 || config.image.max_bytes > kMaxImageBytes)  // a gRPC message is at most 2 GiB
    server.fail("max_image_bytes", "must be in 1.." + std::to_string(kMaxImageBytes));
  config.image.max_pixels = server.get<int64_t>("max_image_pixels", config.image.max_pixels);
  if (config.image.max_pixels < 1) server.fail("max_image_pixels", "must be at least 1");
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
  if (config.models.empty()) throw ConfigError("models: at least one model is required");
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

PipelineOptions pipeline_options(const ModelEntry& model, const ServerConfig& config) {
  PipelineOptions options{.device = c10::Device(model.device),
                          .dtype = model.dtype,
                          .attention = config.attention,
                          .linear = model.linear,
                          .fp8_fast_accum = model.fp8_fast_accum,
                          .max_work = model.max_latent_token_steps};
  model.memory.apply_to(options);
  options.devices.assign(model.devices.begin(), model.devices.end());
  options.parallel = model.parallel;
  return options;
}

std::string placement(const ModelEntry& model) {
  return model.devices.empty() ? model.device : join(model.devices, "+");
}

namespace {

// A model's devices as (type, index), "cuda" as cuda:0 and the CPU without an index.
std::set<std::pair<int, int>> devices_of(const ModelEntry& model) {
  std::set<std::pair<int, int>> devices;
  for (const std::string& name : model.devices.empty() ? std::vector{model.device} : model.devices) {
    const c10::Device device(name);
    devices.emplace(int(device.type()), device.is_cuda() ? std::max<int>(device.index(), 0) : -1);
  }
  return devices;
}

}  // namespace

std::string queue_placement(const ServerConfig& config, const ModelEntry& model) {
  std::set<std::pair<int, int>> served = devices_of(model);
  for (bool grew = true; grew;) {  // take in every model that shares a device with those served, until none is left
    grew = false;
    for (const ModelEntry& other : config.models) {
      const std::set<std::pair<int, int>> devices = devices_of(other);
      if (std::ranges::none_of(devices, [&](const auto& device) { return served.contains(device); })) continue;
      for (const auto& device : devices) grew |= served.insert(device).second;
    }
  }
  return join(served | std::views::transform([](const std::pair<int, int>& device) {
                return c10::Device(c10::DeviceType(device.first), c10::DeviceIndex(device.second)).str();
              }),
              "+");
}

std::optional<std::size_t> find_model(const ServerConfig& config, std::string_view name) {
  for (std::size_t i = 0; i < config.models.size(); ++i)
    if (config.models[i].name == name) return i;
  return std::nullopt;
}

std::string model_names(const ServerConfig& config) {
  return join(config.models | std::views::transform(&ModelEntry::name));
}

nlohmann::json to_json(const ServerConfig& config) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelEntry& m : config.models) {
    nlohmann::json model = {
        {"name", m.name},
        {"path", m.path.string()},
        {"dtype", dtype_name(m.dtype)},
        {"max_latent_token_steps",
         m.max_latent_token_steps ? nlohmann::json(*m.max_latent_token_steps) : nlohmann::json(nullptr)}};
    if (m.devices.empty()) {
      model["device"] = m.device;
    } else {
      model["devices"] = m.devices;
      model["parallel"] = {{"cfg", m.parallel.cfg}, {"ulysses", m.parallel.ulysses}};
    }
    model["linear"] = m.linear == LinearPrecision::fp8 ? "fp8" : "native";
    model["fp8_fast_accum"] = m.fp8_fast_accum;
    model.update(to_json(m.memory));
    models.push_back(model);
  }
  const auto& attention = config.attention;
  return {{"log_level", config.log_level},
          {"server",
           {{"address", config.address},
            {"queue_size", config.queue_size},
            {"drain_seconds", config.drain_seconds},
            {"allow_request_backend", config.allow_request_backend},
            {"metrics_address", config.metrics_address},
            {"reflection", config.reflection},
            {"tls",
             {{"cert_file", config.tls.cert_file.string()},
              {"key_file", config.tls.key_file.string()},
              {"client_ca_file", config.tls.client_ca_file.string()}}},
            {"auth", {{"token_file", config.auth.file.string()}, {"token_env", config.auth.env}}},
            {"max_streams", config.max_streams},
            {"write_timeout_seconds", config.write_timeout_seconds},
            {"max_stream_buffer_bytes", config.max_stream_buffer_bytes},
            {"max_image_bytes", config.image.max_bytes},
            {"max_image_pixels", config.image.max_pixels},
            {"http",
             {{"address", config.http.address},
              {"max_body_bytes", config.http.max_body_bytes},
              {"retention_seconds", config.http.retention_seconds},
              {"max_stored_bytes", config.http.max_stored_bytes},
              {"storage_dir", config.http.storage_dir.string()}}}}},
          {"attention",
           {{"backend", backend_name(attention.backend)},
            {"fallback", attention.fallback ? nlohmann::json(backend_name(*attention.fallback)) : nullptr}}},
          {"models", models}};
}

}  // namespace sagevid
