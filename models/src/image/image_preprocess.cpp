// PIL's Lanczos resize (Pillow's libImaging/Resample.c, 8 bits per channel) and diffusers' image normalization.
// Matching PIL bit for bit is what lets image-to-video frames equal diffusers' pipeline, which resizes a PIL
// image: a resampler that is merely close shifts the image latents and, through the denoising, the video.
#include "sagevid/models/image_preprocess.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid {
namespace {

// Pillow's PRECISION_BITS for 8-bit images: coefficients are fixed point with 22 fractional bits.
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kLanczosSupport = 3.0;

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= std::numbers::pi;
  return std::sin(x) / x;
}

double lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

// One output pixel's window of input pixels and their fixed-point weights.
struct Window {
  int64_t first = 0;
  std::vector<int32_t> weights;
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for resizing in_size pixels to out_size along one axis.
std::vector<Window> windows(int64_t in_size, int64_t out_size) {
  const double scale = double(in_size) / double(out_size);
  const double filter_scale = std::max(scale, 1.0);  // downscaling widens the filter
  const double support = kLanczosSupport * filter_scale;
  std::vector<Window> result(static_cast<size_t>(out_size));
  for (int64_t out = 0; out < out_size; ++out) {
    const double center = (double(out) + 0.5) * scale;
    const int64_t first = std::max<int64_t>(0, int64_t(center - support + 0.5));  // C's truncation, as Pillow
    const int64_t end = std::min<int64_t>(in_size, int64_t(center + support + 0.5));
    const double inverse_scale = 1.0 / filter_scale;  // Pillow multiplies by it (not the same as dividing)
    std::vector<double> weights;
    double sum = 0.0;
    for (int64_t x = first; x < end; ++x) {
      weights.push_back(lanczos((double(x) - center + 0.5) * inverse_scale));
      sum += weights.back();
    }
    Window& window = result[size_t(out)];
    window.first = first;
    for (double w : weights) {
      const double normalized = sum != 0.0 ? w / sum : w;
      const double fixed = normalized * double(1 << kPrecisionBits);
      window.weights.push_back(int32_t(normalized < 0 ? -0.5 + fixed : 0.5 + fixed));
    }
  }
  return result;
}

uint8_t clip8(int64_t accumulated) {
  if (accumulated >= (int64_t(1) << kPrecisionBits << 8)) return 255;
  if (accumulated <= 0) return 0;
  return uint8_t(accumulated >> kPrecisionBits);
}

// One pass over an [rows, columns, 3] uint8 image along `axis` (0: rows, 1: columns), to `out_size` there.
at::Tensor resample_axis(const at::Tensor& image, int axis, int64_t out_size) {
  const int64_t rows = image.size(0), columns = image.size(1);
  const std::vector<Window> plan = windows(axis == 0 ? rows : columns, out_size);
  const int64_t out_rows = axis == 0 ? out_size : rows, out_columns = axis == 0 ? columns : out_size;
  at::Tensor out = at::empty({out_rows, out_columns, 3}, image.options());
  const uint8_t* in = image.const_data_ptr<uint8_t>();
  uint8_t* dst = out.mutable_data_ptr<uint8_t>();
  // Input elements between neighbours along the axis, and between neighbours across it.
  const int64_t along = axis == 0 ? columns * 3 : 3, across = axis == 0 ? 3 : columns * 3;
  const int64_t lines = axis == 0 ? columns : rows;
  at::parallel_for(0, out_size, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const Window& window = plan[size_t(o)];
      for (int64_t line = 0; line < lines; ++line) {
        const uint8_t* base = in + window.first * along + line * across;
        uint8_t* pixel = dst + (axis == 0 ? (o * out_columns + line) : (line * out_columns + o)) * 3;
        for (int channel = 0; channel < 3; ++channel) {
          int64_t sum = int64_t(1) << (kPrecisionBits - 1);
          for (size_t k = 0; k < window.weights.size(); ++k)
            sum += int64_t(base[int64_t(k) * along + channel]) * window.weights[k];
          pixel[channel] = clip8(sum);
        }
      }
    }
  });
  return out;
}

}  // namespace

std::string rgb_image_problem(const at::Tensor& image) {
  if (!image.defined()) return "undefined tensor";
  if (image.scalar_type() != at::kByte || image.dim() != 3 || image.size(2) != 3 || image.size(0) < 1 ||
      image.size(1) < 1)
    return "expected uint8 RGB [height, width, 3], got " + std::string(c10::toString(image.scalar_type())) + " of " +
           std::to_string(image.dim()) + " dimensions";
  return "";
}

at::Tensor resize_lanczos(const at::Tensor& image, int64_t height, int64_t width) {
  if (const std::string problem = rgb_image_problem(image); !problem.empty())
    throw std::invalid_argument("image: " + problem);
  if (height < 1 || width < 1)
    throw std::invalid_argument("resize to " + std::to_string(height) + "x" + std::to_string(width));
  at::Tensor result = image.to(at::kCPU).contiguous();
  // PIL skips a pass whose size does not change (and copies an image whose size does not change at all).
  if (width != result.size(1)) result = resample_axis(result, 1, width);
  if (height != result.size(0)) result = resample_axis(result, 0, height);
  return result.contiguous();
}

at::Tensor preprocess_image(const at::Tensor& image, int64_t height, int64_t width, c10::ScalarType dtype) {
  const at::Tensor unit = resize_lanczos(image, height, width).to(at::kFloat) / 255.0f;
  return (unit * 2.0f - 1.0f).permute({2, 0, 1}).unsqueeze(0).contiguous().to(dtype);
}

}  // namespace sagevid
