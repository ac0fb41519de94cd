#pragma once
// A bounded FIFO of jobs in front of one worker thread (the server runs one per device). The queue knows
// nothing of what a job does: a job is a run function, which polls its cancel flag, and a dropped function,
// called instead when the job is cancelled before it started. The capacity counts waiting jobs only; the
// running one is extra.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace sagevid {

struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct QueueClosed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Job;

struct JobFunctions {
  std::function<void(Job&)> run;  // on the worker thread; should return soon after cancel_requested()
  std::function<void()> dropped;  // cancelled while waiting: it never runs; called on the cancelling thread
};

class Job {
 public:
  enum class State { waiting, running, finished, dropped };

  Job(std::string id, JobFunctions functions) : id_(std::move(id)), functions_(std::move(functions)) {}

  const std::string& id() const { return id_; }
  bool cancel_requested() const { return cancel_requested_.load(); }
  State state() const { return state_.load(); }

 private:
  friend class JobQueue;
  std::string id_;
  JobFunctions functions_;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<State> state_{State::waiting};
};

class JobQueue {
 public:
  JobQueue(std::string name, std::size_t capacity);
  ~JobQueue();  // cancels everything and joins the worker
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  struct Submitted {
    std::shared_ptr<Job> job;
    int position = 0;  // jobs that run before it (the running one included)
  };
  // Throws QueueFull when capacity jobs are already waiting, QueueClosed after close().
  Submitted submit(std::string id, JobFunctions functions);

  // A waiting job is dropped at once; a running one is asked to stop (its run function polls the flag).
  void cancel(const std::shared_ptr<Job>& job);
  // Refuses further submissions; queued work still runs.
  void close();
  // Cancels the running job and drops the waiting ones.
  void cancel_all();
  // Waits until nothing is waiting or running; false when the deadline came first.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);

  const std::string& name() const { return name_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t waiting() const;
  // Jobs that run before this waiting one (the running one included); nullopt once it left the queue.
  std::optional<int> position(const std::shared_ptr<Job>& job) const;
  std::string running_job() const;  // its id, empty when idle

 private:
  void work();
  std::optional<int> position_locked(const std::shared_ptr<Job>& job) const;
  std::deque<std::shared_ptr<Job>> take_all_waiting();

  const std::string name_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::shared_ptr<Job>> waiting_;
  std::shared_ptr<Job> running_;
  bool closed_ = false;
  bool stopping_ = false;
  std::thread worker_;  // last: starts after the members it uses
};

}  // namespace sagevid
