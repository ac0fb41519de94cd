#include "generation_service.h"

#include "event_channel.h"
#include "generate_events.h"
#include "memory_check.h"
#include "metrics.h"
#include "streaming_run.h"

#include "sagevid/kernels/device_info.h"
#include "sagevid/models/dtype.h"
#include "sagevid/models/join.h"
#include "sagevid/models/seconds_since.h"

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <new>
#include <optional>
#include <random>
#include <set>
#include <string_view>

namespace sagevid {
namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(20);  // how often the handler checks cancel/deadline

// Unique enough to find one request in the logs, and says nothing about the server's history.
std::string new_request_id() {
  thread_local std::mt19937_64 bits(std::random_device{}());
  return fmt::format("{:016x}", bits());
}

// Out of memory of any kind: torch's (host or device), the C++ runtime's, or a CUDA call's own.
bool out_of_memory(const std::exception& error) {
  if (dynamic_cast<const std::bad_alloc*>(&error)) return true;
  const auto* torch_error = dynamic_cast<const c10::Error*>(&error);
  return torch_error &&
         (dynamic_cast<const c10::OutOfMemoryError*>(&error) ||
          std::string_view(torch_error->what_without_backtrace()).find("out of memory") != std::string_view::npos);
}

std::string_view without_backtrace(const std::exception& error) {
  const auto* torch_error = dynamic_cast<const c10::Error*>(&error);
  return torch_error ? torch_error->what_without_backtrace() : error.what();
}

// The server deadline runs later than the client's: by the transit time, and gRPC rounds the timeout it sends
// up (by under 1%). A call that ends within this of its deadline ended by it, not by the client.
std::chrono::system_clock::duration deadline_slack(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return {};
  return std::chrono::milliseconds(100) + (deadline - std::chrono::system_clock::now()) / 100;
}

// One open Generate stream, counted while it lives.
class OpenStream {
 public:
  explicit OpenStream(std::atomic<int64_t>& count) : count_(count), number_(++count) {}
  ~OpenStream() { --count_; }
  int64_t number() const { return number_; }  // the streams open with this one

 private:
  std::atomic<int64_t>& count_;
  const int64_t number_;
};

std::string outcome_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "ok";
    case grpc::StatusCode::CANCELLED: return "cancelled";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "deadline_exceeded";
    case grpc::StatusCode::INVALID_ARGUMENT: return "invalid_argument";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "resource_exhausted";
    case grpc::StatusCode::UNAVAILABLE: return "unavailable";
    default: return "error";
  }
}

// GPU memory of the CUDA devices the models use, summed; zeros for CPU-only serving.
std::pair<uint64_t, uint64_t> gpu_memory(const std::vector<std::unique_ptr<LoadedModel>>& models) {
  std::set<int> devices;
  for (const auto& model : models) {
    const PipelineOptions& options = model->pipeline.options();
    for (const c10::Device& device : options.devices.empty() ? std::vector{options.device} : options.devices)
      if (device.is_cuda()) devices.insert(device.index());
  }
  uint64_t used = 0, total = 0;
  for (int index : devices) {
    try {
      const kernels::DeviceMemory memory = kernels::device_memory(std::max(index, 0));
      used += memory.total_bytes - memory.free_bytes;
      total += memory.total_bytes;
    } catch (const std::exception& error) {
      spdlog::warn("GPU memory of cuda:{} unknown: {}", index, error.what());
    }
  }
  return {used, total};
}

// The request as it ran (defaults filled in), or as it came when it was refused before resolving.
std::string describe_params(const v1::GenerateRequest& wire, const ResolvedRequest& resolved) {
  const bool was_resolved = !resolved.attention_backend.empty();
  const GenerationRequest& g = resolved.generation;
  return fmt::format(
      "model='{}' prompt_bytes={} frames={} size={}x{} steps={} guidance={:g} seed={} backend='{}' "
      "output={}",
      wire.model(), wire.prompt().size(), was_resolved ? g.num_frames : wire.frames(),
      was_resolved ? g.width : wire.width(), was_resolved ? g.height : wire.height(),
      was_resolved ? g.num_inference_steps : wire.steps(),
      was_resolved ? g.guidance_scale : double(wire.guidance_scale()), was_resolved ? g.seed : wire.seed(),
      was_resolved ? resolved.attention_backend : wire.attention_backend(), v1::OutputFormat_Name(wire.output()));
}

}  // namespace

// One Generate call: what the handler and the worker share.
struct GenerationService::Call {
  // Why the call ended early; none on a cancelled job: the server stopped it (shutdown). stalled: the client
  // left the stream unread past the write timeout or the buffer cap.
  enum class Stop { none, client, deadline, stalled };

  std::string id;
  const LoadedModel* model = nullptr;
  v1::GenerateRequest wire;
  ResolvedRequest request;
  Clock::time_point received = Clock::now();
  Clock::time_point started;
  std::atomic<Stop> stop{Stop::none};
  EventChannel channel;

  explicit Call(uint64_t max_unsent_bytes) : channel(max_unsent_bytes) {}
  // Written by the worker before it closes the channel, read by the handler after.
  v1::PhaseTimes times;
  uint64_t bytes = 0;
  int64_t frames = 0;

  // Why a cancelled job ended, as the status the client gets.
  grpc::Status stopped_status() const {
    switch (stop.load()) {
      case Stop::client: return {grpc::StatusCode::CANCELLED, "cancelled by the client"};
      case Stop::deadline: return {grpc::StatusCode::DEADLINE_EXCEEDED, "the request's deadline passed"};
      case Stop::stalled: return {grpc::StatusCode::CANCELLED, "the client stopped reading its stream"};
      default: return {grpc::StatusCode::UNAVAILABLE, "the server is shutting down; the job was cancelled"};
    }
  }
};

GenerationService::GenerationService(ServerConfig config, ServerMetrics* metrics)
    : config_(std::move(config)),
      metrics_(metrics),
      watchdog_(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config_.write_timeout_seconds))) {
  for (const ModelEntry& entry : config_.models)
    if (const std::string where = queue_placement(config_, entry); !queues_.contains(where))
      queues_.emplace(where, std::make_unique<JobQueue>(where, std::size_t(config_.queue_size)));
}

GenerationService::~GenerationService() {
  cancel_all();
  queues_.clear();  // joins the workers while the models they run still exist
}

void GenerationService::load_models() {
  for (const ModelEntry& entry : config_.models) {
    spdlog::info("loading model '{}' from {} onto {} ({})", entry.name, entry.path.string(), placement(entry),
                 dtype_name(entry.dtype));
    const auto start = Clock::now();
    try {
      CogVideoXPipeline pipeline = CogVideoXPipeline::load(entry.path, pipeline_options(entry, config_));
      const ModelDefaults defaults = model_defaults(entry.path, pipeline.limits());
      models_.push_back(std::make_unique<LoadedModel>(
          LoadedModel{entry, std::move(pipeline), defaults, queues_.at(queue_placement(config_, entry)).get()}));
    } catch (const std::exception& e) {
      throw std::runtime_error("model '" + entry.name + "' (" + entry.path.string() + "): " + e.what());
    }
    spdlog::info("model '{}' loaded in {:.1f} s", entry.name, seconds_since(start));
  }
  ready_ = true;
}

void GenerationService::stop_accepting() {
  accepting_ = false;
  for (auto& [device, queue] : queues_) queue->close();
}

bool GenerationService::wait_idle(Clock::time_point deadline) {
  bool idle = true;
  for (auto& [device, queue] : queues_) idle = queue->wait_idle(deadline) && idle;
  return idle;
}

void GenerationService::cancel_all() {
  for (auto& [device, queue] : queues_) queue->cancel_all();
}

const LoadedModel* GenerationService::find_model(const std::string& name) const {
  if (name.empty() && models_.size() == 1) return models_.front().get();  // one model: naming it is optional
  const auto index = sagevid::find_model(config_, name);
  return index ? models_[*index].get() : nullptr;  // models_ follows config_.models once ready_
}

void GenerationService::report_queue_depth() {
  if (!metrics_) return;
  std::size_t depth = 0;
  for (const auto& [device, queue] : queues_) depth += queue->waiting();
  metrics_->set_queue_depth(int(depth));
}

JobFunctions GenerationService::job_functions(const std::shared_ptr<Call>& call) {
  return {.run = [this, call](Job& job) { run_job(job, *call); },
          .dropped =
              [this, call] {
                end_job(*call, call->stopped_status());
                report_queue_depth();
              }};
}

// The last the worker touches of the call: the handler reads times once the channel is closed.
void GenerationService::end_job(Call& call, const grpc::Status& status) {
  if (call.times.total_seconds() == 0) call.times.set_total_seconds(seconds_since(call.received));
  call.channel.close(status);
}

void GenerationService::run_job(Job& job, Call& call) {
  call.started = Clock::now();
  call.times.set_queued_seconds(std::chrono::duration<double>(call.started - call.received).count());
  report_queue_depth();
  try {
    check_memory(call.model->pipeline, call.request.generation);  // now: the device runs no other job
    call.channel.push(started_event(call.request, call.id));
    StreamingRun run(call.channel, call.request, call.started, metrics_);
    const GenerationResult result = call.model->pipeline.generate(call.request.generation, run.callbacks(job));
    run.finish();
    call.times.set_text_encode_seconds(result.timings.text_encode_s);
    call.times.set_denoise_seconds(result.timings.denoise_s);
    call.times.set_denoise_step_seconds(result.timings.step_s_median);
    // The pipeline's decode time includes the encoding done in on_frames; each phase is reported on its own.
    call.times.set_decode_seconds(std::max(0.0, result.timings.decode_s - run.encode_seconds_in_decode()));
    call.times.set_encode_seconds(run.encode_seconds());
    call.times.set_total_seconds(seconds_since(call.received));
    call.bytes = run.bytes();
    call.frames = run.frames();

    v1::GenerateEvent completed;
    v1::Completed* done = completed.mutable_completed();
    *done->mutable_times() = call.times;
    done->set_attention_backend(result.attention_backend);
    done->set_seed(result.seed);
    done->set_frames(int32_t(call.frames));
    done->set_bytes(call.bytes);
    done->set_mime_type(mime_type(call.request.video.format));
    done->set_request_id(call.id);
    call.channel.push(std::move(completed));
    end_job(call, grpc::Status::OK);
  } catch (const GenerationCancelled&) {
    end_job(call, call.stopped_status());
  } catch (const InvalidRequest& e) {
    end_job(call, {grpc::StatusCode::INVALID_ARGUMENT, e.what()});
  } catch (const RequestTooLarge& e) {
    end_job(call, {grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()});
  } catch (const std::exception& e) {
    end_job(call, failure_status(call, e));
  }
}

// The whole error goes to the log; the client gets what it can act on and the id to quote, never the
// server's paths or backtraces.
grpc::Status GenerationService::failure_status(const Call& call, const std::exception& error) {
  if (out_of_memory(error)) {
    spdlog::warn("request {}: out of memory on {}: {}", call.id, placement(call.model->entry),
                 without_backtrace(error));
    return {grpc::StatusCode::RESOURCE_EXHAUSTED, "out of memory on " + placement(call.model->entry) +
                                                      "; try fewer frames or a smaller size (request " + call.id + ")"};
  }
  spdlog::error("request {}: {}", call.id, error.what());
  if (dynamic_cast<const NonFiniteLatents*>(&error))  // names the step: something the caller can act on
    return {grpc::StatusCode::INTERNAL, std::string(error.what()) + " (request " + call.id + ")"};
  return {grpc::StatusCode::INTERNAL, "internal error; the server log has the details under request " + call.id};
}

grpc::Status GenerationService::stream_events(grpc::ServerContext& context, EventStream& stream, Call& call,
                                              const std::shared_ptr<Job>& job, int position) {
  StreamWatchdog::Watch watch(watchdog_, context, [&call] { return call.channel.overflowed(); });
  const auto slack = deadline_slack(context);
  const auto stop = [&](Call::Stop reason) {
    Call::Stop none = Call::Stop::none;
    if (call.stop.compare_exchange_strong(none, reason)) call.model->queue->cancel(job);
  };
  // Why a call that ended on the client's side ended.
  const auto gone = [&] {
    if (watch.fired()) return Call::Stop::stalled;
    return std::chrono::system_clock::now() + slack >= context.deadline() ? Call::Stop::deadline : Call::Stop::client;
  };
  bool delivered = true;  // every event so far reached the client
  std::vector<v1::GenerateEvent> events{queued_event(position)};
  while (true) {
    for (const v1::GenerateEvent& event : events) {
      if (delivered && !watch.write(stream, event)) {
        delivered = false;
        stop(gone());
      }
      call.channel.sent(event);
    }
    events.clear();
    if (delivered && call.channel.overflowed()) {
      delivered = false;
      stop(Call::Stop::stalled);
    }
    const std::optional<grpc::Status> status = call.channel.take(events, kPollInterval);
    if (const std::optional<int> now = call.model->queue->position(job); now && *now != position) {
      position = *now;  // moved up: the job ahead finished or left
      events.insert(events.begin(), queued_event(position));
    }
    if (status && events.empty()) return delivered ? *status : call.stopped_status();
    if (std::chrono::system_clock::now() >= context.deadline() || context.IsCancelled()) stop(gone());
  }
}

grpc::Status GenerationService::admit(Call& call) {
  if (!ready_) return {grpc::StatusCode::UNAVAILABLE, "the server is still loading its models"};
  if (!accepting_) return {grpc::StatusCode::UNAVAILABLE, "the server is shutting down"};
  call.model = find_model(call.wire.model());
  if (!call.model)
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "model: unknown model '" + call.wire.model() + "' (served: " + model_names(config_) + ")"};
  try {
    call.request = resolve_request(call.wire, call.model->pipeline, call.model->defaults, config_, call.model->entry);
  } catch (const InvalidRequest& e) {
    return {grpc::StatusCode::INVALID_ARGUMENT, e.what()};
  } catch (const RequestTooLarge& e) {
    return {grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()};
  }
  return grpc::Status::OK;
}

grpc::Status GenerationService::StreamedGenerate(grpc::ServerContext* context, EventStream* stream) {
  auto call = std::make_shared<Call>(uint64_t(config_.max_stream_buffer_bytes));
  call->id = new_request_id();
  grpc::Status status;
  const OpenStream open(open_streams_);
  if (open.number() > config_.max_streams)
    status = {grpc::StatusCode::RESOURCE_EXHAUSTED,
              "too many open streams (server.max_streams = " + std::to_string(config_.max_streams) + ")"};
  else if (!stream->Read(&call->wire))
    status = {grpc::StatusCode::INVALID_ARGUMENT,
              "request: not a valid GenerateRequest (the bytes do not parse, or a string is not UTF-8)"};
  else status = generate(*context, *stream, call);
  finish_call(*call, status);
  return status;
}

grpc::Status GenerationService::submit(const std::shared_ptr<Call>& call, JobQueue::Submitted& submitted) {
  if (grpc::Status refused = admit(*call); !refused.ok()) return refused;
  try {
    submitted = call->model->queue->submit(call->id, job_functions(call));
  } catch (const QueueFull& e) {
    return {grpc::StatusCode::RESOURCE_EXHAUSTED, e.what()};
  } catch (const QueueClosed& e) {
    return {grpc::StatusCode::UNAVAILABLE, e.what()};
  }
  report_queue_depth();
  return grpc::Status::OK;
}

grpc::Status GenerationService::generate(grpc::ServerContext& context, EventStream& stream,
                                         const std::shared_ptr<Call>& call) {
  JobQueue::Submitted submitted;
  if (grpc::Status refused = submit(call, submitted); !refused.ok()) return refused;
  return stream_events(context, stream, *call, submitted.job, submitted.position);
}

GenerationService::Detached GenerationService::start_detached(const v1::GenerateRequest& request) {
  // The front-end takes events as they come and keeps no backlog, so the channel's cap is the stream's.
  auto call = std::make_shared<Call>(uint64_t(config_.max_stream_buffer_bytes));
  call->id = new_request_id();
  call->wire = request;
  JobQueue::Submitted submitted;
  if (grpc::Status refused = submit(call, submitted); !refused.ok()) {
    finish_call(*call, refused);
    return {refused, nullptr};
  }
  return {grpc::Status::OK, std::shared_ptr<DetachedJob>(new DetachedJob(*this, call, submitted.job))};
}

grpc::Status GenerationService::refuse_detached(grpc::Status status) {
  Call call(0);
  call.id = new_request_id();
  finish_call(call, status);
  return status;
}

GenerationService::DetachedJob::DetachedJob(GenerationService& service, std::shared_ptr<Call> call,
                                            std::shared_ptr<Job> job)
    : service_(service), call_(std::move(call)), job_(std::move(job)), position_(-1) {}

const std::string& GenerationService::DetachedJob::request_id() const { return call_->id; }

std::optional<grpc::Status> GenerationService::DetachedJob::take(std::vector<v1::GenerateEvent>& out,
                                                                 Clock::duration timeout) {
  const std::size_t before = out.size();
  const std::optional<int> position = call_->model->queue->position(job_);
  if (position && *position != position_) out.push_back(queued_event(position_ = *position));
  const std::optional<grpc::Status> status =
      call_->channel.take(out, out.size() > before ? Clock::duration() : timeout);
  for (std::size_t i = before; i < out.size(); ++i) call_->channel.sent(out[i]);
  if (!status || out.size() > before) return std::nullopt;  // the status comes on a call that takes no events
  if (!finished_) service_.finish_call(*call_, *status);
  finished_ = true;
  return status;
}

void GenerationService::DetachedJob::cancel() {
  Call::Stop none = Call::Stop::none;
  if (call_->stop.compare_exchange_strong(none, Call::Stop::client)) call_->model->queue->cancel(job_);
}

void GenerationService::finish_call(const Call& call, const grpc::Status& status) {
  const std::string outcome = call.stop == Call::Stop::stalled ? "stalled" : outcome_name(status.error_code());
  const v1::PhaseTimes& t = call.times;
  spdlog::info(
      "request {} {} | queued={:.3f}s text={:.3f}s denoise={:.3f}s decode={:.3f}s encode={:.3f}s "
      "total={:.3f}s frames={} bytes={} | {}{}{}",
      call.id, describe_params(call.wire, call.request), t.queued_seconds(), t.text_encode_seconds(),
      t.denoise_seconds(), t.decode_seconds(), t.encode_seconds(), t.total_seconds(), call.frames, call.bytes, outcome,
      status.ok() ? "" : ": ", status.error_message());
  if (!metrics_) return;
  metrics_->request_finished(outcome);
  if (!status.ok()) return;
  metrics_->observe_phase("queued", t.queued_seconds());
  metrics_->observe_phase("text_encode", t.text_encode_seconds());
  metrics_->observe_phase("denoise", t.denoise_seconds());
  metrics_->observe_phase("decode", t.decode_seconds());
  metrics_->observe_phase("encode", t.encode_seconds());
  metrics_->observe_phase("total", t.total_seconds());
  const auto [used, total] = gpu_memory(models_);
  metrics_->set_gpu_memory(used, total);
}

grpc::Status GenerationService::ListModels(grpc::ServerContext*, const v1::ListModelsRequest*,
                                           v1::ListModelsResponse* response) {
  if (!ready_) return {grpc::StatusCode::UNAVAILABLE, "the server is still loading its models"};
  for (const auto& model : models_) {
    v1::ModelInfo* info = response->add_models();
    const ModelDefaults& defaults = model->defaults;
    const ModelLimits& limits = model->pipeline.limits();
    info->set_name(model->entry.name);
    info->set_device(model->entry.device);
    for (const std::string& device : model->entry.devices) info->add_devices(device);
    if (!model->entry.devices.empty())
      info->set_parallel(describe(model->entry.parallel, model->pipeline.options().devices));
    info->set_dtype(std::string(dtype_name(model->entry.dtype)));
    info->set_default_frames(int32_t(defaults.frames));
    info->set_default_height(int32_t(defaults.height));
    info->set_default_width(int32_t(defaults.width));
    info->set_default_steps(defaults.steps);
    info->set_default_guidance_scale(float(defaults.guidance_scale));
    info->set_default_fps(defaults.fps);
    info->set_spatial_factor(int32_t(limits.spatial_factor));
    info->set_temporal_factor(int32_t(limits.frame_step));
    info->set_takes_image(limits.takes_image);
  }
  return grpc::Status::OK;
}

grpc::Status GenerationService::GetStatus(grpc::ServerContext*, const v1::GetStatusRequest*,
                                          v1::ServerStatus* response) {
  std::size_t depth = 0, capacity = 0;
  std::vector<std::string> running, devices;
  for (const auto& [device, queue] : queues_) {
    depth += queue->waiting();
    capacity += queue->capacity();
    const std::string job = queue->running_job();
    if (!job.empty()) running.push_back(job);
    devices.push_back(device);
  }
  response->set_queue_depth(int32_t(depth));
  response->set_queue_capacity(int32_t(capacity));
  response->set_running_job(join(running, ","));
  response->set_device(join(devices, ","));
  if (ready_) {
    const auto [used, total] = gpu_memory(models_);
    response->set_gpu_memory_used_bytes(used);
    response->set_gpu_memory_total_bytes(total);
  }
  response->set_attention_backend(std::string(backend_name(config_.attention.backend)));
  for (const std::string& name : allowed_backends(config_)) response->add_allowed_backends(name);
  return grpc::Status::OK;
}

}  // namespace sagevid
