#include "video_relay.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <vector>

namespace sagevid {
namespace {

constexpr auto kIdleWait = std::chrono::milliseconds(20);  // between passes with nothing new: a step is longer

// A failed video's error code: the gRPC status's name in lower case ("resource_exhausted").
std::string error_code(grpc::StatusCode code) {
  static const char* const names[] = {
      "ok",        "cancelled",      "unknown",           "invalid_argument",   "deadline_exceeded",
      "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition",
      "aborted",   "out_of_range",   "unimplemented",     "internal",           "unavailable",
      "data_loss", "unauthenticated"};
  const auto index = std::size_t(code);
  return index < std::size(names) ? names[index] : "unknown";
}

}  // namespace

VideoRelay::VideoRelay(VideoStore& store) : store_(store), thread_([this] { work(); }) {}

VideoRelay::~VideoRelay() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [id, job] : jobs_) job->cancel();
  }
  changed_.notify_all();
  thread_.join();
}

void VideoRelay::add(const std::string& id, std::shared_ptr<GenerationService::DetachedJob> job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) job->cancel();
    jobs_.emplace(id, std::move(job));
  }
  changed_.notify_all();
}

bool VideoRelay::cancel(const std::string& id) {
  std::lock_guard lock(mutex_);
  const auto entry = jobs_.find(id);
  if (entry == jobs_.end()) return false;
  entry->second->cancel();
  return true;
}

void VideoRelay::work() {
  while (true) {
    const bool busy = relay_once();
    store_.sweep();
    std::unique_lock lock(mutex_);
    if (stopping_ && jobs_.empty()) return;
    if (!busy) changed_.wait_for(lock, kIdleWait);
  }
}

bool VideoRelay::relay_once() {
  Jobs jobs;
  {
    std::lock_guard lock(mutex_);
    jobs = jobs_;
  }
  bool busy = false;
  std::vector<v1::GenerateEvent> events;
  for (const auto& [id, job] : jobs) {
    events.clear();
    const std::optional<grpc::Status> status = job->take(events, {});
    try {
      for (const v1::GenerateEvent& event : events) apply(id, event);
    } catch (const std::exception& error) {  // the disk is full, say: the video cannot be kept
      spdlog::error("http: video {}: {}", id, error.what());
      store_.finish(id, "internal", "the server could not store the video");
      job->cancel();
    }
    busy = busy || !events.empty() || status;
    if (!status) continue;
    end(id, *status);
    std::lock_guard lock(mutex_);
    jobs_.erase(id);
  }
  return busy;
}

void VideoRelay::apply(const std::string& id, const v1::GenerateEvent& event) {
  if (event.has_chunk()) {
    store_.append(id, event.chunk().data());
  } else if (event.has_preview()) {
    store_.set_preview(id, event.preview().step(), event.preview().png());
  } else if (event.has_started()) {
    store_.update(id, [&](VideoState& state) {
      state.status = VideoState::Status::in_progress;
      state.seed = event.started().seed();
    });
  } else if (event.has_progress() && event.progress().phase() == v1::PHASE_DENOISE && event.progress().total() > 0) {
    // 100 is for completed: the decode and encode after the last step still take time.
    const int percent = std::min(99, int(int64_t(event.progress().step()) * 100 / event.progress().total()));
    store_.update(id, [percent](VideoState& state) { state.progress = percent; });
  }
}

void VideoRelay::end(const std::string& id, const grpc::Status& status) {
  if (status.ok()) store_.finish(id, "", "");
  else store_.finish(id, error_code(status.error_code()), status.error_message());
}

}  // namespace sagevid
