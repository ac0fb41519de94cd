#pragma once
// Moves the HTTP API's running jobs into the video store: one thread takes each job's events as the worker
// makes them (the state, denoising progress, the MP4's bytes into its file) and its final status, and sweeps
// the store of expired videos meanwhile. One thread for all jobs: they are few (the queues bound them) and
// their events are coarse (a denoising step, a decoded batch).
#include "generation_service.h"
#include "video_store.h"

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace sagevid {

class VideoRelay {
 public:
  explicit VideoRelay(VideoStore& store);
  // Cancels the jobs still running and relays them to their end.
  ~VideoRelay();
  VideoRelay(const VideoRelay&) = delete;
  VideoRelay& operator=(const VideoRelay&) = delete;

  // The store has the video `id` already.
  void add(const std::string& id, std::shared_ptr<GenerationService::DetachedJob> job);
  // Cancels the job of video `id`; false when it has none running.
  bool cancel(const std::string& id);

 private:
  using Jobs = std::map<std::string, std::shared_ptr<GenerationService::DetachedJob>>;
  void work();
  // One pass over the jobs; true when any had something.
  bool relay_once();
  void apply(const std::string& id, const v1::GenerateEvent& event);
  void end(const std::string& id, const grpc::Status& status);

  VideoStore& store_;
  std::mutex mutex_;
  std::condition_variable changed_;
  Jobs jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace sagevid
