#pragma once
// Test helper: decodes a video held in memory with libavformat/libavcodec, as a client playing a stream
// would (reading forward only), into RGB frames plus, for 4:4:4 video, the decoder's own planes.
#include "catch.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace sagevid::test {

struct MemoryReader {
  const std::string* bytes;
  size_t position = 0;

  static int read(void* opaque, uint8_t* buffer, int size) {
    auto* reader = static_cast<MemoryReader*>(opaque);
    const size_t left = reader->bytes->size() - reader->position;
    if (left == 0) return AVERROR_EOF;
    const size_t count = std::min(left, static_cast<size_t>(size));
    std::memcpy(buffer, reader->bytes->data() + reader->position, count);
    reader->position += count;
    return static_cast<int>(count);
  }
};

struct DecodedVideo {
  int width = 0, height = 0;
  AVRational frame_rate{0, 1};
  std::string codec, pixel_format;
  std::vector<at::Tensor> rgb;  // uint8 [height, width, 3] each
  std::vector<at::Tensor> yuv;  // the decoder's planes, [3, height, width] (4:4:4 only)
};

inline void ff_check(int result, const char* call) {
  if (result < 0) {
    char text[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(result, text, sizeof(text));
    FAIL(call << ": " << text);
  }
}

// The decoder reports full-range 4:4:4 as the deprecated yuvj444p; the range is in color_range as well.
inline AVPixelFormat plain_format(int format) {
  return format == AV_PIX_FMT_YUVJ444P ? AV_PIX_FMT_YUV444P : static_cast<AVPixelFormat>(format);
}

// Converts a decoded frame to RGB24 with the matrix and range the stream is tagged with.
inline at::Tensor to_rgb(const AVFrame* frame) {
  SwsContext* scaler =
      sws_getContext(frame->width, frame->height, plain_format(frame->format), frame->width, frame->height,
                     AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr, nullptr);
  REQUIRE(scaler != nullptr);
  const int colorspace = frame->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_DEFAULT;
  const int* matrix = sws_getCoefficients(colorspace);
  const int full_range_input = frame->color_range == AVCOL_RANGE_JPEG || frame->format == AV_PIX_FMT_YUVJ444P;
  sws_setColorspaceDetails(scaler, matrix, full_range_input, matrix, 1, 0, 1 << 16, 1 << 16);
  at::Tensor rgb = at::empty({frame->height, frame->width, 3}, at::kByte);
  uint8_t* destination[1] = {rgb.data_ptr<uint8_t>()};
  const int stride[1] = {3 * frame->width};
  sws_scale(scaler, frame->data, frame->linesize, 0, frame->height, destination, stride);
  sws_freeContext(scaler);
  return rgb;
}

inline at::Tensor planes(const AVFrame* frame) {
  at::Tensor out = at::empty({3, frame->height, frame->width}, at::kByte);
  for (int p = 0; p < 3; ++p)
    for (int y = 0; y < frame->height; ++y)
      std::memcpy(out[p][y].data_ptr<uint8_t>(), frame->data[p] + y * frame->linesize[p], frame->width);
  return out;
}

// Demuxes and decodes `bytes` as a stream: no seeking, as a client playing it while it arrives.
inline DecodedVideo decode_video(const std::string& bytes) {
  MemoryReader reader{&bytes};
  constexpr int kBufferSize = 4096;
  auto* buffer = static_cast<unsigned char*>(av_malloc(kBufferSize));
  AVIOContext* io = avio_alloc_context(buffer, kBufferSize, 0, &reader, &MemoryReader::read, nullptr, nullptr);
  AVFormatContext* format = avformat_alloc_context();
  format->pb = io;
  AVCodecContext* codec = nullptr;
  AVPacket* packet = av_packet_alloc();
  AVFrame* frame = av_frame_alloc();
  DecodedVideo video;
  const auto release = [&] {
    av_frame_free(&frame);
    av_packet_free(&packet);
    avcodec_free_context(&codec);
    avformat_close_input(&format);
    av_freep(&io->buffer);
    avio_context_free(&io);
  };
  try {
    ff_check(avformat_open_input(&format, nullptr, nullptr, nullptr), "avformat_open_input");
    ff_check(avformat_find_stream_info(format, nullptr), "avformat_find_stream_info");
    const int index = av_find_best_stream(format, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
    ff_check(index, "av_find_best_stream");
    const AVStream* stream = format->streams[index];
    const AVCodec* decoder = avcodec_find_decoder(stream->codecpar->codec_id);
    REQUIRE(decoder != nullptr);
    codec = avcodec_alloc_context3(decoder);
    ff_check(avcodec_parameters_to_context(codec, stream->codecpar), "avcodec_parameters_to_context");
    ff_check(avcodec_open2(codec, decoder, nullptr), "avcodec_open2");
    video.width = stream->codecpar->width;
    video.height = stream->codecpar->height;
    video.frame_rate = stream->avg_frame_rate;
    video.codec = decoder->name;
    video.pixel_format = av_get_pix_fmt_name(plain_format(stream->codecpar->format));

    const auto receive_all = [&] {
      while (avcodec_receive_frame(codec, frame) >= 0) {
        video.rgb.push_back(to_rgb(frame));
        if (plain_format(frame->format) == AV_PIX_FMT_YUV444P) video.yuv.push_back(planes(frame));
        av_frame_unref(frame);
      }
    };
    while (av_read_frame(format, packet) >= 0) {
      if (packet->stream_index == index) ff_check(avcodec_send_packet(codec, packet), "avcodec_send_packet");
      av_packet_unref(packet);
      receive_all();
    }
    ff_check(avcodec_send_packet(codec, nullptr), "avcodec_send_packet(flush)");
    receive_all();
  } catch (...) {
    release();
    throw;
  }
  release();
  return video;
}

}  // namespace sagevid::test
