#pragma once
// What the server's FFmpeg users share (the video encoder, the image decoder): owners that free FFmpeg's
// objects, error text, and FFmpeg's log routed into ours.
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}

#include <string>

namespace sagevid {

struct CodecContextFree {
  void operator()(AVCodecContext* context) const { avcodec_free_context(&context); }
};
struct FrameFree {
  void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
struct PacketFree {
  void operator()(AVPacket* packet) const { av_packet_free(&packet); }
};
struct ScalerFree {
  void operator()(SwsContext* scaler) const { sws_freeContext(scaler); }
};

// FFmpeg's text for an error code.
std::string ffmpeg_error(int code);

// From the first call on, FFmpeg's warnings and errors go to our log (spdlog) instead of stderr.
void route_ffmpeg_log();

}  // namespace sagevid
