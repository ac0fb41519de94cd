#pragma once
// Measures the CPU memory torch's tensors hold: once installed, torch's CPU allocations go through this
// allocator, which passes them to the default one and keeps the bytes live now and their peak. It stays
// installed for the rest of the process, so that every tensor it handed out is freed through it.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <unordered_map>

namespace sagevid::test {

class CountingCpuAllocator final : public c10::Allocator {
 public:
  static CountingCpuAllocator& installed() {
    static CountingCpuAllocator* const allocator = new CountingCpuAllocator();  // never deleted: see above
    return *allocator;
  }
  CountingCpuAllocator(const CountingCpuAllocator&) = delete;
  CountingCpuAllocator& operator=(const CountingCpuAllocator&) = delete;

  // The peak from now on starts at what is live now.
  void reset_peak() {
    std::lock_guard lock(mutex_);
    peak_ = live_;
  }
  int64_t live() const {
    std::lock_guard lock(mutex_);
    return live_;
  }
  int64_t peak() const {
    std::lock_guard lock(mutex_);
    return peak_;
  }

  c10::DataPtr allocate(size_t bytes) override {
    c10::DataPtr inner = inner_->allocate(bytes);
    void* data = inner.get();
    if (!data) return inner;
    // The default CPU allocator's context is its data pointer: keep that, with our deleter in front of its one.
    inner.release_context();
    {
      std::lock_guard lock(mutex_);
      sizes_[data] = int64_t(bytes);
      live_ += int64_t(bytes);
      peak_ = std::max(peak_, live_);
    }
    return {data, data, &release, inner.device()};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }

 private:
  CountingCpuAllocator() : inner_(c10::GetDefaultCPUAllocator()) { c10::SetCPUAllocator(this, kPriority); }
  static void release(void* data) {
    CountingCpuAllocator& self = installed();
    {
      std::lock_guard lock(self.mutex_);
      const auto it = self.sizes_.find(data);
      if (it != self.sizes_.end()) {
        self.live_ -= it->second;
        self.sizes_.erase(it);
      }
    }
    self.inner_->raw_deleter()(data);
  }

  static constexpr uint8_t kPriority = 100;  // above the default allocator's
  c10::Allocator* inner_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, int64_t> sizes_;
  int64_t live_ = 0, peak_ = 0;
};

}  // namespace sagevid::test
