#pragma once
// The sagevid.v1.VideoGeneration gRPC service (synchronous API). Generate validates the request, puts a job
// on its device's queue and then forwards the job's events (queued, started, progress, video chunks,
// completed) to the stream as the worker produces them, watching for client cancel and deadline meanwhile.
// Models load after the service is registered, so the server can answer (UNAVAILABLE) while they load.
#include "job_queue.h"
#include "request_validation.h"
#include "server_config.h"

#include "sagevid/models/pipeline.h"
#include "sagevid/v1/sagevid.grpc.pb.h"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
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

class GenerationService final : public v1::VideoGeneration::Service {
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

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateEvent>* writer) override;
  grpc::Status ListModels(grpc::ServerContext* context, const v1::ListModelsRequest* request,
                          v1::ListModelsResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::ServerStatus* response) override;

 private:
  struct Call;
  const LoadedModel* find_model(const std::string& name) const;
  grpc::Status admit(Call& call);
  JobFunctions job_functions(const std::shared_ptr<Call>& call);
  void run_job(Job& job, Call& call);
  static void end_job(Call& call, const grpc::Status& status);
  // Relays the worker's events until the job ends; sends a new Queued event whenever the job moves up.
  grpc::Status stream_events(grpc::ServerContext* context, grpc::ServerWriter<v1::GenerateEvent>* writer,
                             Call& call, const std::shared_ptr<Job>& job, int position);
  void finish_call(const Call& call, const grpc::Status& status);
  void report_queue_depth();

  const ServerConfig config_;
  ServerMetrics* const metrics_;
  std::vector<std::unique_ptr<LoadedModel>> models_;          // written once, before ready_
  std::map<std::string, std::unique_ptr<JobQueue>> queues_;  // by device; after models_: stops first
  std::atomic<bool> ready_{false};
  std::atomic<bool> accepting_{true};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace sagevid
