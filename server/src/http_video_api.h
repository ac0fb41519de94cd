#pragma once
// The OpenAI-style video API over HTTP, beside gRPC on its own port (server.http):
//   POST /v1/videos                 start a video (JSON or multipart form; video_request_json.h)
//   GET /v1/videos/{id}             its state: queued, in_progress (progress by denoising step), completed, failed
//   GET /v1/videos/{id}/content     its MP4; while it is being made, streamed as it grows
//   GET /v1/videos/{id}/preview     the latest preview (PNG) of a video made with preview_every
//   DELETE /v1/videos/{id}          cancel it (queued or running) or delete it (finished)
//   GET /v1/models                  the models served
// Jobs go through the generation service's start_detached(): the same checks, queue, limits, cancellation and
// metrics as the gRPC Generate call. Finished videos are kept as video_store.h says. Errors are OpenAI's
// {"error": {"message", "type", "param", "code"}} objects.
#include "server_config.h"

#include <memory>

namespace sagevid {

class BearerTokens;
class GenerationService;

class HttpVideoApi {
 public:
  // Listens on config.http.address (TLS and tokens as the gRPC side has them); throws std::runtime_error when
  // it cannot. `service` must outlive this.
  HttpVideoApi(const ServerConfig& config, GenerationService& service, std::shared_ptr<const BearerTokens> tokens);
  // Stops listening, cancels the jobs still running and waits for them to end.
  ~HttpVideoApi();
  HttpVideoApi(const HttpVideoApi&) = delete;
  HttpVideoApi& operator=(const HttpVideoApi&) = delete;

  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sagevid
