#pragma once
// Ends server streams that stopped moving. A synchronous ServerWriter::Write blocks while the client's
// flow-control window is full, and cannot time out by itself: the watchdog's thread looks at every watched
// call and cancels it (ServerContext::TryCancel, after which the blocked Write returns false) once one write
// has waited longer than the timeout, or once the call's own stall condition holds.
#include <grpcpp/server_context.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

namespace sagevid {

class StreamWatchdog {
 public:
  using Clock = std::chrono::steady_clock;

  explicit StreamWatchdog(Clock::duration write_timeout);
  ~StreamWatchdog();
  StreamWatchdog(const StreamWatchdog&) = delete;
  StreamWatchdog& operator=(const StreamWatchdog&) = delete;

  // One call under watch for the Watch's lifetime, which must end before the call's context does.
  class Watch {
   public:
    Watch(StreamWatchdog& watchdog, grpc::ServerContext& context, std::function<bool()> stalled);
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

    // writer.Write(message) under the write timeout; false when the client did not take the message.
    template <class Writer, class Message>
    bool write(Writer& writer, const Message& message) {
      write_started_ = Clock::now().time_since_epoch().count();
      const bool written = writer.Write(message);
      write_started_ = kNotWriting;
      return written;
    }
    // The watchdog cancelled the call.
    bool fired() const { return fired_.load(); }

   private:
    friend class StreamWatchdog;
    static constexpr Clock::rep kNotWriting = -1;
    bool overdue(Clock::time_point now, Clock::duration timeout) const;

    StreamWatchdog& watchdog_;
    grpc::ServerContext& context_;
    const std::function<bool()> stalled_;
    std::atomic<Clock::rep> write_started_{kNotWriting};
    std::atomic<bool> fired_{false};
  };

 private:
  void watch();

  const Clock::duration write_timeout_;
  std::mutex mutex_;
  std::condition_variable stopping_changed_;
  std::set<Watch*> watches_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace sagevid
