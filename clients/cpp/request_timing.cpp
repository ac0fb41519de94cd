#include "request_timing.h"

namespace sagevid::client {

double RequestSample::overhead() const {
  return latency -
         (times.text_encode_seconds() + times.denoise_seconds() + times.decode_seconds() + times.encode_seconds());
}

void RequestTimer::on_event(const sagevid::v1::GenerateEvent& event, Clock::time_point at) {
  if (event.has_started()) steps_ = event.started().steps();
  if (event.has_progress()) {
    const sagevid::v1::Progress& progress = event.progress();
    if (progress.phase() == sagevid::v1::PHASE_DENOISE && progress.total() > 0 && progress.step() == progress.total())
      denoise_end_ = at;
  }
  if (event.has_chunk() && !event.chunk().data().empty() && !first_chunk_) first_chunk_ = at;
}

RequestSample RequestTimer::finish(const sagevid::v1::Completed& completed, Clock::time_point end) const {
  RequestSample sample;
  sample.latency = since_start(end);
  if (first_chunk_) {
    sample.first_byte = since_start(*first_chunk_);
    if (denoise_end_)
      sample.denoise_end_to_first_byte = std::chrono::duration<double>(*first_chunk_ - *denoise_end_).count();
  }
  sample.steps = steps_;
  sample.times = completed.times();
  sample.bytes = completed.bytes();
  sample.frames = completed.frames();
  return sample;
}

}  // namespace sagevid::client
