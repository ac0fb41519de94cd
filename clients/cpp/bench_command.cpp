#include "bench_command.h"

#include "bench_stats.h"
#include "generate_call.h"
#include "request_flags.h"
#include "request_timing.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

namespace sagevid::client {

const char* const kBenchHelp = R"(bench: measure latency and throughput of Generate (videos are discarded)
  --requests N              requests per backend (default 8)
  --concurrency C           requests in flight at once (default 1)
  --warmup N                unmeasured requests first, one at a time, per backend (default 0)
  --backend NAME            repeat to compare backends: --backend sage2 --backend flash
  --markdown                print the table as Markdown
  --prompt TEXT             default: a fixed test prompt; the other request flags apply as for generate
Reports latency percentiles; means of the time to the first video byte (from the call, and from the end of
denoising), of the server's phases and of its overhead (latency minus text encode, denoise, decode and encode);
the 50-step latency extrapolated from the median step; with flash among the backends, each one's speedup.
)";

namespace {

using Clock = std::chrono::steady_clock;

struct BenchPlan {
  sagevid::v1::GenerateRequest request;
  int requests = 8;
  int concurrency = 1;
  int warmup = 0;
};

// One request, timed from the call to the end of its stream; the video bytes are only counted.
void measure_one(sagevid::v1::VideoGeneration::StubInterface& stub, const Connection& connection,
                 const sagevid::v1::GenerateRequest& request, BenchRun& run, std::mutex& mutex) {
  RequestTimer timer(Clock::now());
  try {
    grpc::ClientContext context;
    set_deadline(context, connection);
    const auto completed = run_generate_call(stub, context, request, [&timer](const sagevid::v1::GenerateEvent& event) {
      timer.on_event(event, Clock::now());
    });
    const RequestSample sample = timer.finish(completed, Clock::now());
    const std::lock_guard lock(mutex);
    run.samples.push_back(sample);
    run.backend_used = completed.attention_backend();
    std::fprintf(stderr, "bench [%s] %zu/%d: %.3fs\n", request.attention_backend().c_str(), run.samples.size(),
                 run.requests, sample.latency);
  } catch (const RpcError& error) {
    const std::lock_guard lock(mutex);
    const std::string code = status_code_name(error.code);
    ++run.errors[code];
    run.error_examples.emplace(code, error.what());
  } catch (const std::exception& error) {
    const std::lock_guard lock(mutex);
    ++run.errors["CLIENT"];
    run.error_examples.emplace("CLIENT", error.what());
  }
}

BenchRun run_bench(sagevid::v1::VideoGeneration::StubInterface& stub, const Connection& connection,
                   const BenchPlan& plan) {
  for (int i = 0; i < plan.warmup; ++i) {
    grpc::ClientContext context;
    set_deadline(context, connection);
    run_generate_call(stub, context, plan.request, [](const sagevid::v1::GenerateEvent&) {});
  }
  BenchRun run;
  run.backend = plan.request.attention_backend();
  run.requests = plan.requests;
  run.concurrency = plan.concurrency;
  std::mutex mutex;
  std::atomic<int> next = 0;
  const auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < plan.concurrency; ++w)
    workers.emplace_back([&] {
      while (next++ < plan.requests) measure_one(stub, connection, plan.request, run, mutex);
    });
  for (auto& worker : workers) worker.join();
  run.wall_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return run;
}

}  // namespace

int bench_command(const Connection& connection, const std::vector<std::string>& args) {
  FlagSpec spec{{"--requests", "--concurrency", "--warmup"}, {"--markdown"}, {"--backend"}};
  add_request_flags(spec);
  const Flags flags(args, spec);
  BenchPlan plan;
  plan.request = request_from_flags(flags);
  if (!flags.has("--prompt")) plan.request.set_prompt("A panda playing an acoustic guitar in a bamboo forest");
  plan.requests = static_cast<int>(flags.integer("--requests", 8, 1, 1000000));
  plan.concurrency = static_cast<int>(flags.integer("--concurrency", 1, 1, 1024));
  plan.warmup = static_cast<int>(flags.integer("--warmup", 0, 0, 1000));
  std::vector<std::string> backends = flags.all("--backend");
  if (backends.empty()) backends.push_back("");  // the server's own

  const auto stub = sagevid::v1::VideoGeneration::NewStub(open_channel(connection));
  fill_default_model(*stub, connection, plan.request);
  std::vector<BenchRun> runs;
  for (const std::string& backend : backends) {
    plan.request.set_attention_backend(backend);
    runs.push_back(run_bench(*stub, connection, plan));
  }
  const TableStyle style = flags.has("--markdown") ? TableStyle::markdown : TableStyle::text;
  std::printf("model %s, %d requests at concurrency %d per backend\n%s%s", plan.request.model().c_str(), plan.requests,
              plan.concurrency, style == TableStyle::markdown ? "\n" : "", format_bench_table(runs, style).c_str());
  bool failed = false;
  for (const BenchRun& run : runs)
    for (const auto& [code, message] : run.error_examples) {
      std::fprintf(stderr, "sagevid-client: bench [%s]: %d x %s, e.g. %s\n", run.backend.c_str(), run.errors.at(code),
                   code.c_str(), message.c_str());
      failed = true;
    }
  return failed ? 1 : 0;
}

}  // namespace sagevid::client
