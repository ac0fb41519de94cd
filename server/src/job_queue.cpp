#include "job_queue.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

namespace sagevid {
namespace {
std::size_t checked_capacity(std::size_t capacity) {  // before the worker starts: a throw must not leave it
  if (capacity == 0) throw std::invalid_argument("JobQueue: capacity must be at least 1");
  return capacity;
}
}  // namespace

JobQueue::JobQueue(std::string name, std::size_t capacity)
    : name_(std::move(name)), capacity_(checked_capacity(capacity)), worker_([this] { work(); }) {}

JobQueue::~JobQueue() {
  cancel_all();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

JobQueue::Submitted JobQueue::submit(std::string id, JobFunctions functions) {
  auto job = std::make_shared<Job>(std::move(id), std::move(functions));
  std::lock_guard lock(mutex_);
  if (closed_) throw QueueClosed("queue '" + name_ + "' is closed: the server is shutting down");
  if (waiting_.size() >= capacity_)
    throw QueueFull("queue '" + name_ + "' is full (" + std::to_string(capacity_) + " jobs waiting)");
  waiting_.push_back(job);
  changed_.notify_all();
  return {job, position_locked(job).value()};
}

std::optional<int> JobQueue::position(const std::shared_ptr<Job>& job) const {
  std::lock_guard lock(mutex_);
  return position_locked(job);
}

std::optional<int> JobQueue::position_locked(const std::shared_ptr<Job>& job) const {
  const auto it = std::find(waiting_.begin(), waiting_.end(), job);
  if (it == waiting_.end()) return std::nullopt;
  return static_cast<int>(it - waiting_.begin()) + (running_ ? 1 : 0);
}

void JobQueue::cancel(const std::shared_ptr<Job>& job) {
  job->cancel_requested_ = true;
  {
    std::lock_guard lock(mutex_);
    const auto it = std::find(waiting_.begin(), waiting_.end(), job);
    if (it == waiting_.end()) return;  // running (it polls the flag) or already over
    waiting_.erase(it);
    job->state_ = Job::State::dropped;
  }
  changed_.notify_all();
  if (job->functions_.dropped) job->functions_.dropped();
}

void JobQueue::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

std::deque<std::shared_ptr<Job>> JobQueue::take_all_waiting() {
  std::lock_guard lock(mutex_);
  std::deque<std::shared_ptr<Job>> taken;
  taken.swap(waiting_);
  for (const auto& job : taken) {
    job->cancel_requested_ = true;
    job->state_ = Job::State::dropped;
  }
  if (running_) running_->cancel_requested_ = true;
  return taken;
}

void JobQueue::cancel_all() {
  close();
  const auto dropped = take_all_waiting();
  changed_.notify_all();
  for (const auto& job : dropped)
    if (job->functions_.dropped) job->functions_.dropped();
}

bool JobQueue::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  return changed_.wait_until(lock, deadline, [this] { return waiting_.empty() && !running_; });
}

std::size_t JobQueue::waiting() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

std::string JobQueue::running_job() const {
  std::lock_guard lock(mutex_);
  return running_ ? running_->id() : std::string();
}

void JobQueue::work() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
    if (waiting_.empty()) return;  // stopping, nothing left
    running_ = waiting_.front();
    waiting_.pop_front();
    running_->state_ = Job::State::running;
    const std::shared_ptr<Job> job = running_;
    lock.unlock();
    try {
      job->functions_.run(*job);
    } catch (const std::exception& e) {  // the run function reports its own errors; this is a last guard
      spdlog::error("queue {}: job {} failed outside its handler: {}", name_, job->id(), e.what());
    }
    lock.lock();
    job->state_ = Job::State::finished;
    running_.reset();
    changed_.notify_all();
  }
}

}  // namespace sagevid
