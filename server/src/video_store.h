#pragma once
// The HTTP API's videos: each one's state (what GET /v1/videos/{id} shows) and its MP4, written to a file in a
// private folder as the job makes it. A finished video is deleted retention_seconds after it ended, and the
// oldest finished ones go first while the files take more than max_bytes (or there are more than kMaxVideos),
// so the disk the API uses stays bounded. Thread-safe.
#include "sagevid/models/seconds_since.h"

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace sagevid {

int64_t unix_now();  // seconds since 1970, as the API's times are

struct VideoState {
  enum class Status { queued, in_progress, completed, failed };
  std::string id, model, prompt;
  std::string size, seconds;  // "WxH" and the clip's length, as the API reports them
  Status status = Status::queued;
  int progress = 0;  // 0..100
  int64_t created_at = 0, completed_at = 0, expires_at = 0;  // unix seconds; 0: not yet
  std::optional<uint64_t> seed;
  std::string error_code, error_message;
  uint64_t bytes = 0;  // of the MP4 so far
  int preview_step = 0;  // the denoising step of the latest preview; 0: none yet
  bool ended() const { return status == Status::completed || status == Status::failed; }
};

class VideoStore {
 public:
  static constexpr std::size_t kMaxVideos = 10000;  // failed videos have no bytes; this bounds them too

  // Creates the private folder in `parent` (empty: the system's temporary folder); the destructor removes it.
  VideoStore(const std::filesystem::path& parent, double retention_seconds, uint64_t max_bytes);
  ~VideoStore();
  VideoStore(const VideoStore&) = delete;
  VideoStore& operator=(const VideoStore&) = delete;

  void add(VideoState state);
  std::optional<VideoState> find(const std::string& id) const;
  // Changes a video's state; nothing when it is gone (deleted meanwhile).
  void update(const std::string& id, const std::function<void(VideoState&)>& change);
  void append(const std::string& id, std::string_view bytes);
  // Completed (error_message empty) or failed; its retention starts now.
  void finish(const std::string& id, const std::string& error_code, const std::string& error_message);
  // The latest preview (a PNG) replaces the one before.
  void set_preview(const std::string& id, int step, std::string png);
  std::optional<std::string> preview(const std::string& id) const;  // nullopt: no such video or no preview yet
  bool remove(const std::string& id);  // false: no such video
  // Deletes what has expired or is over the bounds.
  void sweep();

  std::filesystem::path file(const std::string& id) const { return folder_ / (id + ".mp4"); }
  // Waits up to timeout until the video has more than `offset` bytes or has ended; its state then (nullopt:
  // it is gone).
  std::optional<VideoState> wait(const std::string& id, uint64_t offset, Clock::duration timeout) const;
  uint64_t stored_bytes() const;

 private:
  struct Entry {
    VideoState state;
    Clock::time_point ended;  // for retention
    std::string preview;      // kept apart from state, which find() copies
  };
  void remove_locked(std::map<std::string, Entry>::iterator entry);
  void sweep_locked();

  const std::filesystem::path folder_;
  const Clock::duration retention_;
  const uint64_t max_bytes_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::map<std::string, Entry> videos_;
  uint64_t total_bytes_ = 0;
};

}  // namespace sagevid
