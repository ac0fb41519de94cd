#pragma once
// GPU time of named regions of the work a thread queues, for sagevid-bench's per-op breakdown of a transformer
// step. While a StepProfile is alive on a thread, every ProfileRegion on that thread brackets its work with
// two CUDA events on the current stream; with none alive, a region costs one thread-local read. Regions
// should not nest: each one's time is the stream's time between its two events.
#include <string>
#include <utility>
#include <vector>

namespace sagevid {

class StepProfile {
 public:
  StepProfile();  // active on this thread until destroyed
  ~StepProfile();
  StepProfile(const StepProfile&) = delete;
  StepProfile& operator=(const StepProfile&) = delete;

  // Each region's total milliseconds over everything recorded since the last clear(), in first-seen order.
  // Waits for the recorded work to finish.
  std::vector<std::pair<std::string, double>> totals() const;
  void clear();

 private:
  friend class ProfileRegion;
  struct Span {
    const char* name;
    void* start;  // cudaEvent_t
    void* end;
  };
  void* take_event();

  std::vector<Span> spans_;
  std::vector<void*> spare_events_;
  StepProfile* previous_;
};

class ProfileRegion {
 public:
  explicit ProfileRegion(const char* name);  // name: a string literal (kept, not copied)
  ~ProfileRegion();
  ProfileRegion(const ProfileRegion&) = delete;
  ProfileRegion& operator=(const ProfileRegion&) = delete;

 private:
  StepProfile* profile_;
  const char* name_;
  void* start_ = nullptr;
  void* end_ = nullptr;
};

}  // namespace sagevid
