#include "video_encoder.h"

#include "ffmpeg_support.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <exception>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace sagevid {
namespace {

// FFmpeg 7 made the write callback's buffer const.
#if LIBAVFORMAT_VERSION_MAJOR >= 61
using WriteBuffer = const uint8_t*;
#else
using WriteBuffer = uint8_t*;
#endif

constexpr int kIoBufferSize = 64 * 1024;
constexpr std::array<const char*, 10> kX264Presets = {"ultrafast", "superfast", "veryfast", "faster",   "fast",
                                                      "medium",    "slow",      "slower",   "veryslow", "placebo"};

// Throws std::runtime_error naming the FFmpeg call when it returned an error code.
int check(int result, const char* call) {
  if (result < 0) throw std::runtime_error(std::string(call) + " failed: " + ffmpeg_error(result));
  return result;
}

template <typename T>
T* check_alloc(T* pointer, const char* call) {
  if (pointer == nullptr) throw std::runtime_error(std::string(call) + " failed: out of memory");
  return pointer;
}

struct FormatContextFree {
  void operator()(AVFormatContext* context) const { avformat_free_context(context); }
};
struct IoContextFree {
  void operator()(AVIOContext* io) const {
    av_freep(&io->buffer);  // the buffer may have been reallocated by FFmpeg: free its current one
    avio_context_free(&io);
  }
};
}  // namespace

void check_video_options(const VideoEncoderOptions& options) {
  if (options.width <= 0 || options.height <= 0)
    throw std::invalid_argument("video encoder: width and height must be positive, got " +
                                std::to_string(options.width) + "x" + std::to_string(options.height));
  if (options.fps <= 0 || options.fps > 240)
    throw std::invalid_argument("video encoder: fps must be in 1..240, got " + std::to_string(options.fps));
  if (options.format == VideoFormat::rgb_frames) return;
  if (options.format == VideoFormat::mp4_h264 && (options.width % 2 != 0 || options.height % 2 != 0))
    throw std::invalid_argument("video encoder: H.264 yuv420p needs an even width and height, got " +
                                std::to_string(options.width) + "x" + std::to_string(options.height));
  if (options.crf < 0 || options.crf > 51)
    throw std::invalid_argument("video encoder: crf must be in 0..51, got " + std::to_string(options.crf));
  if (std::find(kX264Presets.begin(), kX264Presets.end(), options.preset) == kX264Presets.end())
    throw std::invalid_argument("video encoder: unknown x264 preset '" + options.preset +
                                "' (ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow)");
}

const char* mime_type(VideoFormat format) {
  switch (format) {
    case VideoFormat::mp4_h264:
    case VideoFormat::mp4_h264_lossless: return "video/mp4";
    case VideoFormat::rgb_frames: return "application/octet-stream";
  }
  return "application/octet-stream";
}

struct StreamingVideoEncoder::State {
  VideoEncoderOptions options;
  std::function<void(std::string_view)> on_bytes;
  int64_t frames = 0, bytes = 0;
  bool finished = false;
  bool failed = false;
  std::exception_ptr callback_error;  // thrown by on_bytes inside an FFmpeg call; rethrown after it returns

  // Members are released in reverse order: the format context before the IO context it writes through.
  std::unique_ptr<AVIOContext, IoContextFree> io;
  std::unique_ptr<AVFormatContext, FormatContextFree> format;
  std::unique_ptr<AVCodecContext, CodecContextFree> codec;
  std::unique_ptr<SwsContext, ScalerFree> scaler;
  std::unique_ptr<AVFrame, FrameFree> frame;
  std::unique_ptr<AVPacket, PacketFree> packet;
  AVStream* stream = nullptr;  // owned by `format`

  bool is_mp4() const { return options.format != VideoFormat::rgb_frames; }
  bool lossless() const { return options.format == VideoFormat::mp4_h264_lossless; }

  void emit(std::string_view data) {
    on_bytes(data);
    bytes += static_cast<int64_t>(data.size());
  }

  // The AVIOContext's write callback. on_bytes may throw (a client that went away); an exception must not
  // cross FFmpeg's C frames, so it is kept and the write reports an error instead.
  static int write_packet(void* opaque, WriteBuffer data, int size) {
    auto* state = static_cast<State*>(opaque);
    try {
      state->emit(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(size)));
      return size;
    } catch (...) {
      state->callback_error = std::current_exception();
      return AVERROR_EXTERNAL;
    }
  }

  // After each FFmpeg call that may write: a failed on_bytes or write surfaces here.
  void check_output(const char* call) {
    if (callback_error) std::rethrow_exception(callback_error);
    if (io && io->error < 0) check(io->error, call);
  }

  void open_codec() {
    const AVCodec* encoder = avcodec_find_encoder_by_name("libx264");
    if (encoder == nullptr) throw std::runtime_error("avcodec_find_encoder_by_name: libx264 is not available");
    codec.reset(check_alloc(avcodec_alloc_context3(encoder), "avcodec_alloc_context3"));
    codec->width = options.width;
    codec->height = options.height;
    codec->time_base = AVRational{1, options.fps};
    codec->framerate = AVRational{options.fps, 1};
    codec->pix_fmt = lossless() ? AV_PIX_FMT_YUV444P : AV_PIX_FMT_YUV420P;
    // BT.709 tagged in the stream so players convert back with the matrix we used. Lossless uses the full
    // range: limited range maps 256 RGB levels onto 220, which would add rounding error to "lossless".
    codec->colorspace = AVCOL_SPC_BT709;
    codec->color_primaries = AVCOL_PRI_BT709;
    codec->color_trc = AVCOL_TRC_BT709;
    codec->color_range = lossless() ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
    codec->gop_size = 10 * options.fps;  // a keyframe at least every 10 s (seek points in long videos)
    if (format->oformat->flags & AVFMT_GLOBALHEADER) codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

    // tune=zerolatency (no B-frames, no lookahead, sliced rather than frame threads) makes x264 hand out
    // each frame's packet as soon as the frame goes in, so every add_frames batch is complete in its own
    // fragment when the call returns: the client can start playing while later batches are decoded. The
    // cost is some compression (no B-frames, no macroblock tree) at the same CRF quality — small next to
    // the seconds per batch the VAE spends, and the only way to bound the latency by one batch.
    check(av_opt_set(codec->priv_data, "preset", options.preset.c_str(), 0), "av_opt_set(preset)");
    check(av_opt_set(codec->priv_data, "tune", "zerolatency", 0), "av_opt_set(tune)");
    if (lossless()) {
      check(av_opt_set_int(codec->priv_data, "qp", 0, 0), "av_opt_set(qp)");
    } else {
      check(av_opt_set_double(codec->priv_data, "crf", options.crf, 0), "av_opt_set(crf)");
    }
    check(avcodec_open2(codec.get(), encoder, nullptr), "avcodec_open2(libx264)");
  }

  void open_muxer() {
    AVFormatContext* context = nullptr;
    check(avformat_alloc_output_context2(&context, nullptr, "mp4", nullptr), "avformat_alloc_output_context2(mp4)");
    format.reset(context);

    auto* buffer = static_cast<unsigned char*>(check_alloc(av_malloc(kIoBufferSize), "av_malloc"));
    AVIOContext* sink = avio_alloc_context(buffer, kIoBufferSize, 1, this, nullptr, &State::write_packet, nullptr);
    if (sink == nullptr) {
      av_free(buffer);
      throw std::runtime_error("avio_alloc_context failed: out of memory");
    }
    io.reset(sink);  // no seek callback: the output is a stream, the muxer never goes back
    format->pb = io.get();
    format->flags |= AVFMT_FLAG_CUSTOM_IO;
  }

  void open_stream() {
    stream = check_alloc(avformat_new_stream(format.get(), nullptr), "avformat_new_stream");
    check(avcodec_parameters_from_context(stream->codecpar, codec.get()), "avcodec_parameters_from_context");
    stream->time_base = codec->time_base;
    stream->avg_frame_rate = codec->framerate;
    // Fragmented MP4: an empty moov up front, then one moof+mdat per fragment, which we cut ourselves after
    // each batch (frag_custom + av_write_frame(nullptr)). default_base_moof makes the fragments
    // self-contained, as Media Source Extensions (browsers) want.
    AVDictionary* muxer_options = nullptr;
    av_dict_set(&muxer_options, "movflags", "frag_custom+empty_moov+default_base_moof", 0);
    const int result = avformat_write_header(format.get(), &muxer_options);
    av_dict_free(&muxer_options);
    check_output("avformat_write_header");
    check(result, "avformat_write_header");
  }

  void open_scaler() {
    const AVPixelFormat target = codec->pix_fmt;
    scaler.reset(sws_getContext(options.width, options.height, AV_PIX_FMT_RGB24, options.width, options.height, target,
                                SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, nullptr, nullptr, nullptr));
    if (!scaler) throw std::runtime_error("sws_getContext(rgb24 -> yuv) failed");
    const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
    const int full_range_output = lossless() ? 1 : 0;
    check(sws_setColorspaceDetails(scaler.get(), bt709, 1, bt709, full_range_output, 0, 1 << 16, 1 << 16),
          "sws_setColorspaceDetails");

    frame.reset(check_alloc(av_frame_alloc(), "av_frame_alloc"));
    frame->format = target;
    frame->width = options.width;
    frame->height = options.height;
    frame->color_range = codec->color_range;
    frame->colorspace = codec->colorspace;
    check(av_frame_get_buffer(frame.get(), 0), "av_frame_get_buffer");
    packet.reset(check_alloc(av_packet_alloc(), "av_packet_alloc"));
  }

  // Muxes every packet the encoder has ready.
  void drain_packets() {
    while (true) {
      const int result = avcodec_receive_packet(codec.get(), packet.get());
      if (result == AVERROR(EAGAIN) || result == AVERROR_EOF) return;
      check(result, "avcodec_receive_packet");
      if (packet->duration == 0) packet->duration = 1;  // the last sample's length is written from it
      av_packet_rescale_ts(packet.get(), codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      const int written = av_write_frame(format.get(), packet.get());
      av_packet_unref(packet.get());
      check_output("av_write_frame");
      check(written, "av_write_frame");
    }
  }

  void encode_frame(const uint8_t* rgb) {
    check(av_frame_make_writable(frame.get()), "av_frame_make_writable");
    const uint8_t* source[1] = {rgb};
    const int source_stride[1] = {3 * options.width};
    check(sws_scale(scaler.get(), source, source_stride, 0, options.height, frame->data, frame->linesize), "sws_scale");
    frame->pts = frames;
    check(avcodec_send_frame(codec.get(), frame.get()), "avcodec_send_frame");
    drain_packets();
  }

  // Writes the packets so far as one fragment and pushes the bytes out of the IO buffer.
  void flush_fragment() {
    const int result = av_write_frame(format.get(), nullptr);
    check_output("av_write_frame(flush)");
    check(result, "av_write_frame(flush)");
    avio_flush(io.get());
    check_output("avio_flush");
  }

  void finish_mp4() {
    check(avcodec_send_frame(codec.get(), nullptr), "avcodec_send_frame(flush)");
    drain_packets();
    const int result = av_write_trailer(format.get());
    check_output("av_write_trailer");
    check(result, "av_write_trailer");
    avio_flush(io.get());
    check_output("avio_flush");
  }
};

StreamingVideoEncoder::StreamingVideoEncoder(const VideoEncoderOptions& options,
                                             std::function<void(std::string_view bytes)> on_bytes)
    : state_(std::make_unique<State>()) {
  check_video_options(options);
  if (!on_bytes) throw std::invalid_argument("video encoder: on_bytes callback is empty");
  state_->options = options;
  state_->on_bytes = std::move(on_bytes);
  if (!state_->is_mp4()) return;
  route_ffmpeg_log();
  state_->open_muxer();
  state_->open_codec();
  state_->open_scaler();
  state_->open_stream();
}

StreamingVideoEncoder::~StreamingVideoEncoder() = default;

void StreamingVideoEncoder::add_frames(const at::Tensor& frames) {
  State& state = *state_;
  if (state.finished) throw std::logic_error("video encoder: add_frames after finish");
  if (state.failed) throw std::logic_error("video encoder: add_frames after an earlier error");
  if (!frames.defined()) throw std::invalid_argument("video encoder: frames tensor is undefined");
  if (frames.scalar_type() != at::kByte)
    throw std::invalid_argument("video encoder: frames must be uint8, got " +
                                std::string(c10::toString(frames.scalar_type())));
  const int64_t height = state.options.height, width = state.options.width;
  if (frames.dim() != 4 || frames.size(1) != height || frames.size(2) != width || frames.size(3) != 3) {
    std::ostringstream message;
    message << "video encoder: frames must be [F, " << height << ", " << width << ", 3], got " << frames.sizes();
    throw std::invalid_argument(message.str());
  }
  const at::Tensor rgb = frames.to(at::kCPU).contiguous();
  const auto* data = rgb.data_ptr<uint8_t>();
  const int64_t frame_bytes = height * width * 3;
  try {
    if (!state.is_mp4()) {
      if (rgb.numel() > 0)
        state.emit(std::string_view(reinterpret_cast<const char*>(data), static_cast<size_t>(rgb.numel())));
      state.frames += rgb.size(0);
      return;
    }
    for (int64_t i = 0; i < rgb.size(0); ++i) {
      state.encode_frame(data + i * frame_bytes);
      ++state.frames;
    }
    if (rgb.size(0) > 0) state.flush_fragment();
  } catch (...) {
    state.failed = true;
    throw;
  }
}

void StreamingVideoEncoder::finish() {
  State& state = *state_;
  if (state.finished) throw std::logic_error("video encoder: finish called twice");
  if (state.failed) throw std::logic_error("video encoder: finish after an earlier error");
  state.finished = true;
  if (!state.is_mp4()) return;
  try {
    state.finish_mp4();
  } catch (...) {
    state.failed = true;
    throw;
  }
}

int64_t StreamingVideoEncoder::frames_written() const { return state_->frames; }
int64_t StreamingVideoEncoder::bytes_written() const { return state_->bytes; }

}  // namespace sagevid
