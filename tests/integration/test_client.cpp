// sagevid-client's pieces (flags, chunk writer, percentiles, progress) and its commands against an in-process
// stand-in for the server, which also runs gRPC's built-in grpc.health.v1 service: that checks the client's
// hand-written health.proto against the real wire format. (Against the real server: the service's tests.)
#include "catch.h"
#include "unit/safetensors_writer.h"

#include "clients/cpp/bench_command.h"
#include "clients/cpp/bench_stats.h"
#include "clients/cpp/chunk_writer.h"
#include "clients/cpp/command_line.h"
#include "clients/cpp/generate_command.h"
#include "clients/cpp/info_commands.h"
#include "access_control.h"
#include "clients/cpp/progress_bar.h"
#include "run_command.h"
#include "test_pki.h"
#include "clients/cpp/request_flags.h"
#include "test_random.h"

#include "sagevid/v1/sagevid.grpc.pb.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

using namespace sagevid::client;
namespace fs = std::filesystem;

namespace {

std::string random_bytes(std::mt19937_64& generator, size_t size) {
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(generator());
  return bytes;
}

std::string read_file(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), {}};
}

// The cells of the table row whose label is `label`.
std::vector<std::string> row(const std::string& table, const std::string& label) {
  std::istringstream lines(table);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.starts_with(label + "  ")) continue;
    std::istringstream cells(line.substr(label.size()));
    std::vector<std::string> found;
    for (std::string cell; cells >> cell;) found.push_back(cell);
    return found;
  }
  FAIL("no row " << label);
  return {};
}

sagevid::test::CommandResult run_client(const std::string& args) {
  return sagevid::test::run_command(std::string(SAGEVID_CLIENT_BINARY) + " " + args);
}

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("sagevid-client-test-" + std::to_string(std::random_device{}()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

// Streams `payload` in random-sized chunks after progress events; records the requests it got.
class FakeVideoService final : public sagevid::v1::VideoGeneration::Service {
 public:
  explicit FakeVideoService(std::string payload) : payload_(std::move(payload)) {}
  bool lose_a_chunk = false;

  grpc::Status ListModels(grpc::ServerContext*, const sagevid::v1::ListModelsRequest*,
                          sagevid::v1::ListModelsResponse* response) override {
    response->add_models()->set_name("tiny");
    return grpc::Status::OK;
  }

  grpc::Status Generate(grpc::ServerContext*, const sagevid::v1::GenerateRequest* request,
                        grpc::ServerWriter<sagevid::v1::GenerateEvent>* writer) override {
    {
      const std::lock_guard lock(mutex_);
      requests_.push_back(*request);
    }
    if (request->steps() > 1000) return {grpc::StatusCode::INVALID_ARGUMENT, "steps: must be in [1, 1000]"};
    sagevid::v1::GenerateEvent event;
    event.mutable_started()->set_steps(request->steps());
    writer->Write(event);
    for (int step = 1; step <= request->steps(); ++step) {
      auto* progress = event.mutable_progress();
      progress->set_phase(sagevid::v1::PHASE_DENOISE);
      progress->set_step(step);
      progress->set_total(request->steps());
      writer->Write(event);
      if (request->preview_every() == 0 || step % request->preview_every() != 0) continue;
      sagevid::v1::GenerateEvent preview;
      preview.mutable_preview()->set_png("png of step " + std::to_string(step));
      preview.mutable_preview()->set_step(step);
      writer->Write(preview);
    }
    std::mt19937_64 generator(request->seed());
    std::vector<std::pair<uint64_t, std::string>> chunks;
    for (size_t offset = 0; offset < payload_.size();) {
      const size_t size = 1 + generator() % 4096;
      chunks.emplace_back(offset, payload_.substr(offset, size));
      offset += size;
    }
    if (lose_a_chunk) chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(chunks.size() / 2));
    for (size_t i = 0; i < chunks.size(); ++i) {
      auto* chunk = event.mutable_chunk();
      chunk->set_offset(chunks[i].first);
      chunk->set_data(chunks[i].second);
      chunk->set_last(i + 1 == chunks.size());
      writer->Write(event);
    }
    auto* completed = event.mutable_completed();
    completed->set_bytes(payload_.size());
    completed->set_frames(9);
    completed->set_attention_backend(request->attention_backend().empty() ? "math" : request->attention_backend());
    completed->mutable_times()->set_denoise_seconds(0.5);
    completed->mutable_times()->set_denoise_step_seconds(0.5 / std::max(1, request->steps()));
    writer->Write(event);
    return grpc::Status::OK;
  }

  const std::string& payload() const { return payload_; }
  std::vector<sagevid::v1::GenerateRequest> requests() {
    const std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  std::string payload_;
  std::mutex mutex_;
  std::vector<sagevid::v1::GenerateRequest> requests_;
};

struct FakeServer {
  explicit FakeServer(std::string payload,
                      std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials())
      : service(std::move(payload)) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", credentials, &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    REQUIRE(server);
    REQUIRE(port > 0);
  }
  ~FakeServer() { server->Shutdown(); }
  Connection connection() const { return {"127.0.0.1:" + std::to_string(port), 30}; }

  FakeVideoService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

}  // namespace

TEST_CASE("client flags: values, switches and errors that name the flag", "[integration][client]") {
  const FlagSpec spec{{"--steps", "--backend", "--scale"}, {"--quiet"}, {"--backend"}};
  const Flags flags({"--steps", "12", "--backend=flash", "--backend", "sage2", "--quiet", "--scale", "2.5"}, spec);
  CHECK(flags.integer("--steps", 0, 0, 100) == 12);
  CHECK(flags.all("--backend") == std::vector<std::string>{"flash", "sage2"});
  CHECK(flags.has("--quiet"));
  CHECK(flags.real("--scale", 0, 0, 10) == 2.5);
  CHECK(flags.integer("--missing", 7, 0, 10) == 7);
  REQUIRE_THROWS_WITH(Flags({"--stesp", "3"}, spec), ContainsSubstring("unknown flag --stesp"));
  REQUIRE_THROWS_WITH(Flags({"--steps"}, spec), ContainsSubstring("--steps needs a value"));
  REQUIRE_THROWS_WITH(Flags({"--steps", "1", "--steps", "2"}, spec), ContainsSubstring("--steps given more than once"));
  REQUIRE_THROWS_WITH(Flags({"--quiet=yes"}, spec), ContainsSubstring("--quiet takes no value"));
  REQUIRE_THROWS_WITH(Flags({"--steps", "12x"}, spec).integer("--steps", 0, 0, 100),
                      ContainsSubstring("--steps: '12x' is not an integer"));
  REQUIRE_THROWS_WITH(Flags({"--steps", "101"}, spec).integer("--steps", 0, 0, 100),
                      ContainsSubstring("--steps: 101 is out of range [0, 100]"));
  REQUIRE_THROWS_WITH(Flags({"--scale", "nan"}, spec).real("--scale", 0, 0, 10), ContainsSubstring("--scale"));
}

TEST_CASE("the client sends --seed 0 as seed 0 and leaves the seed absent without --seed", "[integration][client]") {
  FlagSpec spec;
  add_request_flags(spec);
  const auto zero = request_from_flags(Flags({"--prompt", "p", "--seed", "0"}, spec));
  CHECK(zero.has_seed());
  CHECK(zero.seed() == 0);
  CHECK_FALSE(request_from_flags(Flags({"--prompt", "p"}, spec)).has_seed());
}

TEST_CASE("the client sends the --image file's bytes as they are, and a missing file names the flag",
          "[integration][client]") {
  FlagSpec spec;
  add_request_flags(spec);
  const std::string png = std::string(SAGEVID_FIXTURES_DIR) + "/i2v/images/gradient.png";
  const std::string bytes = sagevid::testing::read_file(png);
  REQUIRE(bytes.size() > 100);
  CHECK(request_from_flags(Flags({"--prompt", "p", "--image", png}, spec)).image() == bytes);
  CHECK(request_from_flags(Flags({"--prompt", "p"}, spec)).image().empty());
  CHECK_THROWS_WITH(request_from_flags(Flags({"--prompt", "p", "--image", png + ".absent"}, spec)),
                    ContainsSubstring("--image: cannot open"));
}

TEST_CASE("percentiles follow the nearest-rank definition", "[integration][client]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 generator(rng.seed);
  const size_t n = 1 + generator() % 300;
  std::vector<double> samples(n);
  for (double& s : samples) s = std::uniform_real_distribution<double>(0.1, 50)(generator);
  for (const double p : {50.0, 90.0, 99.0, 100.0}) {
    CAPTURE(n, p);
    const double value = percentile(samples, p);
    // Nearest rank: the smallest sample with at least p% of the samples at or below it.
    const auto at_or_below = std::count_if(samples.begin(), samples.end(), [&](double s) { return s <= value; });
    const auto below = std::count_if(samples.begin(), samples.end(), [&](double s) { return s < value; });
    CHECK(double(at_or_below) >= p / 100 * double(n));
    CHECK(double(below) < p / 100 * double(n));
  }
  CHECK(percentile({3, 1, 2, 4}, 50) == 2);
  REQUIRE_THROWS_WITH(percentile({}, 50), ContainsSubstring("no samples"));
}

namespace {

// A request that took `latency` s over `steps` steps of `step` s each, its phases the given times.
RequestSample sample(double latency, int steps, double step, double text, double decode, double encode,
                     uint64_t bytes = 100, int64_t frames = 9) {
  RequestSample s;
  s.latency = latency;
  s.steps = steps;
  s.times.set_text_encode_seconds(text);
  s.times.set_denoise_seconds(steps * step);
  s.times.set_denoise_step_seconds(step);
  s.times.set_decode_seconds(decode);
  s.times.set_encode_seconds(encode);
  s.bytes = bytes;
  s.frames = frames;
  return s;
}

sagevid::v1::GenerateEvent progress_event(sagevid::v1::Phase phase, int step, int total) {
  sagevid::v1::GenerateEvent event;
  event.mutable_progress()->set_phase(phase);
  event.mutable_progress()->set_step(step);
  event.mutable_progress()->set_total(total);
  return event;
}

sagevid::v1::GenerateEvent chunk_event(const std::string& data) {
  sagevid::v1::GenerateEvent event;
  event.mutable_chunk()->set_data(data);
  return event;
}

}  // namespace

TEST_CASE("a request's first video byte is timed from the call and from the last denoising step",
          "[integration][client]") {
  using std::chrono::milliseconds;
  const RequestTimer::Clock::time_point t0{};
  RequestTimer timer(t0);
  sagevid::v1::GenerateEvent started;
  started.mutable_started()->set_steps(3);
  timer.on_event(started, t0 + milliseconds(10));
  for (int step = 1; step <= 3; ++step)
    timer.on_event(progress_event(sagevid::v1::PHASE_DENOISE, step, 3), t0 + milliseconds(1000 * step));
  timer.on_event(progress_event(sagevid::v1::PHASE_DECODE, 4, 9), t0 + milliseconds(3400));
  timer.on_event(chunk_event(""), t0 + milliseconds(3450));  // no video byte in it
  timer.on_event(chunk_event("moov"), t0 + milliseconds(3500));
  timer.on_event(chunk_event("mdat"), t0 + milliseconds(3900));
  sagevid::v1::Completed completed;
  completed.mutable_times()->set_denoise_step_seconds(0.9);
  completed.set_bytes(8);
  completed.set_frames(9);
  const RequestSample s = timer.finish(completed, t0 + milliseconds(4000));
  CHECK(s.latency == 4.0);
  REQUIRE(s.first_byte);
  CHECK(*s.first_byte == 3.5);
  REQUIRE(s.denoise_end_to_first_byte);
  CHECK(*s.denoise_end_to_first_byte == 0.5);  // from step 3 of 3, not an earlier step
  CHECK(s.steps == 3);
  CHECK(s.times.denoise_step_seconds() == 0.9);
  CHECK(s.bytes == 8);
  CHECK(s.frames == 9);

  // A stream without video (say, RGB frames that never came) has no first byte.
  const RequestSample none = RequestTimer(t0).finish(completed, t0 + milliseconds(100));
  CHECK_FALSE(none.first_byte);
  CHECK_FALSE(none.denoise_end_to_first_byte);
}

TEST_CASE("server overhead is the latency the phases leave over and 50 steps extrapolate from the median step",
          "[integration][client]") {
  const RequestSample s = sample(10.0, 4, 1.5, 0.5, 2.0, 0.25);  // phases: 0.5 + 6 + 2 + 0.25 = 8.75 s
  CHECK(s.overhead() == 1.25);
  CHECK(extrapolated_latency(s, 50) == 10.0 + 46 * 1.5);
  CHECK(extrapolated_latency(s, 4) == 10.0);
  CHECK(extrapolated_latency(s, 2) == 7.0);
}

TEST_CASE("the bench table puts runs side by side", "[integration][client]") {
  // clang-format off: two rows of data (the formatter puts each field on a line).
  BenchRun a{"sage2", "sage2", 4, 2, {sample(1, 4, 0.1, 0.1, 0.2, 0.1), sample(2, 4, 0.1, 0.1, 0.2, 0.1),
                                      sample(3, 4, 0.1, 0.1, 0.2, 0.1), sample(4, 4, 0.2, 0.1, 0.2, 0.1)}, {}, {}, 5};
  a.samples[0].first_byte = 0.5;  // only one request saw video: the mean is over that one
  a.samples[0].denoise_end_to_first_byte = 0.25;
  BenchRun b{"flash", "flash", 4, 2, {sample(2, 4, 0.3, 0.1, 0.2, 0.1, 50), sample(4, 4, 0.3, 0.1, 0.2, 0.1, 50)},
             {{"RESOURCE_EXHAUSTED", 2}}, {}, 8};
  // clang-format on
  const std::string table = format_bench_table({a, b});
  CAPTURE(table);
  CHECK(row(table, "backend") == std::vector<std::string>{"sage2", "flash"});  // columns in run order
  CHECK(row(table, "succeeded") == std::vector<std::string>{"4", "2"});
  CHECK(row(table, "errors") == std::vector<std::string>{"0", "RESOURCE_EXHAUSTED=2"});
  CHECK(row(table, "steps") == std::vector<std::string>{"4", "4"});
  CHECK(row(table, "latency p50 (s)") == std::vector<std::string>{"2.000", "2.000"});
  CHECK(row(table, "latency p99 (s)") == std::vector<std::string>{"4.000", "4.000"});
  CHECK(row(table, "latency mean (s)") == std::vector<std::string>{"2.500", "3.000"});
  CHECK(row(table, "first video byte (s)") == std::vector<std::string>{"0.500", "-"});
  CHECK(row(table, "denoise end to first byte (s)") == std::vector<std::string>{"0.250", "-"});
  CHECK(row(table, "denoise (s)") == std::vector<std::string>{"0.500", "1.200"});
  CHECK(row(table, "denoise step, median (s)") == std::vector<std::string>{"0.125", "0.300"});
  // sage2: 2.5 - (0.1 + 0.5 + 0.2 + 0.1) = 1.6 s of 2.5; flash: 3 - 1.6 = 1.4 s of 3.
  CHECK(row(table, "server overhead (s)") == std::vector<std::string>{"1.600", "1.400"});
  CHECK(row(table, "server overhead (% of latency)") == std::vector<std::string>{"64.00", "46.67"});
  CHECK(row(table, "video bytes") == std::vector<std::string>{"100", "50"});
  CHECK(row(table, "throughput (req/s)") == std::vector<std::string>{"0.800", "0.250"});
  CHECK(row(table, "frames/s") == std::vector<std::string>{"7.200", "2.250"});
  // 50 steps: sage2 2.5 + 46 * 0.125 = 8.25; flash 3 + 46 * 0.3 = 16.8.
  CHECK(row(table, "50-step latency, extrapolated (s)") == std::vector<std::string>{"8.250", "16.800"});
  CHECK(row(table, "speedup over flash") == std::vector<std::string>{"1.200", "1.000"});
  CHECK(row(table, "speedup over flash, 50 steps extrapolated") == std::vector<std::string>{"2.036", "1.000"});
  // Columns line up: every line is as long as the first.
  std::istringstream lines(table);
  std::string line;
  std::getline(lines, line);
  const size_t width = line.size();
  while (std::getline(lines, line)) CHECK(line.size() == width);

  // Without a flash run there is nothing to compare with.
  CHECK(format_bench_table({a}).find("speedup") == std::string::npos);
}

TEST_CASE("the bench table as Markdown: backends in the header, one row per measure", "[integration][client]") {
  const BenchRun a{"sage2", "sage2", 1, 1, {sample(2, 4, 0.1, 0.1, 0.2, 0.1)}, {}, {}, 2};
  const BenchRun b{"cudnn", "cudnn", 1, 1, {}, {{"INTERNAL", 1}}, {}, 1};
  const std::string markdown = format_bench_table({a, b}, TableStyle::markdown);
  CAPTURE(markdown);
  std::istringstream lines(markdown);
  std::string line;
  std::vector<std::string> all;
  while (std::getline(lines, line)) all.push_back(line);
  REQUIRE(all.size() == 26);  // the backends, the alignment row, 24 measures
  CHECK(all[0] == "| backend | sage2 | cudnn |");
  CHECK(all[1] == "| --- | ---: | ---: |");
  CHECK(std::find(all.begin(), all.end(), "| latency mean (s) | 2.000 | - |") != all.end());
  CHECK(std::find(all.begin(), all.end(), "| errors | 0 | INTERNAL=1 |") != all.end());
  for (const std::string& l : all) CHECK(std::count(l.begin(), l.end(), '|') == 4);
}

TEST_CASE("the chunk writer checks offsets and only leaves complete files", "[integration][client]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 generator(rng.seed);
  const TempDir dir;
  const fs::path output = dir.path / "video.mp4";
  const std::string payload = random_bytes(generator, 10000 + generator() % 10000);
  {
    ChunkWriter writer(output);
    for (size_t offset = 0; offset < payload.size();) {
      const size_t size = std::min<size_t>(1 + generator() % 3000, payload.size() - offset);
      writer.write(offset, std::string_view(payload).substr(offset, size), offset + size == payload.size());
      offset += size;
    }
    CHECK_FALSE(fs::exists(output));  // still .part
    writer.finish();
  }
  CHECK(read_file(output) == payload);
  CHECK_FALSE(fs::exists(dir.path / "video.mp4.part"));

  const fs::path broken = dir.path / "broken.mp4";
  {
    ChunkWriter writer(broken);
    writer.write(0, "abcd", false);
    REQUIRE_THROWS_WITH(writer.write(5, "efgh", false), ContainsSubstring("offset 5, expected 4"));
    REQUIRE_THROWS_WITH(writer.finish(), ContainsSubstring("before the last video chunk (4 bytes received)"));
  }
  CHECK_FALSE(fs::exists(broken));
  CHECK_FALSE(fs::exists(dir.path / "broken.mp4.part"));
  REQUIRE_THROWS_WITH(ChunkWriter(dir.path / "no" / "such" / "dir.mp4"), ContainsSubstring("cannot write"));
}

TEST_CASE("progress shows phase, step and the phase's ETA", "[integration][client]") {
  CHECK(format_duration(4.25) == "4.2s");
  CHECK(format_duration(187) == "3m07s");
  CHECK(format_duration(3720) == "1h02m");
  CHECK(render_progress("denoise", 5, 10, 12, 30.0, 10) == "denoise      [#####-----] 5/10  elapsed 12.0s  ETA 30.0s");
  ProgressBar bar(stderr, false);
  bar.update("denoise", 1, 11, 3.0);
  CHECK_FALSE(bar.eta_seconds(1, 11, 3.0));  // no pace yet
  bar.update("denoise", 3, 11, 7.0);  // 2 steps in 4 s: 8 steps left take 16 s
  CHECK(*bar.eta_seconds(3, 11, 7.0) == 16.0);
}

TEST_CASE("generate writes the streamed video and sends every request flag", "[integration][client]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 generator(rng.seed);
  FakeServer server(random_bytes(generator, 20000 + generator() % 40000));
  const TempDir dir;
  const fs::path output = dir.path / "out.mp4";
  const std::string seed = std::to_string(1 + generator() % 1000000);
  // clang-format off: a command line, packed as it is typed (the formatter puts each of its words on a line).
  CHECK(generate_command(server.connection(),
                         {"--prompt", "a red fox", "--negative-prompt", "blur", "--frames", "9", "--height", "32",
                          "--width", "48", "--steps", "3", "--guidance-scale", "6.5", "--dynamic-cfg", "--seed", seed,
                          "--fps", "8", "--format", "rgb", "--backend", "flash", "--output", output.string(),
                          "--quiet"}) == 0);
  // clang-format on
  const auto requests = server.service.requests();
  REQUIRE(requests.size() == 1);
  const auto& r = requests[0];
  CHECK(r.model() == "tiny");  // the server's only model
  CHECK(r.prompt() == "a red fox");
  CHECK(r.negative_prompt() == "blur");
  CHECK((r.frames() == 9 && r.height() == 32 && r.width() == 48 && r.steps() == 3 && r.fps() == 8));
  CHECK(r.guidance_scale() == 6.5f);
  CHECK(r.dynamic_cfg());
  CHECK(std::to_string(r.seed()) == seed);
  CHECK(r.output() == sagevid::v1::OUTPUT_FORMAT_RGB_FRAMES);
  CHECK(r.attention_backend() == "flash");
  CHECK(read_file(output) == server.service.payload());
  CHECK_FALSE(fs::exists(output.string() + ".part"));
}

TEST_CASE("generate writes each preview to --preview-dir, which needs --preview-every", "[integration][client]") {
  FakeServer server("the video's bytes");
  const TempDir dir;
  const fs::path previews = dir.path / "previews";
  CHECK(generate_command(server.connection(),
                         {"--prompt", "a red fox", "--steps", "7", "--preview-every", "3", "--preview-dir",
                          previews.string(), "--output", (dir.path / "out.mp4").string(), "--quiet"}) == 0);
  CHECK(server.service.requests().at(0).preview_every() == 3);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(previews)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"preview-00003.png", "preview-00006.png"});
  CHECK(read_file(previews / "preview-00006.png") == "png of step 6");
  CHECK_THROWS_WITH(generate_command(server.connection(), {"--prompt", "x", "--preview-dir", previews.string()}),
                    ContainsSubstring("--preview-dir needs --preview-every"));
}

TEST_CASE("generate fails cleanly on a lost chunk and on an RPC error", "[integration][client]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 generator(rng.seed);
  FakeServer server(random_bytes(generator, 30000));
  const TempDir dir;
  const std::string output = (dir.path / "out.mp4").string();

  server.service.lose_a_chunk = true;
  REQUIRE_THROWS_WITH(generate_command(server.connection(), {"--prompt", "x", "--output", output, "--quiet"}),
                      ContainsSubstring("a chunk was lost or repeated"));
  server.service.lose_a_chunk = false;
  try {
    generate_command(server.connection(), {"--prompt", "x", "--steps", "5000", "--output", output, "--quiet"});
    FAIL("no error");
  } catch (const RpcError& error) {
    CHECK(error.code == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(std::string(error.what()) == "Generate failed: INVALID_ARGUMENT: steps: must be in [1, 1000]");
  }
  CHECK(fs::is_empty(dir.path));  // neither the video nor a .part
  REQUIRE_THROWS_WITH(generate_command(server.connection(), {"--output", output}), ContainsSubstring("--prompt"));
  REQUIRE_THROWS_WITH(generate_command(server.connection(), {"--prompt", "x", "--format", "gif"}),
                      ContainsSubstring("--format: 'gif' is not one of mp4, mp4-lossless, rgb"));
}

TEST_CASE("health speaks grpc.health.v1 and errors name the status code", "[integration][client]") {
  FakeServer server("x");
  CHECK(health_command(server.connection(), {}) == 0);  // gRPC's built-in service answers SERVING
  CHECK(models_command(server.connection(), {}) == 0);
  try {
    status_command(server.connection(), {});  // the fake leaves GetStatus unimplemented
    FAIL("no error");
  } catch (const RpcError& error) {
    CHECK(error.code == grpc::StatusCode::UNIMPLEMENTED);
    CHECK(std::string(error.what()).starts_with("GetStatus failed: UNIMPLEMENTED"));
  }
  try {
    health_command({"127.0.0.1:1", 5}, {});
    FAIL("no error");
  } catch (const RpcError& error) {
    CHECK(std::string(error.what()).starts_with("Health.Check failed: UNAVAILABLE: "));
  }
}

TEST_CASE("bench runs every backend, all requests, at the asked concurrency", "[integration][client]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  FakeServer server(std::string(5000 + rng.seed % 5000, 'v'));
  const int requests = 3 + int(rng.seed % 5);
  CHECK(bench_command(server.connection(), {"--requests", std::to_string(requests), "--concurrency", "3", "--backend",
                                            "sage2", "--backend", "flash", "--steps", "2"}) == 0);
  const auto received = server.service.requests();
  REQUIRE(received.size() == size_t(2 * requests));
  for (int i = 0; i < 2 * requests; ++i)
    CHECK(received[i].attention_backend() == (i < requests ? "sage2" : "flash"));  // one backend after the other
  // A failing request is reported and makes the run fail.
  CHECK(bench_command(server.connection(), {"--requests", "2", "--steps", "5000"}) == 1);
  // The Markdown table: the steps come from the Started event, the speedup from the flash run.
  const auto result = run_client("--server 127.0.0.1:" + std::to_string(server.port) +
                                 " bench --requests 2 --backend sage2 --backend flash --steps 2 --markdown");
  CHECK(result.exit_status == 0);
  CAPTURE(result.output);
  CHECK(result.output.find("| backend | sage2 | flash |") != std::string::npos);
  CHECK(result.output.find("| steps | 2 | 2 |") != std::string::npos);
  CHECK(result.output.find("| denoise step, median (s) | 0.250 | 0.250 |") != std::string::npos);
  CHECK(result.output.find("| speedup over flash |") != std::string::npos);
}

TEST_CASE("sagevid-client exits 0 on success, 1 on a failed call, 2 on a bad command line", "[integration][client]") {
  FakeServer server("some video bytes");
  const std::string at_server = "--server 127.0.0.1:" + std::to_string(server.port);
  auto result = run_client(at_server + " health");
  CHECK(result.exit_status == 0);
  CHECK(result.output == "SERVING\n");
  result = run_client("models --server=127.0.0.1:" + std::to_string(server.port));  // global flags go anywhere
  CHECK(result.exit_status == 0);
  CHECK(result.output.starts_with("tiny\n"));
  result = run_client(at_server + " generate --prompt x --steps 5000 --output /nonexistent-dir/out.mp4");
  CHECK(result.exit_status == 1);
  CHECK(result.output.find("cannot write /nonexistent-dir/out.mp4.part") != std::string::npos);
  result = run_client(at_server + " --deadline 5 status");
  CHECK(result.exit_status == 1);
  CHECK(result.output.find("error: GetStatus failed: UNIMPLEMENTED") != std::string::npos);
  result = run_client(at_server + " generate --prompt x --stpes 3");
  CHECK(result.exit_status == 2);
  CHECK(result.output.find("unknown flag --stpes") != std::string::npos);
  CHECK(run_client("teleport").exit_status == 2);
  CHECK(run_client("").exit_status == 2);
  result = run_client("--help");
  CHECK(result.exit_status == 0);
  CHECK(result.output.find("bench") != std::string::npos);
}

TEST_CASE("sagevid-client speaks TLS, sends its token and a client certificate, and refuses a clear-text token",
          "[integration][client]") {
  const sagevid::test::TestPki pki;
  const std::string token_file = pki.file("one-token").string();
  std::ofstream(token_file) << pki.tokens[1] << "\n";
  const auto tokens = sagevid::BearerTokens::load({pki.token_file, ""});
  FakeServer server("video",
                    sagevid::grpc_server_credentials({pki.file("server.pem"), pki.file("server.key"), {}}, tokens));
  const std::string trusting =
      "--server 127.0.0.1:" + std::to_string(server.port) + " --tls-ca " + pki.file("ca.pem").string();

  auto result = run_client(trusting + " --token-file " + token_file + " models");
  CHECK(result.exit_status == 0);
  CHECK(result.output.starts_with("tiny\n"));
  result = sagevid::test::run_command("SAGEVID_TOKEN=" + pki.tokens[0] + " " + SAGEVID_CLIENT_BINARY + " " + trusting +
                                      " models");
  CHECK(result.exit_status == 0);
  result = run_client(trusting + " models");
  CHECK(result.exit_status == 1);
  CHECK(result.output.find("ListModels failed: UNAUTHENTICATED") != std::string::npos);
  CHECK(run_client(trusting + " health").exit_status == 0);  // health needs no token
  result = run_client("--server 127.0.0.1:" + std::to_string(server.port) + " --tls-ca " +
                      pki.file("other-ca.pem").string() + " --token-file " + token_file + " models");
  CHECK(result.exit_status == 1);
  CHECK(result.output.find("UNAVAILABLE") != std::string::npos);
  result = run_client("--server 127.0.0.1:" + std::to_string(server.port) + " --token-file " + token_file + " models");
  CHECK(result.exit_status == 2);
  CHECK(result.output.find("needs TLS") != std::string::npos);
  result = run_client(trusting + " --token-file " + pki.token_file.string() + " models");  // two tokens in it
  CHECK(result.exit_status == 2);
  CHECK(result.output.find("must hold exactly one token") != std::string::npos);

  FakeServer strict("video", sagevid::grpc_server_credentials(
                                 {pki.file("server.pem"), pki.file("server.key"), pki.file("ca.pem")}, nullptr));
  const std::string at_strict =
      "--server 127.0.0.1:" + std::to_string(strict.port) + " --tls-ca " + pki.file("ca.pem").string();
  CHECK(run_client(at_strict + " models").exit_status == 1);
  CHECK(run_client(at_strict + " --tls-cert " + pki.file("client.pem").string() + " --tls-key " +
                   pki.file("client.key").string() + " models")
            .exit_status == 0);
  result = run_client(at_strict + " --tls-cert " + pki.file("client.pem").string() + " models");
  CHECK(result.exit_status == 2);
  CHECK(result.output.find("--tls-cert and --tls-key go together") != std::string::npos);
}
