#pragma once
// An image-to-video request's image: PNG or JPEG bytes to the uint8 RGB tensor the models layer takes
// (GenerationRequest::image). The format and size come from the file's header, checked against the limits
// before anything is decoded; then libavcodec decodes and libswscale converts to RGB24 (alpha dropped, as
// PIL's convert("RGB") does). For any front-end (gRPC, HTTP) that receives image bytes.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <stdexcept>
#include <string_view>

namespace sagevid {

struct ImageLimits {
  int64_t max_bytes = int64_t(16) << 20;         // of the encoded file
  int64_t max_pixels = int64_t(4096) * 4096;     // width x height, read from the header
};

enum class ImageFormat { png, jpeg };
const char* image_format_name(ImageFormat format);

struct ImageHeader {
  ImageFormat format = ImageFormat::png;
  int64_t width = 0, height = 0;
};

// What the client sent is not an image we take (not PNG/JPEG, corrupt, over a limit); the message is for the
// client. A server without the decoder is a std::runtime_error instead.
struct ImageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The format and size from the first bytes (PNG's IHDR, JPEG's frame header), without decoding.
ImageHeader read_image_header(std::string_view bytes);

// uint8 RGB [height, width, 3] on the CPU. Checks the byte size and the header's width x height against limits
// first; throws ImageError.
at::Tensor decode_image(std::string_view bytes, const ImageLimits& limits);

}  // namespace sagevid
