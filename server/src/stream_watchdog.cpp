#include "stream_watchdog.h"

namespace sagevid {
namespace {
// How often the watched calls are looked at: the write timeout is honoured to within this.
constexpr auto kTick = std::chrono::milliseconds(50);
}  // namespace

StreamWatchdog::StreamWatchdog(Clock::duration write_timeout)
    : write_timeout_(write_timeout), thread_([this] { watch(); }) {}

StreamWatchdog::~StreamWatchdog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stopping_changed_.notify_all();
  thread_.join();
}

StreamWatchdog::Watch::Watch(StreamWatchdog& watchdog, grpc::ServerContext& context, std::function<bool()> stalled)
    : watchdog_(watchdog), context_(context), stalled_(std::move(stalled)) {
  std::lock_guard lock(watchdog_.mutex_);
  watchdog_.watches_.insert(this);
}

StreamWatchdog::Watch::~Watch() {
  std::lock_guard lock(watchdog_.mutex_);  // the watchdog cancels under this lock: never a context that ended
  watchdog_.watches_.erase(this);
}

bool StreamWatchdog::Watch::overdue(Clock::time_point now, Clock::duration timeout) const {
  const Clock::rep started = write_started_.load();
  return (started != kNotWriting && now - Clock::time_point(Clock::duration(started)) > timeout) || stalled_();
}

void StreamWatchdog::watch() {
  std::unique_lock lock(mutex_);
  while (!stopping_changed_.wait_for(lock, kTick, [this] { return stopping_; })) {
    const Clock::time_point now = Clock::now();
    for (Watch* watch : watches_)
      if (!watch->fired_ && watch->overdue(now, write_timeout_)) {
        watch->fired_ = true;
        watch->context_.TryCancel();
      }
  }
}

}  // namespace sagevid
