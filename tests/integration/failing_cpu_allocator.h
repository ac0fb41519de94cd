#pragma once
// Fault injection for error paths on a machine without a GPU: while installed, torch's CPU allocations go
// through this allocator, which fails the n-th allocation after arm(n) and every later one until disarmed, as
// memory that stays full does (a single failure can be absorbed: oneDNN takes another implementation when its
// scratch buffer cannot be had), and passes the others to the default CPU allocator. It fails with
// c10::OutOfMemoryError (what the CUDA caching allocator throws when the device is full), std::bad_alloc (the
// host's), or a c10::Error that stands for any internal error (its what() carries a backtrace, as torch's errors
// do). Removed (the default restored) by the destructor.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <new>
#include <string>

namespace sagevid::test {

class FailingCpuAllocator final : public c10::Allocator {
 public:
  FailingCpuAllocator() : inner_(c10::GetDefaultCPUAllocator()) { c10::SetCPUAllocator(this, kPriority); }
  ~FailingCpuAllocator() override { c10::SetCPUAllocator(inner_, kPriority); }
  FailingCpuAllocator(const FailingCpuAllocator&) = delete;
  FailingCpuAllocator& operator=(const FailingCpuAllocator&) = delete;

  enum class Failure { out_of_memory, bad_alloc, internal_error };

  // The n-th allocation from now (n >= 1) and those after it fail; 0 disarms.
  void arm(int64_t n, Failure failure = Failure::out_of_memory) {
    failure_ = failure;
    full_ = false;
    countdown_ = n;
  }
  bool fired() const { return fired_; }

  c10::DataPtr allocate(size_t bytes) override {
    if (!full_ && countdown_.load() > 0 && countdown_.fetch_sub(1) == 1) full_ = true;
    if (full_) {
      fired_ = true;
      if (failure_ == Failure::bad_alloc) throw std::bad_alloc();
      if (failure_ == Failure::internal_error)
        TORCH_CHECK(false, "injected internal error in /opt/sagevid/src/job.cpp ", std::string(4096, '#'));
      TORCH_CHECK_WITH(OutOfMemoryError, false, "injected out of memory: tried to allocate ", bytes, " bytes");
    }
    return inner_->allocate(bytes);
  }
  // What raw_allocate / raw_deallocate (oneDNN's scratch buffers) use: the inner allocator's deleter.
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }

 private:
  static constexpr uint8_t kPriority = 100;  // above the default allocator's, so that both swaps take effect
  c10::Allocator* inner_;
  std::atomic<int64_t> countdown_{0};
  std::atomic<bool> full_{false};
  std::atomic<bool> fired_{false};
  std::atomic<Failure> failure_{Failure::out_of_memory};
};

}  // namespace sagevid::test
