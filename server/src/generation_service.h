#pragma once
// The sagevid.v1.VideoGeneration gRPC service (synchronous API). Generate validates the request, puts a job
// on its device's queue and then forwards the job's events (queued, started, progress, video chunks,
// completed) to the stream as the worker produces them, watching for client cancel, deadline and a client
// that stopped reading meanwhile. Generate reads its request itself (split streaming), so that a request
// that does not parse is INVALID_ARGUMENT with a message rather than gRPC's bare INTERNAL.
// Models load after the service is registered, so the server can answer (UNAVAILABLE) while they load.
// Front-ends other than the gRPC stream (the HTTP API) start jobs with start_detached(): the same admission,
// checks, queue, cancellation, logs and metrics, with the events handed to them instead of a stream.
#include "job_queue.h"
#include "request_validation.h"
#include "server_config.h"
#include "stream_watchdog.h"

#include "sagevid/models/pipeline.h"
#include "sagevid/models/seconds_since.h"
#include "sagevid/v1/sagevid.grpc.pb.h"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sagevid {

class ServerMetrics;

struct LoadedModel {
  ModelEntry entry;
  CogVideoXPipeline pipeline;
  ModelDefaults defaults;
  JobQueue* queue = nullptr;  // the worker of its device
};

class GenerationService final : public v1::VideoGeneration::SplitStreamedService {
  struct Call;  // one request's state, shared by its handler (or detached job) and the worker

 public:
  // metrics may be null (no metrics endpoint).
  GenerationService(ServerConfig config, ServerMetrics* metrics);
  ~GenerationService() override;

  // Loads every configured model onto its device; throws std::runtime_error naming the model and its folder.
  void load_models();
  bool ready() const { return ready_.load(); }

  // New Generate calls get UNAVAILABLE; queued and running jobs go on.
  void stop_accepting();
  // Waits for the queues to empty; false if the deadline came first.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);
  // Stops the running jobs and drops the waiting ones (their calls end UNAVAILABLE).
  void cancel_all();

  // A job started by start_detached(), whose events its front-end takes and relays.
  class DetachedJob {
   public:
    const std::string& request_id() const;
    // Moves out the events that have arrived (they count as sent), waiting up to timeout for one; the job's
    // final status once it has ended and every event was taken. The request is then logged and counted.
    std::optional<grpc::Status> take(std::vector<v1::GenerateEvent>& out, Clock::duration timeout);
    // As a client's cancel of its Generate call: the job is dropped, or stops within a denoising step, and
    // ends CANCELLED.
    void cancel();

   private:
    friend class GenerationService;
    DetachedJob(GenerationService& service, std::shared_ptr<Call> call, std::shared_ptr<Job> job);
    GenerationService& service_;
    std::shared_ptr<Call> call_;
    std::shared_ptr<Job> job_;
    int position_;  // in the queue, as last reported
    bool finished_ = false;
  };
  struct Detached {
    grpc::Status status;  // not OK: refused (logged and counted already), as Generate would have ended
    std::shared_ptr<DetachedJob> job;
  };
  Detached start_detached(const v1::GenerateRequest& request);
  // A request a front-end refused before it became a GenerateRequest (its body did not parse): logged and
  // counted as a Generate call refused for that reason is. Returns the status.
  grpc::Status refuse_detached(grpc::Status status);

  using EventStream = grpc::ServerSplitStreamer<v1::GenerateRequest, v1::GenerateEvent>;
  grpc::Status StreamedGenerate(grpc::ServerContext* context, EventStream* stream) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::ServerStatus* response) override;

 private:
  const LoadedModel* find_model(const std::string& name) const;
  grpc::Status admit(Call& call);
  JobFunctions job_functions(const std::shared_ptr<Call>& call);
  // Admits the call and queues its job; refused: the status says why.
  grpc::Status submit(const std::shared_ptr<Call>& call, JobQueue::Submitted& submitted);
  void run_job(Job& job, Call& call);
  static void end_job(Call& call, const grpc::Status& status);
  static grpc::Status failure_status(const Call& call, const std::exception& error);
  grpc::Status generate(grpc::ServerContext& context, EventStream& stream, const std::shared_ptr<Call>& call);
  // Relays the worker's events, from the first Queued one, until the job ends; sends a new Queued event
  // whenever the job moves up.
  grpc::Status stream_events(grpc::ServerContext& context, EventStream& stream, Call& call,
                             const std::shared_ptr<Job>& job, int position);
  void finish_call(const Call& call, const grpc::Status& status);
  void report_queue_depth();

  const ServerConfig config_;
  ServerMetrics* const metrics_;
  std::vector<std::unique_ptr<LoadedModel>> models_;          // written once, before ready_
  std::map<std::string, std::unique_ptr<JobQueue>> queues_;  // by device; after models_: stops first
  std::atomic<bool> ready_{false};
  std::atomic<bool> accepting_{true};
  std::atomic<int64_t> open_streams_{0};
  StreamWatchdog watchdog_;
};

}  // namespace sagevid
