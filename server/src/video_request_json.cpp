#include "video_request_json.h"

#include "base64.h"

#include "sagevid/models/pipeline.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <regex>

namespace sagevid {
namespace {

enum class Kind { text, integer, seed, number, boolean, seconds, image };

// Every field the API takes; anything else is refused by name. OpenAI's names where it has the field.
const std::map<std::string, Kind>& fields() {
  static const std::map<std::string, Kind> table{{"model", Kind::text},
                                                 {"prompt", Kind::text},
                                                 {"negative_prompt", Kind::text},
                                                 {"seconds", Kind::seconds},
                                                 {"frames", Kind::integer},
                                                 {"size", Kind::text},
                                                 {"fps", Kind::integer},
                                                 {"seed", Kind::seed},
                                                 {"steps", Kind::integer},
                                                 {"guidance_scale", Kind::number},
                                                 {"dynamic_cfg", Kind::boolean},
                                                 {"attention_backend", Kind::text},
                                                 {"preview_every", Kind::integer},
                                                 {"image", Kind::image},
                                                 {"input_reference", Kind::image}};
  return table;
}

std::string field_names() {
  std::string names;
  for (const auto& [name, kind] : fields()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected, const nlohmann::json& value) {
  throw InvalidRequest(field, std::string("expected ") + expected + ", got " + value.type_name());
}

std::string text(const std::string& field, const nlohmann::json& value) {
  if (!value.is_string()) wrong_type(field, "a string", value);
  return value.get<std::string>();
}

int32_t integer(const std::string& field, const nlohmann::json& value) {
  if (!value.is_number_integer()) wrong_type(field, "an integer", value);
  const bool fits = value.is_number_unsigned() ? value.get<uint64_t>() <= uint64_t(std::numeric_limits<int32_t>::max())
                                               : value.get<int64_t>() >= std::numeric_limits<int32_t>::min() &&
                                                     value.get<int64_t>() <= std::numeric_limits<int32_t>::max();
  if (!fits) throw InvalidRequest(field, value.dump() + " is out of range");
  return int32_t(value.get<int64_t>());
}

uint64_t seed(const nlohmann::json& value) {
  if (!value.is_number_integer()) wrong_type("seed", "an integer", value);
  if (!value.is_number_unsigned() && value.get<int64_t>() < 0)
    throw InvalidRequest("seed", value.dump() + " is negative (seeds are 0 .. 2^64-1)");
  return value.get<uint64_t>();
}

// OpenAI sends seconds as a string ("8"); a number is taken too. Positive, at most an hour.
double seconds(const nlohmann::json& value) {
  double result = 0;
  if (value.is_number()) {
    result = value.get<double>();
  } else if (value.is_string()) {
    const std::string digits = value.get<std::string>();
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), result);
    if (error != std::errc() || end != digits.data() + digits.size() || digits.empty())
      throw InvalidRequest("seconds", "'" + digits + "' is not a number of seconds");
  } else {
    wrong_type("seconds", "a string or a number", value);
  }
  if (!(result > 0) || result > 3600) throw InvalidRequest("seconds", fmt::format("{:g} is not in (0, 3600]", result));
  return result;
}

// "WxH", as OpenAI's size, both positive.
void set_size(const std::string& size, v1::GenerateRequest& request) {
  static const std::regex pattern("([0-9]{1,5})x([0-9]{1,5})");
  std::smatch match;
  if (!std::regex_match(size, match, pattern) || std::stoi(match[1]) == 0 || std::stoi(match[2]) == 0)
    throw InvalidRequest("size", "'" + size + "': expected WIDTHxHEIGHT in pixels, e.g. 720x480");
  request.set_width(std::stoi(match[1]));
  request.set_height(std::stoi(match[2]));
}

const v1::ModelInfo* find_model(const v1::ListModelsResponse& models, const std::string& name) {
  if (name.empty() && models.models_size() == 1) return &models.models(0);  // as the service: one model, optional
  for (const v1::ModelInfo& model : models.models())
    if (model.name() == name) return &model;
  return nullptr;
}

// An image field's bytes: base64 or a data: URL in JSON (also as OpenAI's {"image_url": ...}), or a multipart
// file part (form_file_value wraps its bytes as {"file": ...}). What the bytes hold is checked where gRPC's are.
std::string image_bytes(const std::string& field, const nlohmann::json& value) {
  if (value.is_object() && value.contains("file") && value["file"].is_string()) return value["file"];
  const nlohmann::json& text = value.is_object() && value.contains("image_url") ? value["image_url"] : value;
  if (!text.is_string()) throw InvalidRequest(field, "expected base64 image bytes, a data: URL or a file part");
  std::string_view payload = text.get_ref<const std::string&>();
  if (payload.starts_with("data:")) {
    const size_t comma = payload.find(',');
    if (comma == std::string_view::npos || !payload.substr(0, comma).ends_with(";base64"))
      throw InvalidRequest(field, "a data: URL must be base64 (data:image/png;base64,...)");
    payload.remove_prefix(comma + 1);
  }
  std::optional<std::string> bytes = decode_base64(payload);
  if (!bytes) throw InvalidRequest(field, "not base64");
  return std::move(*bytes);
}

// The one place an image enters a request. A model that takes no image is refused here, naming the field the
// image came in; an image-to-video model gets the bytes as a gRPC request would carry them.
void attach_image(const std::string& field, const nlohmann::json& value, v1::GenerateRequest& request,
                  const v1::ListModelsResponse& models) {
  const v1::ModelInfo* model = find_model(models, request.model());
  if (model && !model->takes_image())
    throw InvalidRequest(field, "model '" + model->name() + "' takes no image: it generates video from text only");
  if (!request.image().empty()) throw InvalidRequest(field, "give image or input_reference, not both");
  request.set_image(image_bytes(field, value));
}

// The fewest frames that last `length` seconds at fps, as the model takes them: temporal_factor * k + 1.
int32_t frames_for(double length, int fps, int temporal_factor) {
  const double intervals = std::ceil(length * fps / temporal_factor - 1e-9);
  return int32_t(1 + std::max(1.0, intervals) * temporal_factor);
}

void set_field(const std::string& field, Kind kind, const nlohmann::json& value, v1::GenerateRequest& request) {
  switch (kind) {
    case Kind::text: {
      const std::string string = text(field, value);
      if (field == "model") request.set_model(string);
      else if (field == "prompt") request.set_prompt(string);
      else if (field == "negative_prompt") request.set_negative_prompt(string);
      else if (field == "size") set_size(string, request);
      else request.set_attention_backend(string);
      return;
    }
    case Kind::integer: {
      const int32_t number = integer(field, value);
      if (field == "frames") request.set_frames(number);
      else if (field == "fps") request.set_fps(number);
      else if (field == "preview_every") request.set_preview_every(number);
      else request.set_steps(number);
      return;
    }
    case Kind::seed: request.set_seed(seed(value)); return;
    case Kind::number:
      if (!value.is_number()) wrong_type(field, "a number", value);
      request.set_guidance_scale(value.get<float>());
      return;
    case Kind::boolean:
      if (!value.is_boolean()) wrong_type(field, "true or false", value);
      request.set_dynamic_cfg(value.get<bool>());
      return;
    case Kind::seconds:
    case Kind::image: return;  // after the other fields: they need the model
  }
}

}  // namespace

v1::GenerateRequest video_request_from_json(const nlohmann::json& body, const v1::ListModelsResponse& models) {
  if (!body.is_object())
    throw InvalidRequest("request", std::string("expected a JSON object, got ") + body.type_name());
  v1::GenerateRequest request;
  request.set_output(v1::OUTPUT_FORMAT_MP4_H264);
  for (const auto& [field, value] : body.items()) {
    const auto known = fields().find(field);
    if (known == fields().end()) throw InvalidRequest(field, "unknown field (the fields are: " + field_names() + ")");
    if (!value.is_null()) set_field(field, known->second, value, request);  // null: as if absent
  }
  for (const char* field : {"image", "input_reference"})
    if (body.contains(field) && !body[field].is_null()) attach_image(field, body[field], request, models);
  if (body.contains("seconds") && !body["seconds"].is_null()) {
    const double length = seconds(body["seconds"]);
    if (request.frames() != 0) throw InvalidRequest("seconds", "give seconds or frames, not both");
    if (const v1::ModelInfo* model = find_model(models, request.model()))
      request.set_frames(frames_for(length, request.fps() > 0 ? request.fps() : model->default_fps(),
                                    std::max(1, model->temporal_factor())));
  }
  return request;
}

nlohmann::json form_file_value(const std::string& field, const std::string& content) {
  const auto known = fields().find(field);
  if (known != fields().end() && known->second == Kind::image) return {{"file", content}};
  return content;
}

nlohmann::json form_field_value(const std::string& field, const std::string& text) {
  const auto known = fields().find(field);
  if (known == fields().end() || known->second == Kind::text || known->second == Kind::image) return text;
  const nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(text) : parsed;
}

std::string clip_seconds(int64_t frames, int fps) {
  return fmt::format("{:g}", fps > 0 ? double(std::max<int64_t>(frames - 1, 0)) / fps : 0.0);
}

}  // namespace sagevid
