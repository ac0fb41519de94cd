#pragma once
// What one Generate call looked like from the client: when its first video byte arrived, counted from the call
// and from the end of denoising (the progress event of the last step, which the server sends once the step's
// device work is done), alongside the phase times the server reports in Completed.
#include "sagevid/v1/sagevid.pb.h"

#include <chrono>
#include <optional>

namespace sagevid::client {

struct RequestSample {
  double latency = 0;                                   // s, the call to the end of its stream
  std::optional<double> first_byte;                     // s, the call to the first video chunk
  std::optional<double> denoise_end_to_first_byte;      // s, the last step's progress event to that chunk
  int steps = 0;                                        // denoising steps, as Started reported them
  sagevid::v1::PhaseTimes times;                        // the server's
  uint64_t bytes = 0;
  int64_t frames = 0;

  // The request minus the server's phases of making the video (text encode, denoise, decode, encode): gRPC,
  // admission, the queue and the hand-offs between them.
  double overhead() const;
};

class RequestTimer {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RequestTimer(Clock::time_point start) : start_(start) {}

  // Each event of the stream, as it arrives.
  void on_event(const sagevid::v1::GenerateEvent& event, Clock::time_point at);
  RequestSample finish(const sagevid::v1::Completed& completed, Clock::time_point end) const;

 private:
  double since_start(Clock::time_point at) const { return std::chrono::duration<double>(at - start_).count(); }

  Clock::time_point start_;
  std::optional<Clock::time_point> denoise_end_, first_chunk_;
  int steps_ = 0;
};

}  // namespace sagevid::client
