// The server's life with the tiny model: health while loading, cancel and deadline freeing the worker, the
// full queue, clients that stop reading and the cap on open streams, how each ending is counted, internal
// errors and out of memory, shutdown while busy (in process and by SIGTERM to the binary, twice), a corrupt
// model at start-up.
#include "catch.h"
#include "failing_cpu_allocator.h"
#include "run_command.h"
#include "server_process.h"
#include "test_random.h"
#include "test_server_support.h"

#include <signal.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>
#include <utility>

using namespace sagevid::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

v1::ServerStatus server_status(v1::VideoGeneration::Stub& stub) {
  grpc::ClientContext context;
  v1::ServerStatus status;
  REQUIRE(stub.GetStatus(&context, {}, &status).ok());
  return status;
}

// Waits until GetStatus shows no running job and an empty queue.
bool wait_until_idle(v1::VideoGeneration::Stub& stub, Clock::duration timeout = 10s) {
  const auto end = Clock::now() + timeout;
  while (Clock::now() < end) {
    const v1::ServerStatus status = server_status(stub);
    if (status.running_job().empty() && status.queue_depth() == 0) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// A slow generation on its own thread; `denoising` is set at its first denoising step.
struct Background {
  std::atomic<bool> denoising{false};
  std::atomic<double> step_seconds{0};  // the interval between its first two steps
  std::future<GenerateResult> result;

  Background(v1::VideoGeneration::Stub& stub, v1::GenerateRequest request,
             std::optional<std::chrono::system_clock::time_point> deadline = {}) {
    result = std::async(std::launch::async, [this, &stub, request, deadline] {
      double first_step = -1;
      return generate(
          stub, request,
          [this, &first_step](const v1::GenerateEvent& event, grpc::ClientContext&) {
            if (!event.has_progress() || event.progress().phase() != v1::PHASE_DENOISE) return;
            if (event.progress().step() == 1) first_step = event.progress().elapsed_seconds();
            if (event.progress().step() == 2) step_seconds = event.progress().elapsed_seconds() - first_step;
            denoising = true;
          },
          deadline);
    });
  }
  bool wait_denoising(Clock::duration timeout = 30s) const {
    const auto end = Clock::now() + timeout;
    while (!denoising && Clock::now() < end) std::this_thread::sleep_for(2ms);
    return denoising;
  }
};

// A slow generation that the test cancels with cancel(). The reading thread cancels its own call at the next
// event: TryCancel from another thread while this one is blocked in Read is not documented as safe, and its
// context ends with the call.
struct Cancellable {
  std::atomic<int> denoise_step{0};
  std::atomic<bool> cancel_requested{false};
  std::future<GenerateResult> result;

  Cancellable(v1::VideoGeneration::Stub& stub, v1::GenerateRequest request) {
    result = std::async(std::launch::async, [this, &stub, request] {
      return generate(stub, request, [this](const v1::GenerateEvent& event, grpc::ClientContext& context) {
        if (cancel_requested) context.TryCancel();
        if (event.has_progress() && event.progress().phase() == v1::PHASE_DENOISE)
          denoise_step = event.progress().step();
      });
    });
  }
  bool wait_step(int step, Clock::duration timeout = 30s) const {
    const auto end = Clock::now() + timeout;
    while (denoise_step < step && Clock::now() < end) std::this_thread::sleep_for(2ms);
    return denoise_step >= step;
  }
  void cancel() { cancel_requested = true; }
};

}  // namespace

TEST_CASE("health says NOT_SERVING until the models are loaded, then SERVING", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config(), /*load=*/false);
  CHECK(health_status(server.channel()) == kNotServing);
  const auto stub = server.stub();
  const GenerateResult early = generate(*stub, small_request(draw));
  CHECK(early.status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(early.status.error_message(), ContainsSubstring("loading"));
  grpc::ClientContext context;
  v1::ListModelsResponse models;
  CHECK(stub->ListModels(&context, {}, &models).error_code() == grpc::StatusCode::UNAVAILABLE);

  server.server().load_models();
  CHECK(health_status(server.channel()) == kServing);
  CHECK(generate(*stub, small_request(draw, 1)).status.ok());
}

TEST_CASE("a client cancel stops the job within a step and the next job starts", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  Cancellable slow(*stub, slow_request(draw));
  REQUIRE(slow.wait_step(2));

  // The next request queues behind the slow one.
  std::atomic<bool> next_started{false};
  Clock::time_point next_started_at;
  auto next = std::async(std::launch::async, [&] {
    return generate(*stub, small_request(draw), [&](const v1::GenerateEvent& event, grpc::ClientContext&) {
      if (event.has_started()) {
        next_started_at = Clock::now();
        next_started = true;
      }
    });
  });
  while (server_status(*stub).queue_depth() != 1) std::this_thread::sleep_for(2ms);
  CHECK_FALSE(next_started);

  const auto cancelled_at = Clock::now();
  slow.cancel();
  const GenerateResult slow_result = slow.result.get();
  CHECK(slow_result.status.error_code() == grpc::StatusCode::CANCELLED);
  const GenerateResult next_result = next.get();
  REQUIRE(next_result.status.ok());
  REQUIRE(next_started);
  // The cancel goes out with the next step's event and the job stops before the step after: two steps, plus
  // slack (a step of the slow job takes longer than the slack).
  double step = 0;
  for (const auto& event : slow_result.events)
    if (event.has_progress() && event.progress().phase() == v1::PHASE_DENOISE && event.progress().step() == 2)
      step = event.progress().elapsed_seconds();
  CAPTURE(step, seconds(next_started_at - cancelled_at));
  CHECK(seconds(next_started_at - cancelled_at) < 2 * step + 0.5);
  CHECK(next_result.first(v1::GenerateEvent::kQueued)->queued().position() == 1);
}

TEST_CASE("a waiting job is told its new position each time the queue moves", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config({"server.queue_size=2"}));
  const auto stub = server.stub();
  Cancellable running(*stub, slow_request(draw));
  REQUIRE(running.wait_step(1));
  const v1::GenerateRequest second_request = small_request(draw), third_request = small_request(draw);
  auto second = std::async(std::launch::async, [&] { return generate(*stub, second_request); });
  while (server_status(*stub).queue_depth() != 1) std::this_thread::sleep_for(2ms);
  auto third = std::async(std::launch::async, [&] { return generate(*stub, third_request); });
  while (server_status(*stub).queue_depth() != 2) std::this_thread::sleep_for(2ms);

  running.cancel();  // the running job leaves: the second starts, the third moves up to 1
  CHECK(running.result.get().status.error_code() == grpc::StatusCode::CANCELLED);
  const GenerateResult second_result = second.get(), third_result = third.get();
  REQUIRE(second_result.status.ok());
  REQUIRE(third_result.status.ok());
  const auto positions = [](const GenerateResult& result) {
    std::vector<int> list;
    for (const auto& event : result.events)
      if (event.has_queued()) list.push_back(event.queued().position());
    return list;
  };
  CHECK(positions(second_result) == std::vector<int>{1});
  CHECK(positions(third_result) == std::vector<int>{2, 1});
  // Every Queued event comes before the job starts.
  const auto started = [](const GenerateResult& result) {
    return std::find_if(result.events.begin(), result.events.end(), [](const auto& e) { return e.has_started(); });
  };
  CHECK(std::none_of(started(third_result), third_result.events.end(), [](const auto& e) { return e.has_queued(); }));
}

TEST_CASE("a deadline ends the job with DEADLINE_EXCEEDED and frees the worker", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  const auto start = Clock::now();
  Background slow(*stub, slow_request(draw), std::chrono::system_clock::now() + 1500ms);
  const GenerateResult result = slow.result.get();
  CHECK(result.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(seconds(Clock::now() - start) < 5);
  CHECK(result.first(v1::GenerateEvent::kStarted) != nullptr);  // it was running, not refused
  CHECK(wait_until_idle(*stub, 5s));
  CHECK(generate(*stub, small_request(draw, 1)).status.ok());
}

TEST_CASE("a full queue or server.max_streams open streams answer RESOURCE_EXHAUSTED at once",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  std::string limit, message;  // one job runs and one waits: either limit is then reached
  SECTION("the queue") {
    limit = "server.queue_size=1";
    message = "full";
  }
  SECTION("the open streams (the queue has room)") {
    limit = "server.max_streams=2";
    message = "too many open streams (server.max_streams = 2)";
  }
  TestServer server(tiny_config({limit}));
  const auto stub = server.stub();
  const auto deadline = std::chrono::system_clock::now() + 60s;  // the slow jobs end at the server's shutdown
  Background running(*stub, slow_request(draw), deadline);
  REQUIRE(running.wait_denoising());
  Background waiting(*stub, slow_request(draw), deadline);
  while (server_status(*stub).queue_depth() != 1) std::this_thread::sleep_for(2ms);

  const auto start = Clock::now();
  const GenerateResult refused = generate(*stub, small_request(draw));
  CHECK(seconds(Clock::now() - start) < 1);
  CHECK(refused.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(refused.status.error_message(), ContainsSubstring(message));
  CHECK(refused.events.empty());

  server.server().shutdown(0);  // cancels both: the running one at its next step, the waiting one at once
  CHECK(running.result.get().status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(waiting.result.get().status.error_code() == grpc::StatusCode::UNAVAILABLE);
}

TEST_CASE("shutdown refuses new calls, lets running work finish within the drain, then cancels",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);

  SECTION("work that fits the drain completes") {
    TestServer server(tiny_config());
    const auto stub = server.stub();
    Background job(*stub, small_request(draw, 20));
    REQUIRE(job.wait_denoising());
    std::thread stopper([&] { server.server().shutdown(30); });
    const GenerateResult result = job.result.get();
    stopper.join();
    CHECK(result.status.ok());
    CHECK(result.first(v1::GenerateEvent::kCompleted) != nullptr);
  }

  SECTION("work beyond the drain is cancelled with UNAVAILABLE; new calls are refused meanwhile") {
    TestServer server(tiny_config());
    const auto stub = server.stub();
    Background job(*stub, slow_request(draw));
    REQUIRE(job.wait_denoising());
    const auto start = Clock::now();
    std::thread stopper([&] { server.server().shutdown(1.0); });
    while (health_status(server.channel()) == kServing) std::this_thread::sleep_for(2ms);
    const GenerateResult refused = generate(*stub, small_request(draw));
    CHECK(refused.status.error_code() == grpc::StatusCode::UNAVAILABLE);
    const GenerateResult result = job.result.get();
    stopper.join();
    CHECK(result.status.error_code() == grpc::StatusCode::UNAVAILABLE);
    CHECK_THAT(result.status.error_message(), ContainsSubstring("shutting down"));
    const double took = seconds(Clock::now() - start);
    CHECK(took >= 1.0);
    CHECK(took < 6.0);
  }
}

TEST_CASE(
    "a failing job ends alone: out of memory of any kind is RESOURCE_EXHAUSTED and an internal error "
    "a short message with the request id",
    "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config());
  const auto stub = server.stub();
  using Failure = FailingCpuAllocator::Failure;
  Failure failure = Failure::out_of_memory;
  SECTION("torch's out of memory") {}
  SECTION("the host's std::bad_alloc") { failure = Failure::bad_alloc; }
  SECTION("an internal error with a backtrace") { failure = Failure::internal_error; }
  FailingCpuAllocator allocator;
  // Anywhere in the job: the tiny model's smallest request allocates thousands of tensors.
  const int64_t nth = std::uniform_int_distribution<int64_t>(1, 400)(draw);
  CAPTURE(nth);
  allocator.arm(nth, failure);
  const GenerateResult failed = generate(*stub, small_request(draw));
  allocator.arm(0);
  REQUIRE(allocator.fired());
  const v1::GenerateEvent* started = failed.first(v1::GenerateEvent::kStarted);
  REQUIRE(started != nullptr);  // it ran, it was not refused
  CHECK(failed.first(v1::GenerateEvent::kCompleted) == nullptr);
  const std::string& message = failed.status.error_message();
  CAPTURE(message);
  if (failure == Failure::internal_error) {
    CHECK(failed.status.error_code() == grpc::StatusCode::INTERNAL);
    const std::string& id = started->started().request_id();
    REQUIRE(id.size() >= 8);
    CHECK_THAT(message, ContainsSubstring("request " + id));
    CHECK(message.size() < 200);
    CHECK_THAT(message, !ContainsSubstring("injected") && !ContainsSubstring("/") && !ContainsSubstring("frame #"));
  } else {
    CHECK(failed.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    CHECK_THAT(message, ContainsSubstring("out of memory on cpu"));
  }

  CHECK(wait_until_idle(*stub, 30s));  // at once on a quiet machine; a loaded one needs longer
  const GenerateResult next = generate(*stub, small_request(draw));
  CHECK(next.status.ok());
  CHECK(next.first(v1::GenerateEvent::kCompleted) != nullptr);
}

namespace {

// One denoising step, raw RGB frames out: frames x side x side x 3 bytes of video, far beyond an HTTP/2
// receive window.
v1::GenerateRequest raw_frames_request(std::mt19937_64& draw, int frames, int side) {
  v1::GenerateRequest request = small_request(draw, 1);
  request.set_frames(frames);
  request.set_height(side);
  request.set_width(side);
  request.set_output(v1::OUTPUT_FORMAT_RGB_FRAMES);
  return request;
}

// A client that sends its request and never reads: with BDP probing off its receive window stays small, so
// the server's writes block once the window is full.
struct StalledClient {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::VideoGeneration::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader;

  StalledClient(int port, const v1::GenerateRequest& request) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    arguments.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // its own connection
    channel =
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), arguments);
    stub = v1::VideoGeneration::NewStub(channel);
    reader = stub->Generate(&context, request);
  }
  ~StalledClient() {
    context.TryCancel();
    reader->Finish();
  }
};

// Waits until the server has counted `count` requests with this outcome.
bool wait_for_outcome(int metrics_port, const std::string& outcome, int count, Clock::duration timeout) {
  const auto end = Clock::now() + timeout;
  while (requests_with_outcome(metrics_port, outcome) < count && Clock::now() < end) std::this_thread::sleep_for(20ms);
  return requests_with_outcome(metrics_port, outcome) >= count;
}

}  // namespace

TEST_CASE("a client that stops reading is ended at the write timeout and counted stalled while others are served",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config({"server.write_timeout_seconds=1", "server.metrics_address=\"127.0.0.1:0\""}));
  const int metrics = server.server().metrics_port();
  const auto stub = server.stub();
  {
    StalledClient stalled(server.server().port(), raw_frames_request(draw, 9, 128));
    REQUIRE(wait_for_outcome(metrics, "stalled", 1, 60s));
    CHECK(requests_with_outcome(metrics, "ok") == 0);  // it did not get its video
    CHECK(wait_until_idle(*stub));
  }
  const GenerateResult next = generate(*stub, small_request(draw));
  CHECK(next.status.ok());
  CHECK(requests_with_outcome(metrics, "ok") == 1);
  CHECK(requests_with_outcome(metrics, "stalled") == 1);
}

TEST_CASE("past server.max_stream_buffer_bytes a stream that is not read ends before the write timeout",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  TestServer server(tiny_config({"server.write_timeout_seconds=600", "server.max_stream_buffer_bytes=1048576",
                                 "server.metrics_address=\"127.0.0.1:0\""}));
  const int metrics = server.server().metrics_port();
  const auto stub = server.stub();
  {
    // 1.6 MB: beyond the cap by more than the client's receive window holds.
    StalledClient stalled(server.server().port(), raw_frames_request(draw, 17, 176));
    REQUIRE(wait_for_outcome(metrics, "stalled", 1, 60s));
    CHECK(wait_until_idle(*stub));
  }
  // A client that reads gets as much video through the same cap.
  const GenerateResult read = generate(*stub, raw_frames_request(draw, 17, 176));
  CHECK(read.status.ok());
  CHECK(read.video().size() == 17u * 176 * 176 * 3);
}

TEST_CASE("deadline expiries are counted deadline_exceeded, not cancelled", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  // A queue of five: on a loaded machine the worker may not have taken the first job before the fifth arrives.
  TestServer server(tiny_config({"server.metrics_address=\"127.0.0.1:0\"", "server.queue_size=5"}));
  const auto stub = server.stub();
  // Between 10 and 100 s gRPC sends the timeout rounded up to 100 ms, so the server's deadline comes up to
  // that much after the client's, which ends the call first: one running job and four waiting ones.
  std::vector<std::unique_ptr<Background>> calls;
  for (int i = 0; i < 5; ++i) {
    const auto offset = 10s + std::chrono::milliseconds(std::uniform_int_distribution<int>(1, 90)(draw));
    calls.push_back(std::make_unique<Background>(*stub, slow_request(draw), std::chrono::system_clock::now() + offset));
  }
  for (auto& call : calls) CHECK(call->result.get().status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  const int metrics = server.server().metrics_port();
  CHECK(wait_for_outcome(metrics, "deadline_exceeded", 5, 10s));
  CHECK(requests_with_outcome(metrics, "deadline_exceeded") == 5);
  CHECK(requests_with_outcome(metrics, "cancelled") == 0);
}

TEST_CASE("a corrupt model folder at start-up is a clear error naming the model and file", "[integration][server]") {
  Random rng;
  const auto folder = std::filesystem::temp_directory_path() / ("sagevid-corrupt-" + std::to_string(rng.seed));
  std::filesystem::copy(std::filesystem::path(SAGEVID_SOURCE_DIR) / "assets" / "tiny-cogvideox", folder,
                        std::filesystem::copy_options::recursive);
  const auto weights = folder / "transformer" / "diffusion_pytorch_model.safetensors";
  std::filesystem::resize_file(weights, std::filesystem::file_size(weights) / 2);

  TestServer server(tiny_config({"models.0.path=\"" + folder.string() + "\""}), /*load=*/false);
  REQUIRE_THROWS_WITH(server.server().load_models(), ContainsSubstring("model 'tiny' (" + folder.string()) &&
                                                         ContainsSubstring("diffusion_pytorch_model.safetensors"));
  CHECK(health_status(server.channel()) == kNotServing);
  std::filesystem::remove_all(folder);
}

namespace {

// `sagevid serve` of the tiny config with this drain; its work cap admits slow_request(), as tiny_config()'s.
ServerProcess serve_tiny_draining(const std::string& address, const std::string& drain_seconds) {
  return sagevid::test::serve_tiny(address,
                                   {"server.drain_seconds=" + drain_seconds, "models.0.max_latent_token_steps=720000"});
}

}  // namespace

TEST_CASE("sagevid serve drains on SIGTERM and exits 0 and a model that cannot load exits 1", "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  const std::string binary = sagevid_binary();
  REQUIRE(std::filesystem::exists(binary));
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  // The job finishes within the drain however slow the machine.
  const ServerProcess server = serve_tiny_draining(address, "600");
  const pid_t pid = server.pid;
  const auto stub = v1::VideoGeneration::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  Background job(*stub, small_request(draw, 20));
  REQUIRE(job.wait_denoising());
  REQUIRE(kill(pid, SIGTERM) == 0);
  CHECK(job.result.get().status.ok());
  CHECK(wait_exit(pid) == 0);

  const pid_t broken = spawn({binary, "serve", "--config", kTinyConfig.string(), "--set",
                              "server.address=\"127.0.0.1:0\"", "--set", "models.0.path=\"/nonexistent/model\""});
  CHECK(wait_exit(broken) == 1);
}

TEST_CASE("a second server on a port in use fails at start-up naming the address", "[integration][server]") {
  TestServer first(tiny_config(), false);
  const std::string address = "127.0.0.1:" + std::to_string(first.server().port());
  const std::string on_address = "server.address=\"" + address + "\"";
  REQUIRE_THROWS_WITH(sagevid::SagevidServer(tiny_config({on_address})),
                      ContainsSubstring("cannot listen on " + address));
  // The binary exits with that error instead of sharing the port; `timeout` ends one that serves after all.
  const CommandResult second = run_command("timeout 30 " + sagevid_binary() + " serve --config " +
                                           kTinyConfig.string() + " --set '" + on_address + "'");
  CAPTURE(second.output);
  CHECK(second.exit_status != 0);
  CHECK(second.exit_status != 124);
  CHECK(second.output.find("cannot listen on " + address) != std::string::npos);
  CHECK(health_status(first.channel()) == kNotServing);  // the first server still answers
}

TEST_CASE("a second SIGTERM during the drain cancels the running work at once and exits non-zero",
          "[integration][server]") {
  Random rng;
  CAPTURE(rng.seed);
  auto draw = drawer(rng.seed);
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  const ServerProcess server = serve_tiny_draining(address, "600");
  const pid_t pid = server.pid;
  const auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  const auto stub = v1::VideoGeneration::NewStub(channel);
  Background job(*stub, slow_request(draw));
  REQUIRE(job.wait_denoising());
  REQUIRE(kill(pid, SIGTERM) == 0);
  const auto end = Clock::now() + 30s;
  while (health_status(channel) == kServing && Clock::now() < end) std::this_thread::sleep_for(10ms);
  REQUIRE(kill(pid, SIGTERM) == 0);

  const bool stopped = job.result.wait_for(30s) == std::future_status::ready;
  int status = 0;
  pid_t exited = 0;
  for (const auto stop_by = Clock::now() + 30s; exited == 0 && Clock::now() < stop_by;
       std::this_thread::sleep_for(20ms))
    exited = waitpid(pid, &status, WNOHANG);
  if (exited == 0) {  // the drain went on: end it so that the test does not wait 600 s
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  REQUIRE(stopped);
  CHECK(job.result.get().status.error_code() == grpc::StatusCode::UNAVAILABLE);
  REQUIRE(exited == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 128 + SIGTERM);
}
