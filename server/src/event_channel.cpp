#include "event_channel.h"

#include <algorithm>
#include <iterator>

namespace sagevid {
namespace {
uint64_t video_bytes(const v1::GenerateEvent& event) { return event.has_chunk() ? event.chunk().data().size() : 0; }
}  // namespace

void EventChannel::push(v1::GenerateEvent event) {
  {
    std::lock_guard lock(mutex_);
    if (overflowed_) return;
    unsent_bytes_ += video_bytes(event);
    if (unsent_bytes_ > max_unsent_bytes_) {
      overflowed_ = true;
      events_.clear();  // the call ends without them: free the memory now
      return;
    }
    events_.push_back(std::move(event));
  }
  changed_.notify_all();
}

void EventChannel::close(grpc::Status status) {
  {
    std::lock_guard lock(mutex_);
    if (!status_) status_ = std::move(status);
  }
  changed_.notify_all();
}

std::optional<grpc::Status> EventChannel::take(std::vector<v1::GenerateEvent>& out,
                                               std::chrono::steady_clock::duration timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [this] { return !events_.empty() || status_; });
  std::move(events_.begin(), events_.end(), std::back_inserter(out));
  events_.clear();
  return status_;
}

void EventChannel::sent(const v1::GenerateEvent& event) {
  std::lock_guard lock(mutex_);
  unsent_bytes_ -= std::min(unsent_bytes_, video_bytes(event));
}

bool EventChannel::overflowed() const {
  std::lock_guard lock(mutex_);
  return overflowed_;
}

}  // namespace sagevid
