#include "image_decoding.h"

#include "ffmpeg_support.h"

extern "C" {
#include <libavutil/mem.h>
}

#include <ATen/ops/empty.h>

#include <cstring>
#include <memory>
#include <string>

namespace sagevid {
namespace {

constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

uint32_t big_endian(std::string_view bytes, size_t at, size_t count) {
  uint32_t value = 0;
  for (size_t i = 0; i < count; ++i) value = (value << 8) | uint8_t(bytes[at + i]);
  return value;
}

// The IHDR chunk must come first: signature, length, "IHDR", width, height.
ImageHeader png_header(std::string_view bytes) {
  if (bytes.size() < 24 || bytes.substr(12, 4) != "IHDR")
    throw ImageError("corrupt PNG: no IHDR header after the signature");
  return {ImageFormat::png, big_endian(bytes, 16, 4), big_endian(bytes, 20, 4)};
}

// Start-of-frame markers (SOF0..SOF15 but DHT C4, JPG C8 and DAC CC) carry the frame's height and width.
bool is_frame_header(uint8_t marker) {
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

// Walks the marker segments from SOI to the first frame header.
ImageHeader jpeg_header(std::string_view bytes) {
  size_t at = 2;
  while (true) {
    while (at < bytes.size() && uint8_t(bytes[at]) == 0xFF && at + 1 < bytes.size() && uint8_t(bytes[at + 1]) == 0xFF)
      ++at;  // fill bytes
    if (at + 4 > bytes.size() || uint8_t(bytes[at]) != 0xFF)
      throw ImageError("corrupt JPEG: no frame header (the data ends or a segment is malformed)");
    const uint8_t marker = uint8_t(bytes[at + 1]);
    if (marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // segments without a length
      at += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) throw ImageError("corrupt JPEG: image data before any frame header");
    const size_t length = big_endian(bytes, at + 2, 2);
    if (length < 2 || at + 2 + length > bytes.size()) throw ImageError("corrupt JPEG: a segment runs past the data");
    if (is_frame_header(marker)) {
      if (length < 7) throw ImageError("corrupt JPEG: short frame header");
      const ImageHeader header{ImageFormat::jpeg, big_endian(bytes, at + 7, 2), big_endian(bytes, at + 5, 2)};
      if (header.height == 0) throw ImageError("JPEG with its height in a DNL segment is not supported");
      return header;
    }
    at += 2 + length;
  }
}

// One decoded frame of the file, in the decoder's pixel format.
std::unique_ptr<AVFrame, FrameFree> decode_frame(std::string_view bytes, const ImageHeader& header) {
  route_ffmpeg_log();  // a corrupt file's complaints go to our log, not stderr
  const char* name = image_format_name(header.format);
  const AVCodec* codec = avcodec_find_decoder(header.format == ImageFormat::png ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG);
  if (codec == nullptr) throw std::runtime_error(std::string("this FFmpeg has no ") + name + " decoder");
  std::unique_ptr<AVCodecContext, CodecContextFree> context(avcodec_alloc_context3(codec));
  std::unique_ptr<AVPacket, PacketFree> packet(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFree> frame(av_frame_alloc());
  if (!context || !packet || !frame) throw std::bad_alloc();
  // The decoder refuses frames much larger than the header we checked (it counts its padded, aligned size).
  constexpr int64_t kAlignment = 128;
  context->max_pixels = (header.width + kAlignment) * (header.height + kAlignment);
  context->thread_count = 1;
  if (const int error = avcodec_open2(context.get(), codec, nullptr); error < 0)
    throw std::runtime_error(std::string("avcodec_open2 (") + name + "): " + ffmpeg_error(error));
  // Decoders read past the end in blocks: the packet needs zeroed padding.
  auto* data = static_cast<uint8_t*>(av_malloc(bytes.size() + AV_INPUT_BUFFER_PADDING_SIZE));
  if (data == nullptr) throw std::bad_alloc();
  std::memcpy(data, bytes.data(), bytes.size());
  std::memset(data + bytes.size(), 0, AV_INPUT_BUFFER_PADDING_SIZE);
  if (av_packet_from_data(packet.get(), data, int(bytes.size())) < 0) {
    av_free(data);
    throw std::bad_alloc();
  }
  int error = avcodec_send_packet(context.get(), packet.get());
  if (error >= 0) error = avcodec_send_packet(context.get(), nullptr);  // end of stream: the frame comes out now
  if (error >= 0) error = avcodec_receive_frame(context.get(), frame.get());
  if (error < 0) throw ImageError(std::string("corrupt ") + name + " data (FFmpeg: " + ffmpeg_error(error) + ")");
  if (frame->width != header.width || frame->height != header.height)
    throw ImageError(std::string("corrupt ") + name + ": decoded " + std::to_string(frame->width) + "x" +
                     std::to_string(frame->height) + ", the header says " + std::to_string(header.width) + "x" +
                     std::to_string(header.height));
  return frame;
}

}  // namespace

const char* image_format_name(ImageFormat format) { return format == ImageFormat::png ? "PNG" : "JPEG"; }

ImageHeader read_image_header(std::string_view bytes) {
  ImageHeader header;
  if (bytes.starts_with(kPngSignature)) header = png_header(bytes);
  else if (bytes.size() >= 3 && bytes.starts_with("\xFF\xD8\xFF")) header = jpeg_header(bytes);
  else
    throw ImageError("not a PNG or JPEG file (" + std::to_string(bytes.size()) +
                     " bytes that start with neither "
                     "signature)");
  if (header.width < 1 || header.height < 1)
    throw ImageError(std::string(image_format_name(header.format)) + " header says " + std::to_string(header.width) +
                     "x" + std::to_string(header.height) + " pixels");
  return header;
}

at::Tensor decode_image(std::string_view bytes, const ImageLimits& limits) {
  if (int64_t(bytes.size()) > limits.max_bytes)
    throw ImageError(std::to_string(bytes.size()) + " bytes is over the limit of " + std::to_string(limits.max_bytes));
  const ImageHeader header = read_image_header(bytes);
  if (header.width > limits.max_pixels || header.height > limits.max_pixels ||  // no overflow in the product
      header.width * header.height > limits.max_pixels)
    throw ImageError(std::to_string(header.width) + "x" + std::to_string(header.height) +
                     " pixels is over the limit of " + std::to_string(limits.max_pixels) + " pixels (width x height)");
  const std::unique_ptr<AVFrame, FrameFree> frame = decode_frame(bytes, header);
  const int width = frame->width, height = frame->height;
  // Same size, format to RGB24 only: exact for RGB PNGs; JPEG's chroma is interpolated with full precision.
  std::unique_ptr<SwsContext, ScalerFree> scale(
      sws_getContext(width, height, AVPixelFormat(frame->format), width, height, AV_PIX_FMT_RGB24,
                     SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr, nullptr));
  if (!scale)
    throw ImageError(std::string(image_format_name(header.format)) + " pixel format " + std::to_string(frame->format) +
                     " cannot be converted to RGB");
  // JPEG's YCbCr is full range (JFIF). FFmpeg's yuvj formats say so themselves; newer FFmpeg decodes to plain
  // yuv formats with the range only in color_range, which swscale does not read.
  if (frame->color_range == AVCOL_RANGE_JPEG) {
    const int* coefficients = sws_getCoefficients(SWS_CS_ITU601);
    sws_setColorspaceDetails(scale.get(), coefficients, 1, coefficients, 1, 0, 1 << 16, 1 << 16);
  }
  at::Tensor rgb = at::empty({height, width, 3}, at::kByte);
  uint8_t* planes[4] = {rgb.mutable_data_ptr<uint8_t>(), nullptr, nullptr, nullptr};
  const int strides[4] = {width * 3, 0, 0, 0};
  sws_scale(scale.get(), frame->data, frame->linesize, 0, height, planes, strides);
  return rgb;
}

}  // namespace sagevid
