// The real service on CUDA: `sagevid serve` (the binary) with the tiny model on the GPU in bf16, one streamed
// Generate from admission to the last chunk, the video decoded back, and a clean SIGTERM shutdown. The CPU
// suites cover the service's logic; this covers its GPU path: the device worker, CUDA memory checks and
// status, and a video encoded from frames that came off the device.
#include "catch.h"
#include "integration/server_process.h"
#include "integration/video_decoding.h"
#include "test_random.h"

using namespace sagevid::test;

TEST_CASE("sagevid serve on CUDA streams one video end to end and drains on SIGTERM", "[gpu][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  // The tiny model's head dims are not sage2's: its attention falls back to cuDNN, as the GPU config's does.
  ServerProcess server = serve_tiny(address, {"models.0.device=cuda", "models.0.dtype=bfloat16",
                                              "attention.backend=sage2", "attention.fallback=cudnn"});
  const auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  const auto stub = v1::VideoGeneration::NewStub(channel);

  v1::GenerateRequest request = small_request(draw, 4);
  request.set_frames(17);  // two VAE batches: a chunk goes out before the last batch is decoded
  const GenerateResult result = generate(*stub, request);
  CAPTURE(result.status.error_message());
  REQUIRE(result.status.ok());
  const v1::GenerateEvent* started = result.first(v1::GenerateEvent::kStarted);
  REQUIRE(started);
  CHECK(started->started().attention_backend() == "sage2");
  int denoise_steps = 0;
  uint64_t offset = 0;
  for (const v1::GenerateEvent& event : result.events) {
    if (event.has_progress() && event.progress().phase() == v1::PHASE_DENOISE) ++denoise_steps;
    if (!event.has_chunk()) continue;
    CHECK(event.chunk().offset() == offset);
    offset += event.chunk().data().size();
  }
  CHECK(denoise_steps == 4);
  REQUIRE(result.events.back().has_completed());
  const v1::Completed& completed = result.events.back().completed();
  const std::string video = result.video();
  CHECK(completed.bytes() == video.size());
  CHECK(completed.times().denoise_seconds() > 0);
  const DecodedVideo decoded = decode_video(video);
  CHECK(decoded.codec == "h264");
  CHECK(decoded.rgb.size() == 17);
  CHECK(decoded.width == 96);
  CHECK(decoded.height == 64);

  grpc::ClientContext context;
  v1::ServerStatus status;
  REQUIRE(stub->GetStatus(&context, {}, &status).ok());
  CHECK(status.device() == "cuda");
  CHECK(status.gpu_memory_used_bytes() > 0);  // the device's memory, read through CUDA
  CHECK(status.gpu_memory_total_bytes() >= status.gpu_memory_used_bytes());

  REQUIRE(kill(server.pid, SIGTERM) == 0);
  CHECK(wait_exit(server.pid) == 0);
}
