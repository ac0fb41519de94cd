// The job queue on its own: FIFO order, positions, capacity, cancel of waiting and running jobs, close,
// drain and the destructor. Jobs here are plain functions that block on gates the test opens.
#include "catch.h"
#include "test_random.h"

#include "job_queue.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using sagevid::Job;
using sagevid::JobFunctions;
using sagevid::JobQueue;

namespace {

// Thread-safe record of what the jobs did, with a wait for a condition on it.
struct Journal {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> events;

  void add(const std::string& event) {
    {
      std::lock_guard lock(mutex);
      events.push_back(event);
    }
    changed.notify_all();
  }
  bool wait_for(const std::string& event, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout,
                            [&] { return std::find(events.begin(), events.end(), event) != events.end(); });
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return events;
  }
};

// A latch the test opens to let a job finish.
struct Gate {
  std::mutex mutex;
  std::condition_variable opened_cv;
  bool opened = false;
  void open() {
    {
      std::lock_guard lock(mutex);
      opened = true;
    }
    opened_cv.notify_all();
  }
  // Returns true when opened, false when the job was cancelled first.
  bool pass(const Job& job) {
    std::unique_lock lock(mutex);
    while (!opened) {
      if (job.cancel_requested()) return false;
      opened_cv.wait_for(lock, 2ms);
    }
    return true;
  }
};

JobFunctions gated_job(Journal& journal, Gate& gate, const std::string& name) {
  return {.run =
              [&journal, &gate, name](Job& job) {
                journal.add("start " + name);
                journal.add((gate.pass(job) ? "finish " : "cancelled ") + name);
              },
          .dropped = [&journal, name] { journal.add("dropped " + name); }};
}

}  // namespace

TEST_CASE("jobs run one at a time in FIFO order with their positions", "[integration][server][queue]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  const int jobs = std::uniform_int_distribution<int>(3, 8)(draw);
  Journal journal;
  std::vector<Gate> gates(jobs);
  JobQueue queue("test", jobs);

  std::vector<std::shared_ptr<Job>> submitted;
  for (int i = 0; i < jobs; ++i) {
    const auto job = queue.submit("job" + std::to_string(i), gated_job(journal, gates[i], std::to_string(i)));
    CHECK(job.position == i);
    submitted.push_back(job.job);
    if (i == 0) REQUIRE(journal.wait_for("start 0"));  // the first one is running before the others queue
  }
  CHECK(queue.running_job() == "job0");
  CHECK(queue.waiting() == size_t(jobs - 1));
  CHECK_FALSE(queue.position(submitted[0]).has_value());  // running, no longer waiting
  for (int i = 1; i < jobs; ++i) CHECK(queue.position(submitted[i]) == i);

  std::vector<std::string> expected;
  for (int i = 0; i < jobs; ++i) {
    expected.push_back("start " + std::to_string(i));
    expected.push_back("finish " + std::to_string(i));
    gates[i].open();
    if (i + 1 < jobs) {  // each waiting job moves up by one as the running one finishes
      REQUIRE(journal.wait_for("start " + std::to_string(i + 1)));
      for (int j = i + 2; j < jobs; ++j) CHECK(queue.position(submitted[j]) == j - i - 1);
    }
  }
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  CHECK(journal.snapshot() == expected);
  CHECK(queue.running_job().empty());
}

TEST_CASE("a full queue refuses at once and takes jobs again when one leaves", "[integration][server][queue]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  const size_t capacity = std::uniform_int_distribution<size_t>(1, 5)(draw);
  Journal journal;
  std::vector<Gate> gates(capacity + 2);
  JobQueue queue("gpu0", capacity);

  queue.submit("running", gated_job(journal, gates[0], "running"));
  REQUIRE(journal.wait_for("start running"));
  for (size_t i = 1; i <= capacity; ++i)
    queue.submit("w" + std::to_string(i), gated_job(journal, gates[i], std::to_string(i)));
  CHECK(queue.waiting() == capacity);
  const auto before = std::chrono::steady_clock::now();
  REQUIRE_THROWS_MATCHES(queue.submit("extra", gated_job(journal, gates.back(), "extra")), sagevid::QueueFull,
                         Catch::Matchers::Predicate<sagevid::QueueFull>([&](const sagevid::QueueFull& e) {
                           return std::string(e.what()).find("'gpu0' is full") != std::string::npos;
                         }));
  CHECK(std::chrono::steady_clock::now() - before < 100ms);

  gates[0].open();  // the running job leaves, the first waiting one starts: one slot frees
  REQUIRE(journal.wait_for("start 1"));
  const auto extra = queue.submit("extra", gated_job(journal, gates.back(), "extra"));
  CHECK(extra.position == int(capacity));  // capacity - 1 waiting ahead plus the running one
  for (auto& gate : gates) gate.open();
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  CHECK(journal.wait_for("finish extra"));
}

TEST_CASE("cancelling a waiting job drops it without running it", "[integration][server][queue]") {
  Journal journal;
  Gate first, second, third;
  JobQueue queue("test", 4);
  queue.submit("a", gated_job(journal, first, "a"));
  REQUIRE(journal.wait_for("start a"));
  const auto b = queue.submit("b", gated_job(journal, second, "b"));
  queue.submit("c", gated_job(journal, third, "c"));
  CHECK(queue.waiting() == 2);

  queue.cancel(b.job);
  CHECK(b.job->state() == Job::State::dropped);
  CHECK(journal.wait_for("dropped b", 0ms));
  CHECK(queue.waiting() == 1);

  first.open();
  third.open();
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  CHECK(journal.snapshot() == std::vector<std::string>{"start a", "dropped b", "finish a", "start c", "finish c"});
}

TEST_CASE("cancelling the running job lets the next one start", "[integration][server][queue]") {
  Journal journal;
  Gate never, later;
  JobQueue queue("test", 2);
  const auto running = queue.submit("slow", gated_job(journal, never, "slow"));
  queue.submit("next", gated_job(journal, later, "next"));
  REQUIRE(journal.wait_for("start slow"));
  CHECK(running.job->state() == Job::State::running);

  queue.cancel(running.job);
  REQUIRE(journal.wait_for("cancelled slow"));
  REQUIRE(journal.wait_for("start next"));
  CHECK(running.job->state() == Job::State::finished);
  later.open();
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  CHECK(journal.wait_for("finish next", 0ms));
}

TEST_CASE("a closed queue refuses new jobs and still runs the queued ones", "[integration][server][queue]") {
  Journal journal;
  Gate a, b;
  JobQueue queue("test", 2);
  queue.submit("a", gated_job(journal, a, "a"));
  queue.submit("b", gated_job(journal, b, "b"));
  queue.close();
  REQUIRE_THROWS_AS(queue.submit("c", gated_job(journal, b, "c")), sagevid::QueueClosed);

  CHECK_FALSE(queue.wait_idle(std::chrono::steady_clock::now() + 20ms));  // still busy: the drain times out
  a.open();
  b.open();
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  CHECK(journal.snapshot() == std::vector<std::string>{"start a", "finish a", "start b", "finish b"});
}

TEST_CASE("cancel_all stops the running job and drops the waiting ones", "[integration][server][queue]") {
  Journal journal;
  Gate never;
  JobQueue queue("test", 3);
  queue.submit("a", gated_job(journal, never, "a"));
  REQUIRE(journal.wait_for("start a"));
  queue.submit("b", gated_job(journal, never, "b"));
  queue.submit("c", gated_job(journal, never, "c"));

  queue.cancel_all();
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  const auto events = journal.snapshot();
  CHECK(std::count(events.begin(), events.end(), "dropped b") == 1);
  CHECK(std::count(events.begin(), events.end(), "dropped c") == 1);
  CHECK(std::count(events.begin(), events.end(), "cancelled a") == 1);
  CHECK(events.size() == 4);
  REQUIRE_THROWS_AS(queue.submit("d", gated_job(journal, never, "d")), sagevid::QueueClosed);
}

TEST_CASE("the queue's destructor cancels its work and joins the worker", "[integration][server][queue]") {
  Journal journal;
  Gate never;
  {
    JobQueue queue("test", 2);
    queue.submit("a", gated_job(journal, never, "a"));
    REQUIRE(journal.wait_for("start a"));
    queue.submit("b", gated_job(journal, never, "b"));
  }
  auto events = journal.snapshot();
  std::sort(events.begin(), events.end());  // dropping b and stopping a happen concurrently
  CHECK(events == std::vector<std::string>{"cancelled a", "dropped b", "start a"});
}

TEST_CASE("a job that throws does not stop the worker", "[integration][server][queue]") {
  Journal journal;
  Gate open;
  open.open();
  JobQueue queue("test", 2);
  queue.submit("bad", {.run = [](Job&) { throw std::runtime_error("boom"); }, .dropped = {}});
  queue.submit("good", gated_job(journal, open, "good"));
  REQUIRE(queue.wait_idle(std::chrono::steady_clock::now() + 5s));
  CHECK(journal.snapshot() == std::vector<std::string>{"start good", "finish good"});
  REQUIRE_THROWS_WITH(JobQueue("zero", 0), ContainsSubstring("capacity must be at least 1"));
}
