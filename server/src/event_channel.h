#pragma once
// One Generate call's events on their way from the worker, which pushes them, to the handler thread, which
// alone writes them to the stream; then the call's final status. The video bytes waiting to be written are
// bounded: past the cap the channel drops what comes and says it overflowed, since a client that lets that
// much pile up is not reading, and the call is ended.
#include "sagevid/v1/sagevid.pb.h"

#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <vector>

namespace sagevid {

class EventChannel {
 public:
  explicit EventChannel(uint64_t max_unsent_bytes) : max_unsent_bytes_(max_unsent_bytes) {}

  void push(v1::GenerateEvent event);
  void close(grpc::Status status);
  // Moves out what has arrived, waiting up to timeout for something; the status once closed (everything
  // pushed before it has been moved out with it).
  std::optional<grpc::Status> take(std::vector<v1::GenerateEvent>& out, std::chrono::steady_clock::duration timeout);
  // The handler is done with an event it took (written, or given up on): its bytes no longer count.
  void sent(const v1::GenerateEvent& event);
  bool overflowed() const;

 private:
  const uint64_t max_unsent_bytes_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<v1::GenerateEvent> events_;
  std::optional<grpc::Status> status_;
  uint64_t unsent_bytes_ = 0;  // video bytes pushed and not yet sent(), taken or not
  bool overflowed_ = false;
};

}  // namespace sagevid
