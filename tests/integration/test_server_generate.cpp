// The gRPC service end to end on a real server with the tiny model: the event stream of a generation, its
// video chunks and timings, defaults, determinism, and request validation.
#include "catch.h"
#include "test_random.h"
#include "integration/http_get.h"
#include "test_server_support.h"

#include <cmath>
#include <limits>
#include <optional>

using namespace sagevid::test;
using Kind = v1::GenerateEvent::EventCase;

TEST_CASE("generate streams queued, started, progress, chunks and completed in order", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  v1::GenerateRequest request = small_request(draw);
  request.clear_seed();  // the server draws one and reports it

  const GenerateResult result = generate(*stub, request);
  REQUIRE(result.status.ok());
  CAPTURE(result.status.error_message());
  const auto& events = result.events;
  REQUIRE(events.size() >= 4);
  REQUIRE(events.front().has_queued());
  CHECK(events.front().queued().position() == 0);
  REQUIRE(events[1].has_started());
  const v1::Started& started = events[1].started();
  CHECK(started.seed() == events.back().completed().seed());
  CHECK(started.attention_backend() == "math");
  CHECK(started.frames() == 9);
  CHECK(started.height() == 64);
  CHECK(started.width() == 96);
  CHECK(started.steps() == 2);
  REQUIRE(events.back().has_completed());
  for (size_t i = 2; i + 1 < events.size(); ++i) CHECK((events[i].has_progress() || events[i].has_chunk()));

  // Chunks: contiguous, at most 1 MiB, only the final one marked last; an MP4 (ftyp box first).
  uint64_t offset = 0;
  int chunks = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (!events[i].has_chunk()) continue;
    const v1::VideoChunk& chunk = events[i].chunk();
    CHECK(chunk.offset() == offset);
    CHECK(chunk.data().size() <= (size_t(1) << 20));
    CHECK(chunk.last() == (i + 2 == events.size()));  // the last chunk comes right before completed
    offset += chunk.data().size();
    ++chunks;
  }
  CHECK(chunks >= 1);
  const std::string video = result.video();
  REQUIRE(video.size() > 8);
  CHECK(video.substr(4, 4) == "ftyp");

  const v1::Completed& completed = events.back().completed();
  CHECK(completed.bytes() == video.size());
  CHECK(completed.frames() == 9);
  CHECK(completed.seed() == started.seed());
  CHECK(completed.attention_backend() == "math");
  CHECK(completed.mime_type() == "video/mp4");
  CHECK(started.request_id().size() >= 8);
  CHECK(completed.request_id() == started.request_id());
  const v1::PhaseTimes& times = completed.times();
  for (double t : {times.queued_seconds(), times.text_encode_seconds(), times.denoise_seconds(), times.decode_seconds(),
                   times.encode_seconds()})
    CHECK(t >= 0);
  CHECK(times.denoise_seconds() > 0);
  CHECK(times.encode_seconds() > 0);
  // The median denoising step is a part of the denoising phase.
  CHECK(times.denoise_step_seconds() > 0);
  CHECK(times.denoise_step_seconds() <= times.denoise_seconds());
  const double parts = times.queued_seconds() + times.text_encode_seconds() + times.denoise_seconds() +
                       times.decode_seconds() + times.encode_seconds();
  CHECK(times.total_seconds() >= parts * 0.99);
  CHECK(times.total_seconds() < parts + 1.0);
}

TEST_CASE("progress runs text-encode, denoise 1..n, then decode and encode up to the frame count",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  const int steps = std::uniform_int_distribution<int>(1, 5)(draw);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  v1::GenerateRequest request = small_request(draw, steps);
  request.set_frames(17);  // 5 latent frames: two VAE batches, so streaming before the last one shows
  const GenerateResult result = generate(*stub, request);
  REQUIRE(result.status.ok());

  std::vector<const v1::Progress*> progress;
  int first_chunk = -1, last_decode = -1;
  for (size_t i = 0; i < result.events.size(); ++i) {
    if (result.events[i].has_progress()) progress.push_back(&result.events[i].progress());
    if (result.events[i].has_chunk() && first_chunk < 0) first_chunk = int(i);
    if (result.events[i].has_progress() && result.events[i].progress().phase() == v1::PHASE_DECODE)
      last_decode = int(i);
  }
  REQUIRE(progress.size() >= size_t(2 + steps + 2));
  CHECK(progress[0]->phase() == v1::PHASE_TEXT_ENCODE);
  CHECK(progress[0]->step() == 0);
  CHECK(progress[1]->phase() == v1::PHASE_TEXT_ENCODE);
  CHECK(progress[1]->step() == 1);
  for (int i = 0; i < steps; ++i) {
    CHECK(progress[size_t(2 + i)]->phase() == v1::PHASE_DENOISE);
    CHECK(progress[size_t(2 + i)]->step() == i + 1);
    CHECK(progress[size_t(2 + i)]->total() == steps);
  }
  int decoded = 0, encoded = 0;
  for (size_t i = size_t(2 + steps); i < progress.size(); ++i) {
    const v1::Progress& p = *progress[i];
    CHECK(p.total() == 17);
    if (p.phase() == v1::PHASE_DECODE) {
      CHECK(p.step() > decoded);
      decoded = p.step();
    } else {
      REQUIRE(p.phase() == v1::PHASE_ENCODE);
      CHECK(p.step() > encoded);
      CHECK(p.step() <= decoded);  // a batch is encoded after it is decoded
      encoded = p.step();
    }
  }
  CHECK(decoded == 17);
  CHECK(encoded == 17);
  for (size_t i = 1; i < progress.size(); ++i)
    CHECK(progress[i]->elapsed_seconds() >= progress[i - 1]->elapsed_seconds());
  // The video streams while it is made: the first bytes go out before the last batch is decoded.
  CHECK(first_chunk >= 0);
  CHECK(first_chunk < last_decode);
}

TEST_CASE("preview_every sends a PNG preview after the progress of every n-th step", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  v1::GenerateRequest request = small_request(draw, 5);
  request.set_preview_every(2);
  const GenerateResult result = generate(*stub, request);
  REQUIRE(result.status.ok());
  std::vector<int> steps;
  int last_step = 0;  // of the progress events so far
  for (const v1::GenerateEvent& event : result.events) {
    if (event.has_progress() && event.progress().phase() == v1::PHASE_DENOISE) last_step = event.progress().step();
    if (!event.has_preview()) continue;
    const v1::Preview& preview = event.preview();
    steps.push_back(preview.step());
    CHECK(preview.step() == last_step);
    CHECK(preview.total() == 5);
    CHECK((preview.width() == 96 && preview.height() == 64));
    REQUIRE(preview.png().size() > 33);
    CHECK(preview.png().substr(0, 8) == "\x89PNG\r\n\x1a\n");
    CHECK(preview.png().substr(12, 4) == "IHDR");
    CHECK(preview.png().substr(16, 8) == std::string("\0\0\0\x60\0\0\0\x40", 8));  // 96 x 64
  }
  CHECK(steps == std::vector<int>{2, 4});
  request.clear_preview_every();
  CHECK_FALSE(generate(*stub, request).first(v1::GenerateEvent::kPreview));
}

TEST_CASE("a seed reproduces its video (0 too), an absent seed is drawn and reported, raw frames have their size",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  v1::GenerateRequest request = small_request(draw);
  request.set_output(v1::OUTPUT_FORMAT_RGB_FRAMES);
  const auto run = [&](std::optional<uint64_t> seed) {
    if (seed) request.set_seed(*seed);
    else request.clear_seed();
    GenerateResult result = generate(*stub, request);
    REQUIRE(result.status.ok());
    return result;
  };
  const uint64_t seed = draw() | 1;
  const GenerateResult first = run(seed), again = run(seed), other = run(seed + 2);
  CHECK(first.video().size() == size_t(9 * 64 * 96 * 3));
  CHECK(first.first(Kind::kCompleted)->completed().mime_type() != "video/mp4");
  CHECK(first.video() == again.video());
  CHECK(first.video() != other.video());

  const GenerateResult zero = run(0), zero_again = run(0);
  CHECK(zero.video() == zero_again.video());
  for (const GenerateResult* result : {&zero, &zero_again}) {
    CHECK(result->first(Kind::kStarted)->started().seed() == 0);
    CHECK(result->first(Kind::kCompleted)->completed().seed() == 0);
  }
  // Two drawn seeds (53 random bits each) differ; the reported one reproduces its video.
  const GenerateResult drawn = run(std::nullopt), drawn_again = run(std::nullopt);
  const uint64_t drawn_seed = drawn.first(Kind::kCompleted)->completed().seed();
  CHECK(drawn.first(Kind::kStarted)->started().seed() == drawn_seed);
  CHECK(drawn_again.first(Kind::kCompleted)->completed().seed() != drawn_seed);
  CHECK(run(drawn_seed).video() == drawn.video());
}

TEST_CASE("work over the model's cap is RESOURCE_EXHAUSTED naming the numbers", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  // 17 frames of 192 x 192 are 5 x 12 x 12 = 720 latent tokens; the default cap is 4 x 72 x 50 = 14400.
  const std::string cap_key = "models.0.max_latent_token_steps=";
  const int64_t cap = 720 * std::uniform_int_distribution<int64_t>(1, 30)(draw);
  for (const auto& [setting, limit] :
       {std::pair{std::string("null"), int64_t(14400)}, std::pair{std::to_string(cap), cap}}) {
    CAPTURE(setting);
    TestServer server(tiny_config({cap_key + setting}));
    const auto stub = server.stub();
    v1::GenerateRequest request = slow_request(draw);
    request.set_steps(int32_t(limit / 720 + 1));
    const GenerateResult result = generate(*stub, request);
    CHECK(result.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(result.status.error_message(),
               ContainsSubstring("720 latent tokens x " + std::to_string(request.steps()) + " steps") &&
                   ContainsSubstring("limit of " + std::to_string(limit)));
    CHECK(result.events.empty());  // refused before it was queued
  }
}

TEST_CASE("ListModels reports the tiny model's defaults, which 0 fields take", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  grpc::ClientContext context;
  v1::ListModelsResponse models;
  REQUIRE(stub->ListModels(&context, {}, &models).ok());
  REQUIRE(models.models_size() == 1);
  const v1::ModelInfo& tiny = models.models(0);
  CHECK(tiny.name() == "tiny");
  CHECK(tiny.device() == "cpu");
  CHECK(tiny.dtype() == "float32");
  // assets/tiny-cogvideox: transformer sample 8 x 12 latents of a x8 VAE, 9 frames; patch 2.
  CHECK(tiny.default_height() == 64);
  CHECK(tiny.default_width() == 96);
  CHECK(tiny.default_frames() == 9);
  CHECK(tiny.default_steps() == 50);
  CHECK(tiny.default_guidance_scale() == 6.0f);
  CHECK(tiny.default_fps() == 8);
  CHECK(tiny.spatial_factor() == 16);
  CHECK(tiny.temporal_factor() == 8);

  v1::GenerateRequest request = small_request(draw, 1);
  request.clear_frames();
  request.clear_height();
  request.clear_width();
  request.clear_model();  // one model served: the name may be left out
  const GenerateResult result = generate(*stub, request);
  REQUIRE(result.status.ok());
  const v1::Started& started = result.first(Kind::kStarted)->started();
  CHECK(started.frames() == tiny.default_frames());
  CHECK(started.height() == tiny.default_height());
  CHECK(started.width() == tiny.default_width());
}

TEST_CASE("GetStatus reports the queue, the backend choices and the device", "[integration][server]") {
  TestServer server(tiny_config());
  const auto stub = server.stub();
  grpc::ClientContext context;
  v1::ServerStatus status;
  REQUIRE(stub->GetStatus(&context, {}, &status).ok());
  CHECK(status.queue_capacity() == 4);  // configs/tiny.json
  CHECK(status.queue_depth() == 0);
  CHECK(status.device() == "cpu");
  CHECK(status.attention_backend() == "math");
  CHECK(std::vector<std::string>(status.allowed_backends().begin(), status.allowed_backends().end()) ==
        std::vector<std::string>{"sage2", "flash", "cudnn", "math"});
  CHECK(status.gpu_memory_total_bytes() == 0);
}

TEST_CASE("a model on a device group streams its video, and ListModels shows the group", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  sagevid::ServerConfig config = tiny_config();
  config.models[0].devices = {"cpu", "cpu", "cpu", "cpu"};  // ranks as threads, talking through Gloo
  config.models[0].parallel = {2, 2};
  TestServer server(config);
  const auto stub = server.stub();

  grpc::ClientContext list_context;
  v1::ListModelsResponse models;
  REQUIRE(stub->ListModels(&list_context, {}, &models).ok());
  REQUIRE(models.models_size() == 1);
  CHECK(models.models(0).devices_size() == 4);
  CHECK(models.models(0).parallel() == "cfg 2 x ulysses 2 on cpu, cpu, cpu, cpu");
  grpc::ClientContext status_context;
  v1::ServerStatus status;
  REQUIRE(stub->GetStatus(&status_context, {}, &status).ok());
  CHECK(status.device() == "cpu");  // its queue's devices: the CPU ranks share one

  const v1::GenerateRequest request = small_request(draw, 3);
  const GenerateResult result = generate(*stub, request);
  CAPTURE(result.status.error_message());
  REQUIRE(result.status.ok());
  int denoise_steps = 0;
  for (const auto& event : result.events)
    if (event.has_progress() && event.progress().phase() == v1::PHASE_DENOISE) ++denoise_steps;
  CHECK(denoise_steps == 3);  // once each, from rank 0
  REQUIRE(result.events.back().has_completed());
  CHECK(result.events.back().completed().frames() == 9);
  CHECK(result.video().substr(4, 4) == "ftyp");
}

TEST_CASE("each invalid field is refused before queueing, naming the field", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  using Change = std::function<void(v1::GenerateRequest&)>;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<std::tuple<const char*, Change, const char*>> cases = {
      {"unknown model", [](auto& r) { r.set_model("huge"); }, "model: unknown model 'huge'"},
      {"empty prompt", [](auto& r) { r.set_prompt(""); }, "prompt: must not be empty"},
      {"blank prompt", [](auto& r) { r.set_prompt(" \t\r\n "); }, "prompt: must not be empty or only whitespace"},
      {"long prompt", [](auto& r) { r.set_prompt(std::string(8193, 'a')); }, "prompt: 8193 bytes is over"},
      {"long negative", [](auto& r) { r.set_negative_prompt(std::string(9000, 'b')); }, "negative_prompt: 9000 bytes"},
      {"frames form", [](auto& r) { r.set_frames(10); }, "frames: 10 is not 1 + k * 8"},
      {"frames negative", [](auto& r) { r.set_frames(-9); }, "frames: -9 is negative"},
      {"frames too many", [](auto& r) { r.set_frames(25); }, "frames: 25 is more than 17"},
      {"height factor", [](auto& r) { r.set_height(72); }, "height: 72 is not a multiple of 16"},
      {"height range", [](auto& r) { r.set_height(208); }, "height: 208 is outside 16..192"},
      {"width factor", [](auto& r) { r.set_width(100); }, "width: 100 is not a multiple of 16"},
      {"width negative", [](auto& r) { r.set_width(-16); }, "width: -16 is negative"},
      {"steps negative", [](auto& r) { r.set_steps(-1); }, "steps: -1 is negative"},
      {"steps range", [](auto& r) { r.set_steps(1001); }, "steps: 1001 is outside 1..1000"},
      {"guidance nan", [nan](auto& r) { r.set_guidance_scale(nan); }, "guidance_scale: nan is not a finite"},
      {"guidance negative", [](auto& r) { r.set_guidance_scale(-2); }, "guidance_scale: -2"},
      {"guidance range", [](auto& r) { r.set_guidance_scale(250); }, "guidance_scale: 250"},
      {"fps negative", [](auto& r) { r.set_fps(-8); }, "fps: -8 is negative"},
      {"preview negative", [](auto& r) { r.set_preview_every(-2); }, "preview_every: -2 is negative"},
      {"fps range", [](auto& r) { r.set_fps(500); }, "fps: 500 is over 120"},
      {"output", [](auto& r) { r.set_output(v1::OutputFormat(42)); }, "output: unknown output format 42"},
      {"backend name", [](auto& r) { r.set_attention_backend("warp"); }, "attention_backend: "},
      {"backend device", [](auto& r) { r.set_attention_backend("flash"); }, "attention_backend: 'flash' cannot run"},
  };
  for (const auto& [name, change, message] : cases) {
    CAPTURE(name);
    v1::GenerateRequest request = small_request(draw);
    change(request);
    const auto start = std::chrono::steady_clock::now();
    const GenerateResult result = generate(*stub, request);
    CHECK(result.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(result.status.error_message(), ContainsSubstring(message));
    CHECK(result.events.empty());  // refused before it was queued
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  }
}

TEST_CASE("a request that is not a valid GenerateRequest is INVALID_ARGUMENT with a message", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto random_bytes = [&draw](int n, int low, int high) {
    std::string bytes;
    for (int i = 0; i < n; ++i) bytes += char(std::uniform_int_distribution<int>(low, high)(draw));
    return bytes;
  };
  const std::string prompt = random_bytes(std::uniform_int_distribution<int>(8, 60)(draw), 'a', 'z');
  v1::GenerateRequest request = small_request(draw);
  request.set_prompt(prompt);
  const std::string valid = request.SerializeAsString();
  const std::size_t prompt_at = valid.find(prompt);
  REQUIRE(prompt_at != std::string::npos);
  // Field 2 (prompt), length-delimited, with bytes that are not UTF-8 in the middle of plain text.
  const std::string bad_text = prompt + random_bytes(2, 0x80, 0xbf) + prompt;  // continuation bytes, no lead; < 128
  const auto prefixed = [](char first, std::string rest) {
    rest.insert(rest.begin(), first);
    return rest;
  };
  const std::vector<std::pair<const char*, std::string>> cases = {
      // Field 1 with wire type 7, which does not exist, then anything.
      {"garbage", prefixed('\x0f', random_bytes(std::uniform_int_distribution<int>(0, 200)(draw), 0, 255))},
      {"truncated",
       valid.substr(0, prompt_at + std::uniform_int_distribution<std::size_t>(0, prompt.size() - 1)(draw))},
      {"invalid UTF-8", prefixed('\x12', prefixed(char(bad_text.size()), bad_text))},
  };
  for (const auto& [name, bytes] : cases) {
    CAPTURE(name);
    const RawReply reply = raw_unary_call(server.channel(), "/sagevid.v1.VideoGeneration/Generate", bytes);
    CHECK(reply.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(reply.status.error_message(), ContainsSubstring("request: not a valid GenerateRequest"));
  }
  CHECK(generate(*server.stub(), request).status.ok());  // the same bytes, whole, are a request
}

TEST_CASE("a backend the config forbids is refused and the configured one is accepted", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config({"server.allow_request_backend=false"}));
  const auto stub = server.stub();
  v1::GenerateRequest request = small_request(draw, 1);
  request.set_attention_backend("cudnn");
  const GenerateResult refused = generate(*stub, request);
  CHECK(refused.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(refused.status.error_message(), ContainsSubstring("attention_backend: 'cudnn' not allowed"));

  request.set_attention_backend("math");
  const GenerateResult accepted = generate(*stub, request);
  CHECK(accepted.status.ok());
  grpc::ClientContext context;
  v1::ServerStatus status;
  REQUIRE(stub->GetStatus(&context, {}, &status).ok());
  CHECK(std::vector<std::string>(status.allowed_backends().begin(), status.allowed_backends().end()) ==
        std::vector<std::string>{"math"});
}

TEST_CASE("the metrics endpoint counts requests by outcome, phases and steps", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config({"server.metrics_address=\"127.0.0.1:0\""}));
  REQUIRE(server.server().metrics_port() > 0);
  const auto stub = server.stub();
  const int steps = std::uniform_int_distribution<int>(2, 4)(draw);
  REQUIRE(generate(*stub, small_request(draw, steps)).status.ok());
  v1::GenerateRequest bad = small_request(draw);
  bad.set_height(72);
  REQUIRE(generate(*stub, bad).status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  const auto response = sagevid::test::http_get(server.server().metrics_port(), "/metrics");
  REQUIRE(response);
  REQUIRE(response->status == 200);
  const std::string& text = response->body;
  CHECK_THAT(text, ContainsSubstring("sagevid_requests_total{outcome=\"ok\"} 1\n"));
  CHECK_THAT(text, ContainsSubstring("sagevid_requests_total{outcome=\"invalid_argument\"} 1\n"));
  for (const char* phase : {"queued", "text_encode", "denoise", "decode", "encode", "total"})
    CHECK_THAT(text, ContainsSubstring("sagevid_phase_seconds_count{phase=\"" + std::string(phase) + "\"} 1\n"));
  // Step 1's interval includes the text encoder, so it is left out of the step histogram.
  CHECK_THAT(text, ContainsSubstring("sagevid_denoise_step_seconds_count " + std::to_string(steps - 1) + "\n"));
  CHECK_THAT(text, ContainsSubstring("sagevid_queue_depth 0\n"));
}

TEST_CASE("server.metrics_address must be host:port", "[integration][server]") {
  REQUIRE_THROWS_WITH(tiny_config({"server.metrics_address=\"9464\""}),
                      ContainsSubstring("server.metrics_address: '9464': expected host:port"));
  CHECK(tiny_config({"server.metrics_address=\"0.0.0.0:9464\""}).metrics_address == "0.0.0.0:9464");
  CHECK(tiny_config().metrics_address.empty());
}
