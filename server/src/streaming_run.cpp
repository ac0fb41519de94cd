#include "streaming_run.h"

#include "generate_events.h"

#include <string_view>
#include <utility>

namespace sagevid {

StreamingRun::StreamingRun(EventChannel& channel, const ResolvedRequest& request, Clock::time_point started,
                           ServerMetrics* metrics)
    : channel_(channel),
      request_(request),
      started_(started),
      metrics_(metrics),
      chunks_(kChunkBytes,
              [&channel](v1::VideoChunk chunk) {
                v1::GenerateEvent event;
                *event.mutable_chunk() = std::move(chunk);
                channel.push(std::move(event));
              }),
      encoder_(request.video, [this](std::string_view bytes) { chunks_.append(bytes); }) {
  channel_.push(progress_event(v1::PHASE_TEXT_ENCODE, 0, 1, elapsed()));  // the pipeline reports no start
}

GenerationCallbacks StreamingRun::callbacks(const Job& job) {
  return {.on_progress = [this](const GenerationProgress& progress) { on_progress(progress); },
          .on_frames = [this](const at::Tensor& frames) { on_frames(frames); },
          .on_preview = [this](const GenerationPreview& preview) { channel_.push(preview_event(preview, elapsed())); },
          .cancelled = [&job] { return job.cancel_requested(); }};
}

void StreamingRun::finish() {
  const auto start = Clock::now();
  if (encoder_.frames_written() > frames_reported_) report_encoded();
  encoder_.finish();
  chunks_.finish();
  encode_s_ += seconds_since(start);
}

void StreamingRun::on_progress(const GenerationProgress& progress) {
  const double now = elapsed();
  if (!text_encoded_ && progress.phase != GenerationPhase::text_encode) {
    channel_.push(progress_event(v1::PHASE_TEXT_ENCODE, 1, 1, now));
    text_encoded_ = true;
  }
  if (progress.phase == GenerationPhase::denoise) {
    if (metrics_ && progress.step > 1) metrics_->observe_step(now - last_step_s_);  // step 1 includes text
    last_step_s_ = now;
  }
  channel_.push(progress_event(proto_phase(progress.phase), progress.step, progress.total, now));
  if (progress.phase == GenerationPhase::decode && encoder_.frames_written() > frames_reported_) report_encoded();
}

void StreamingRun::on_frames(const at::Tensor& frames) {
  const auto start = Clock::now();
  encoder_.add_frames(frames);
  const double spent = seconds_since(start);
  encode_s_ += spent;
  encode_in_decode_s_ += spent;
}

void StreamingRun::report_encoded() {
  chunks_.flush();
  channel_.push(progress_event(v1::PHASE_ENCODE, encoder_.frames_written(), request_.generation.num_frames, elapsed()));
  frames_reported_ = encoder_.frames_written();
}

}  // namespace sagevid
