#include "http_video_api.h"

#include "generation_service.h"
#include "http_listener.h"
#include "video_relay.h"
#include "video_request_json.h"
#include "video_store.h"

#include "sagevid/models/pipeline.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>

namespace sagevid {
namespace {

using nlohmann::json;

// Each content download and each poll holds a pool thread while it is served; a download of a video still
// being made holds it until the video ends.
HttpListenerOptions api_listener_options(const HttpApiConfig& config) {
  return {.name = "http",
          .threads = 32,
          .read_timeout = std::chrono::seconds(10),
          .write_timeout = std::chrono::seconds(30),
          .keep_alive_seconds = 5,
          .max_body_bytes = std::size_t(config.max_body_bytes)};
}
constexpr std::size_t kReadBytes = std::size_t(1) << 16;  // a content download's reads from the file
constexpr auto kGrowthWait = std::chrono::milliseconds(100);  // a download of a running video checks this often

json error_body(const std::string& message, const std::string& type, const json& param, const json& code) {
  return {{"error", {{"message", message}, {"type", type}, {"param", param}, {"code", code}}}};
}

void send_json(httplib::Response& response, int status, const json& body) {
  response.status = status;
  response.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& response, int status, const std::string& message, const json& param = nullptr,
                const json& code = nullptr) {
  send_json(response, status,
            error_body(message, status >= 500 ? "server_error" : "invalid_request_error", param, code));
}

// A refused request as the gRPC call would have ended, in HTTP's terms; a message that starts with a field's
// name ("steps: ...") names it as the error's param. width and height come from the request's size.
void send_refusal(httplib::Response& response, const grpc::Status& status) {
  const std::string& message = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT: {
      const std::string field = message.substr(0, message.find(": "));
      const bool named = field.size() < message.size() && field.find(' ') == std::string::npos && field != "request";
      if (!named) return send_error(response, 400, message);
      return send_error(response, 400, message, field == "width" || field == "height" ? "size" : field,
                        "invalid_field");
    }
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return send_error(response, 429, message, nullptr, "resource_exhausted");
    case grpc::StatusCode::UNAVAILABLE: return send_error(response, 503, message, nullptr, "unavailable");
    default: return send_error(response, 500, message, nullptr, "internal");
  }
}

void send_unknown(httplib::Response& response, const std::string& id) {
  send_error(response, 404, "no video '" + id + "' (never made, deleted, or expired)", "video_id", "not_found");
}

const char* status_name(VideoState::Status status) {
  switch (status) {
    case VideoState::Status::queued: return "queued";
    case VideoState::Status::in_progress: return "in_progress";
    case VideoState::Status::completed: return "completed";
    case VideoState::Status::failed: return "failed";
  }
  return "failed";
}

// OpenAI's video object; seed is ours.
json video_json(const VideoState& video) {
  const auto time_or_null = [](int64_t seconds) { return seconds ? json(seconds) : json(nullptr); };
  return {{"id", video.id},
          {"object", "video"},
          {"model", video.model},
          {"status", status_name(video.status)},
          {"progress", video.progress},
          {"created_at", video.created_at},
          {"completed_at", time_or_null(video.completed_at)},
          {"expires_at", time_or_null(video.expires_at)},
          {"prompt", video.prompt},
          {"size", video.size},
          {"seconds", video.seconds},
          {"seed", video.seed ? json(*video.seed) : json(nullptr)},
          {"preview_step", video.preview_step ? json(video.preview_step) : json(nullptr)},
          {"remixed_from_video_id", nullptr},
          {"error", video.error_message.empty() ? json(nullptr)
                                                : json{{"code", video.error_code}, {"message", video.error_message}}}};
}

// The body as JSON: the object itself, or a multipart form's fields with their JSON types.
json request_json(const httplib::Request& request) {
  if (!request.is_multipart_form_data()) return json::parse(request.body);
  json body = json::object();
  for (const auto& [name, part] : request.files)
    body[name] = part.filename.empty() ? form_field_value(name, part.content) : form_file_value(name, part.content);
  return body;
}

}  // namespace

struct HttpVideoApi::Impl {
  Impl(const ServerConfig& config, GenerationService& service, std::shared_ptr<const BearerTokens> tokens);

  void create(const httplib::Request& request, httplib::Response& response);
  void retrieve(const std::string& id, httplib::Response& response);
  void content(const httplib::Request& request, const std::string& id, httplib::Response& response);
  void remove(const std::string& id, httplib::Response& response);
  void preview(const std::string& id, httplib::Response& response);
  void models(httplib::Response& response);
  void route();
  // The video as the request made it: the model's defaults where it left fields out.
  VideoState new_video(const v1::GenerateRequest& request, const v1::ListModelsResponse& models,
                       const std::string& request_id);

  GenerationService& service;
  const int64_t started_at = unix_now();
  VideoStore store;
  VideoRelay relay;       // after store, which it writes to; stops before it
  HttpListener listener;  // last: stops first, so no handler runs while the rest goes
};

HttpVideoApi::Impl::Impl(const ServerConfig& config, GenerationService& service_,
                         std::shared_ptr<const BearerTokens> tokens)
    : service(service_),
      store(config.http.storage_dir, config.http.retention_seconds, uint64_t(config.http.max_stored_bytes)),
      relay(store),
      listener(api_listener_options(config.http), config.tls, std::move(tokens),
               error_body("a valid 'Authorization: Bearer <token>' header is required", "invalid_request_error",
                          nullptr, "invalid_api_key")
                   .dump(),
               "application/json") {
  route();
  const std::size_t colon = config.http.address.rfind(':');  // the config checked the host:port form
  listener.start(config.http.address.substr(0, colon), std::stoi(config.http.address.substr(colon + 1)));
}

void HttpVideoApi::Impl::route() {
  httplib::Server& server = listener.server();
  server.Post("/v1/videos",
              [this](const httplib::Request& request, httplib::Response& response) { create(request, response); });
  server.Get(R"(/v1/videos/([^/]+))", [this](const httplib::Request& request, httplib::Response& response) {
    retrieve(request.matches[1], response);
  });
  server.Get(R"(/v1/videos/([^/]+)/content)", [this](const httplib::Request& request, httplib::Response& response) {
    content(request, request.matches[1], response);
  });
  server.Get(R"(/v1/videos/([^/]+)/preview)", [this](const httplib::Request& request, httplib::Response& response) {
    preview(request.matches[1], response);
  });
  server.Delete(R"(/v1/videos/([^/]+))", [this](const httplib::Request& request, httplib::Response& response) {
    remove(request.matches[1], response);
  });
  server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& response) { models(response); });
  // httplib's own errors (no such route, a body over the limit) in the API's shape; ours have a body already.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& request, httplib::Response& response) {
        if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        if (response.status == 413) send_error(response, 413, "the request body is over server.http.max_body_bytes");
        else if (response.status == 404) send_error(response, 404, "no route " + request.method + " " + request.path);
        else
          send_error(response, response.status,
                     "the request could not be served (HTTP " + std::to_string(response.status) + ")");
        return httplib::Server::HandlerResponse::Handled;
      }));
}

void HttpVideoApi::Impl::create(const httplib::Request& request, httplib::Response& response) {
  const std::string type = request.get_header_value("Content-Type");
  if (!type.starts_with("application/json") && !request.is_multipart_form_data()) {
    service.refuse_detached({grpc::StatusCode::INVALID_ARGUMENT, "request: not JSON or a multipart form"});
    return send_error(response, 415, "expected a body of type application/json or multipart/form-data");
  }
  v1::ListModelsResponse models;
  if (const grpc::Status listed = service.ListModels(nullptr, nullptr, &models); !listed.ok())
    return send_refusal(response, service.refuse_detached(listed));
  v1::GenerateRequest generate;
  try {
    generate = video_request_from_json(request_json(request), models);
  } catch (const json::exception& e) {
    const std::string message = std::string("request: not valid JSON: ") + e.what();
    service.refuse_detached({grpc::StatusCode::INVALID_ARGUMENT, message});
    return send_error(response, 400, message, nullptr, "invalid_json");
  } catch (const InvalidRequest& e) {
    return send_refusal(response, service.refuse_detached({grpc::StatusCode::INVALID_ARGUMENT, e.what()}));
  }
  const GenerationService::Detached started = service.start_detached(generate);
  if (!started.status.ok()) return send_refusal(response, started.status);
  VideoState video = new_video(generate, models, started.job->request_id());
  store.add(video);
  relay.add(video.id, started.job);
  send_json(response, 200, video_json(video));
}

VideoState HttpVideoApi::Impl::new_video(const v1::GenerateRequest& request, const v1::ListModelsResponse& models,
                                         const std::string& request_id) {
  const v1::ModelInfo* model = &models.models(0);  // admission found the model: the only one, or by its name
  for (const v1::ModelInfo& info : models.models())
    if (info.name() == request.model()) model = &info;
  const auto or_default = [](int32_t value, int32_t fallback) { return value ? value : fallback; };
  VideoState video;
  video.id = "video_" + request_id;  // the server's log lines about it carry the request id
  video.model = model->name();
  video.prompt = request.prompt();
  video.size = std::to_string(or_default(request.width(), model->default_width())) + "x" +
               std::to_string(or_default(request.height(), model->default_height()));
  video.seconds = clip_seconds(or_default(request.frames(), model->default_frames()),
                               or_default(request.fps(), model->default_fps()));
  video.created_at = unix_now();
  return video;
}

void HttpVideoApi::Impl::retrieve(const std::string& id, httplib::Response& response) {
  const std::optional<VideoState> video = store.find(id);
  if (!video) return send_unknown(response, id);
  send_json(response, 200, video_json(*video));
}

// A finished video is sent whole with its length; a queued or running one as it grows, in HTTP chunks, until
// it ends (a failed or cancelled one breaks the transfer off, so the client sees it incomplete).
void HttpVideoApi::Impl::content(const httplib::Request& request, const std::string& id, httplib::Response& response) {
  if (request.has_param("variant") && request.get_param_value("variant") != "video")
    return send_error(response, 400, "variant: only 'video' is served", "variant", "invalid_field");
  const std::optional<VideoState> video = store.find(id);
  if (!video) return send_unknown(response, id);
  if (video->status == VideoState::Status::failed)
    return send_error(response, 409, "video '" + id + "' failed: " + video->error_message, "video_id", "video_failed");
  // Opened now, so that a deletion during the download does not cut it; a video not begun yet has no file, and
  // its download opens it at the first read.
  auto file = std::make_shared<std::ifstream>(store.file(id), std::ios::binary);
  const auto read = [this, id, file](std::size_t offset, httplib::DataSink& sink, std::size_t length) {
    if (!file->is_open()) file->open(store.file(id), std::ios::binary);
    std::string buffer(std::min(length, kReadBytes), '\0');
    file->clear();
    file->seekg(std::streamoff(offset));
    file->read(buffer.data(), std::streamsize(buffer.size()));
    return file->gcount() > 0 && sink.write(buffer.data(), std::size_t(file->gcount()));
  };
  if (video->status == VideoState::Status::completed) {
    response.set_content_provider(
        video->bytes, "video/mp4",
        [read](std::size_t offset, std::size_t length, httplib::DataSink& sink) { return read(offset, sink, length); });
    return;
  }
  response.set_chunked_content_provider("video/mp4", [this, id, read](std::size_t offset, httplib::DataSink& sink) {
    const std::optional<VideoState> now = store.wait(id, offset, kGrowthWait);
    if (!now || now->status == VideoState::Status::failed) return false;  // gone or failed: cut the transfer
    if (now->bytes > offset) return read(offset, sink, now->bytes - offset);
    if (now->status == VideoState::Status::completed) sink.done();
    return true;
  });
}

// The latest preview of a video made with preview_every, as a PNG.
void HttpVideoApi::Impl::preview(const std::string& id, httplib::Response& response) {
  if (!store.find(id)) return send_unknown(response, id);
  const std::optional<std::string> png = store.preview(id);
  if (!png)
    return send_error(response, 404, "video '" + id + "' has no preview yet (previews come with preview_every)",
                      "video_id", "no_preview");
  response.set_content(*png, "image/png");
}

// OpenAI's delete; for a video still queued or running it is the cancel, which the job obeys within a step.
void HttpVideoApi::Impl::remove(const std::string& id, httplib::Response& response) {
  relay.cancel(id);
  if (!store.remove(id)) return send_unknown(response, id);
  send_json(response, 200, {{"id", id}, {"object", "video.deleted"}, {"deleted", true}});
}

// OpenAI's model list, with what a request needs to know of each model beside it.
void HttpVideoApi::Impl::models(httplib::Response& response) {
  v1::ListModelsResponse models;
  if (const grpc::Status listed = service.ListModels(nullptr, nullptr, &models); !listed.ok())
    return send_refusal(response, listed);
  json data = json::array();
  for (const v1::ModelInfo& model : models.models())
    data.push_back(
        {{"id", model.name()},
         {"object", "model"},
         {"created", started_at},
         {"owned_by", "sagevid"},
         {"default_size", std::to_string(model.default_width()) + "x" + std::to_string(model.default_height())},
         {"default_frames", model.default_frames()},
         {"default_fps", model.default_fps()},
         {"default_steps", model.default_steps()},
         {"default_guidance_scale", model.default_guidance_scale()},
         {"spatial_factor", model.spatial_factor()},
         {"temporal_factor", model.temporal_factor()},
         {"takes_image", model.takes_image()}});
  send_json(response, 200, {{"object", "list"}, {"data", data}});
}

HttpVideoApi::HttpVideoApi(const ServerConfig& config, GenerationService& service,
                           std::shared_ptr<const BearerTokens> tokens)
    : impl_(std::make_unique<Impl>(config, service, std::move(tokens))) {}

HttpVideoApi::~HttpVideoApi() = default;

int HttpVideoApi::port() const { return impl_->listener.port(); }

}  // namespace sagevid
