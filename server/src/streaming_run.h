#pragma once
// One job's run: the pipeline's callbacks become events, each decoded batch goes through the encoder at
// once and its bytes out as chunks, after that batch's decode progress (decode k, chunks, encode k).
#include "event_channel.h"
#include "job_queue.h"
#include "metrics.h"
#include "request_validation.h"
#include "video_chunks.h"
#include "video_encoder.h"

#include "sagevid/models/pipeline.h"
#include "sagevid/models/seconds_since.h"

#include <cstddef>
#include <cstdint>

namespace sagevid {

class StreamingRun {
 public:
  StreamingRun(EventChannel& channel, const ResolvedRequest& request, Clock::time_point started,
               ServerMetrics* metrics);

  GenerationCallbacks callbacks(const Job& job);
  // After generate(): the encoder's tail and the last chunk.
  void finish();

  double encode_seconds() const { return encode_s_; }
  double encode_seconds_in_decode() const { return encode_in_decode_s_; }
  uint64_t bytes() const { return chunks_.total(); }
  int64_t frames() const { return encoder_.frames_written(); }

 private:
  static constexpr std::size_t kChunkBytes = std::size_t(1) << 20;  // VideoChunk.data limit, under gRPC's 4 MiB

  double elapsed() const { return seconds_since(started_); }
  void on_progress(const GenerationProgress& progress);
  void on_frames(const at::Tensor& frames);
  void report_encoded();

  EventChannel& channel_;
  const ResolvedRequest& request_;
  const Clock::time_point started_;
  ServerMetrics* const metrics_;
  VideoChunker chunks_;
  StreamingVideoEncoder encoder_;  // after chunks_, which it writes to
  bool text_encoded_ = false;
  double last_step_s_ = 0;
  double encode_s_ = 0, encode_in_decode_s_ = 0;
  int64_t frames_reported_ = 0;
};

}  // namespace sagevid
