#pragma once
// The body of the HTTP API's POST /v1/videos (JSON, or the fields of a multipart form) as the GenerateRequest
// the gRPC API takes, so that both go through the same checks (request_validation.cpp) and the same queue.
// This file checks only what the HTTP form adds: field names, JSON types, "WxH" sizes, and seconds, which
// become frames at the model's frame rate and frame step.
#include "sagevid/v1/sagevid.pb.h"

#include <nlohmann/json.hpp>

#include <string>

namespace sagevid {

// Throws InvalidRequest naming the field: an unknown field, a wrong type, a malformed size, seconds and frames
// both given, an image that is not base64 (or a data: URL, or a file part), or one for a model that takes none.
// `models` is what ListModels says: seconds need the model's fps and temporal factor (an unknown model leaves
// frames at 0; admission then names the model).
v1::GenerateRequest video_request_from_json(const nlohmann::json& body, const v1::ListModelsResponse& models);

// A multipart form field's text as the JSON value that field takes: numbers and booleans are parsed ("8"
// becomes 8), strings stay strings; text that does not parse stays a string, for the type check to name.
nlohmann::json form_field_value(const std::string& field, const std::string& text);
// A multipart file part's bytes as the JSON value its field takes: an image field's as {"file": bytes}, which
// video_request_from_json reads as raw image bytes; any other field's as a string.
nlohmann::json form_file_value(const std::string& field, const std::string& content);

// The clip length a request of `frames` at `fps` makes, as the API reports "seconds": (frames - 1) / fps,
// the inverse of how seconds become frames.
std::string clip_seconds(int64_t frames, int fps);

}  // namespace sagevid
