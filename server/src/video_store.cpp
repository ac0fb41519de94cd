#include "video_store.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace sagevid {
namespace {

// A fresh folder only this server writes to: the names of its files need no care about what else is there.
std::filesystem::path make_private_folder(const std::filesystem::path& parent) {
  const std::filesystem::path base = parent.empty() ? std::filesystem::temp_directory_path() : parent;
  std::string pattern = (base / "sagevid-videos-XXXXXX").string();
  if (!mkdtemp(pattern.data()))
    throw std::runtime_error("http: cannot create a folder for videos in " + base.string() + ": " +
                             std::generic_category().message(errno));
  return pattern;
}

}  // namespace

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

VideoStore::VideoStore(const std::filesystem::path& parent, double retention_seconds, uint64_t max_bytes)
    : folder_(make_private_folder(parent)),
      retention_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(retention_seconds))),
      max_bytes_(max_bytes) {}

VideoStore::~VideoStore() {
  std::error_code error;
  std::filesystem::remove_all(folder_, error);
  if (error) spdlog::warn("http: cannot remove {}: {}", folder_.string(), error.message());
}

void VideoStore::add(VideoState state) {
  std::lock_guard lock(mutex_);
  const std::string id = state.id;
  videos_[id] = Entry{std::move(state), {}};
  sweep_locked();
}

std::optional<VideoState> VideoStore::find(const std::string& id) const {
  std::lock_guard lock(mutex_);
  const auto entry = videos_.find(id);
  if (entry == videos_.end()) return std::nullopt;
  return entry->second.state;
}

void VideoStore::update(const std::string& id, const std::function<void(VideoState&)>& change) {
  {
    std::lock_guard lock(mutex_);
    const auto entry = videos_.find(id);
    if (entry == videos_.end()) return;
    change(entry->second.state);
  }
  changed_.notify_all();
}

void VideoStore::append(const std::string& id, std::string_view bytes) {
  {
    std::lock_guard lock(mutex_);
    const auto entry = videos_.find(id);
    if (entry == videos_.end() || entry->second.state.ended() || bytes.empty()) return;
    std::ofstream out(file(id), std::ios::binary | std::ios::app);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    if (!out.flush()) throw std::runtime_error("http: cannot write " + file(id).string());
    entry->second.state.bytes += bytes.size();
    total_bytes_ += bytes.size();
  }
  changed_.notify_all();
}

void VideoStore::finish(const std::string& id, const std::string& error_code, const std::string& error_message) {
  {
    std::lock_guard lock(mutex_);
    const auto entry = videos_.find(id);
    if (entry == videos_.end() || entry->second.state.ended()) return;  // the first ending counts
    VideoState& state = entry->second.state;
    state.status = error_message.empty() ? VideoState::Status::completed : VideoState::Status::failed;
    if (!error_message.empty()) {
      state.error_code = error_code;
      state.error_message = error_message;
    } else {
      state.progress = 100;
    }
    state.completed_at = unix_now();
    state.expires_at = state.completed_at + std::chrono::ceil<std::chrono::seconds>(retention_).count();
    entry->second.ended = Clock::now();
    sweep_locked();
  }
  changed_.notify_all();
}

void VideoStore::set_preview(const std::string& id, int step, std::string png) {
  std::lock_guard lock(mutex_);
  const auto entry = videos_.find(id);
  if (entry == videos_.end() || entry->second.state.ended()) return;
  entry->second.preview = std::move(png);
  entry->second.state.preview_step = step;
}

std::optional<std::string> VideoStore::preview(const std::string& id) const {
  std::lock_guard lock(mutex_);
  const auto entry = videos_.find(id);
  if (entry == videos_.end() || entry->second.preview.empty()) return std::nullopt;
  return entry->second.preview;
}

bool VideoStore::remove(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    const auto entry = videos_.find(id);
    if (entry == videos_.end()) return false;
    remove_locked(entry);
  }
  changed_.notify_all();
  return true;
}

void VideoStore::sweep() {
  {
    std::lock_guard lock(mutex_);
    sweep_locked();
  }
  changed_.notify_all();
}

void VideoStore::remove_locked(std::map<std::string, Entry>::iterator entry) {
  std::error_code error;
  std::filesystem::remove(file(entry->first), error);  // a download under way keeps reading its open file
  total_bytes_ -= entry->second.state.bytes;
  videos_.erase(entry);
}

void VideoStore::sweep_locked() {
  const Clock::time_point now = Clock::now();
  for (auto entry = videos_.begin(); entry != videos_.end();) {
    const auto next = std::next(entry);
    if (entry->second.state.ended() && now - entry->second.ended >= retention_) remove_locked(entry);
    entry = next;
  }
  // Over the bounds: the video that ended first goes first; running ones stay.
  while (total_bytes_ > max_bytes_ || videos_.size() > kMaxVideos) {
    auto oldest = videos_.end();
    for (auto entry = videos_.begin(); entry != videos_.end(); ++entry)
      if (entry->second.state.ended() && (oldest == videos_.end() || entry->second.ended < oldest->second.ended))
        oldest = entry;
    if (oldest == videos_.end()) return;
    remove_locked(oldest);
  }
}

std::optional<VideoState> VideoStore::wait(const std::string& id, uint64_t offset, Clock::duration timeout) const {
  std::unique_lock lock(mutex_);
  std::optional<VideoState> state;
  changed_.wait_for(lock, timeout, [&] {
    const auto entry = videos_.find(id);
    state = entry == videos_.end() ? std::nullopt : std::optional(entry->second.state);
    return !state || state->ended() || state->bytes > offset;
  });
  return state;
}

uint64_t VideoStore::stored_bytes() const {
  std::lock_guard lock(mutex_);
  return total_bytes_;
}

}  // namespace sagevid
