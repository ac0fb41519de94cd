#pragma once
// Streaming video encoder: uint8 RGB frames in (a temporal batch at a time, as the VAE decodes them), output
// bytes out through a callback as soon as the muxer emits them, so the client gets the first fragment of
// the video before the last frames are decoded. H.264 (libx264, yuv420p via libswscale) in fragmented MP4
// written through a custom AVIOContext; or H.264 lossless (yuv444p, qp 0); or the raw RGB frames.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace sagevid {

enum class VideoFormat { mp4_h264, mp4_h264_lossless, rgb_frames };

struct VideoEncoderOptions {
  int width = 0, height = 0;  // of the frames; H.264 yuv420p needs both even
  int fps = 8;
  VideoFormat format = VideoFormat::mp4_h264;
  int crf = 23;                     // libx264 quality (lossy format)
  std::string preset = "veryfast";  // libx264 speed/size trade-off
};

const char* mime_type(VideoFormat format);
// Throws std::invalid_argument naming the first bad option (the encoder's constructor checks the same).
void check_video_options(const VideoEncoderOptions& options);

class StreamingVideoEncoder {
 public:
  // on_bytes receives the output in order, in pieces of any size; it is called from add_frames and finish.
  StreamingVideoEncoder(const VideoEncoderOptions& options, std::function<void(std::string_view bytes)> on_bytes);
  ~StreamingVideoEncoder();
  StreamingVideoEncoder(const StreamingVideoEncoder&) = delete;
  StreamingVideoEncoder& operator=(const StreamingVideoEncoder&) = delete;

  // frames: uint8 [F, height, width, 3] (any device; copied to the CPU). Throws std::invalid_argument on a
  // wrong shape/dtype, std::runtime_error naming the FFmpeg call that failed.
  void add_frames(const at::Tensor& frames);
  // Flushes the encoder and writes the trailer; no frames after this.
  void finish();

  int64_t frames_written() const;
  int64_t bytes_written() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sagevid
