#pragma once
// The image of an image-to-video request as diffusers' VideoProcessor.preprocess prepares a PIL image: resized
// to the request's size with PIL's Lanczos filter (Image.resize(..., LANCZOS), the aspect ratio not kept, as
// diffusers' default resize mode), scaled to [0, 1] and then to [-1, 1].
//
// Images enter the models layer decoded: uint8 RGB [height, width, 3] on the CPU (the server decodes PNG/JPEG
// bytes with FFmpeg; any front-end that can produce such a tensor can pass it in GenerationRequest::image).
#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

namespace sagevid {

// What keeps image from being a uint8 RGB [height >= 1, width >= 1, 3] tensor, or "" when it is one.
std::string rgb_image_problem(const at::Tensor& image);

// PIL's 8-bit Lanczos resampling, bit for bit: separable, horizontal pass first, each pass with PIL's
// fixed-point coefficients and rounding to uint8. Returns uint8 [height, width, 3], contiguous, on the CPU;
// std::invalid_argument for an image rgb_image_problem refuses or a size below 1.
at::Tensor resize_lanczos(const at::Tensor& image, int64_t height, int64_t width);

// resize_lanczos, then x / 255 * 2 - 1 in fp32 (diffusers' pil_to_numpy and normalize), as [1, 3, height,
// width] in dtype.
at::Tensor preprocess_image(const at::Tensor& image, int64_t height, int64_t width, c10::ScalarType dtype);

}  // namespace sagevid
