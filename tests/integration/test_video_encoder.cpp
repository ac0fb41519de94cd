// The streaming video encoder end to end: random smooth frames in, batch by batch; the bytes it streams are
// decoded back with libavformat/libavcodec from memory and compared with what went in.
#include "catch.h"

#include "test_random.h"
#include "video_decoding.h"
#include "video_encoder.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>

extern "C" {
#include <libswscale/swscale.h>
}

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using sagevid::StreamingVideoEncoder;
using sagevid::VideoEncoderOptions;
using sagevid::VideoFormat;
using sagevid::test::DecodedVideo;

namespace {

// Moving sinusoidal gradients, a different direction, speed and phase per channel: smooth like real video,
// so a lossy codec at a sane CRF must reproduce them closely.
struct GradientVideo {
  int height = 0, width = 0;
  double frequency_x[3], frequency_y[3], speed[3], phase[3];

  GradientVideo(std::mt19937_64& random, int height_, int width_) : height(height_), width(width_) {
    std::uniform_real_distribution<double> frequency(0.3, 1.5), velocity(-0.1, 0.1), angle(0, 2 * M_PI);
    for (int c = 0; c < 3; ++c) {
      frequency_x[c] = frequency(random);
      frequency_y[c] = frequency(random);
      speed[c] = velocity(random);
      phase[c] = angle(random);
    }
  }

  // uint8 [count, height, width, 3] starting at frame `first`.
  at::Tensor frames(int64_t first, int64_t count) const {
    at::Tensor out = at::empty({count, height, width, 3}, at::kByte);
    uint8_t* pixel = out.data_ptr<uint8_t>();
    for (int64_t t = first; t < first + count; ++t)
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
          for (int c = 0; c < 3; ++c) {
            const double wave = std::sin(
                2 * M_PI *
                    (frequency_x[c] * x / width + frequency_y[c] * y / height + speed[c] * static_cast<double>(t)) +
                phase[c]);
            *pixel++ = static_cast<uint8_t>(std::lround(127.5 + 110 * wave));
          }
    return out;
  }
};

// --- the encoder's output -------------------------------------------------------------------------------

struct Output {
  std::string bytes;
  std::vector<std::pair<int64_t, size_t>> chunks;  // (offset, size) as on_bytes saw them
  std::vector<size_t> size_after_batch;            // bytes out when each add_frames returned

  std::function<void(std::string_view)> sink() {
    return [this](std::string_view piece) {
      chunks.emplace_back(static_cast<int64_t>(bytes.size()), piece.size());
      bytes.append(piece);
    };
  }
};

// Top-level MP4 boxes (type, size) of a byte string; fails if the sizes do not tile it exactly.
std::vector<std::pair<std::string, uint64_t>> top_level_boxes(const std::string& bytes) {
  std::vector<std::pair<std::string, uint64_t>> boxes;
  size_t position = 0;
  while (position + 8 <= bytes.size()) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data() + position);
    uint64_t size = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | p[3];
    REQUIRE(size >= 8);  // 0 (to the end) and 1 (64-bit size) do not occur in a stream this small
    boxes.emplace_back(std::string(bytes.data() + position + 4, 4), size);
    position += size;
  }
  REQUIRE(position == bytes.size());
  return boxes;
}

std::string box_types(const std::string& bytes) {
  std::string types;
  for (const auto& [type, size] : top_level_boxes(bytes)) types += (types.empty() ? "" : " ") + type;
  return types;
}

double psnr(const std::vector<at::Tensor>& decoded, const at::Tensor& original) {
  const at::Tensor got = at::stack(decoded).to(at::kDouble);
  const double mse = (got - original.to(at::kDouble)).pow(2).mean().item<double>();
  return 10 * std::log10(255.0 * 255.0 / mse);
}

struct EncodedVideo {
  at::Tensor frames;
  std::vector<int64_t> batches;
  Output output;
};

EncodedVideo encode_in_batches(const VideoEncoderOptions& options, const GradientVideo& source,
                               std::vector<int64_t> batches) {
  EncodedVideo result;
  result.batches = std::move(batches);
  StreamingVideoEncoder encoder(options, result.output.sink());
  std::vector<at::Tensor> all;
  int64_t first = 0;
  for (int64_t count : result.batches) {
    all.push_back(source.frames(first, count));
    encoder.add_frames(all.back());
    first += count;
    CHECK(encoder.frames_written() == first);
    CHECK(encoder.bytes_written() == static_cast<int64_t>(result.output.bytes.size()));
    result.output.size_after_batch.push_back(result.output.bytes.size());
  }
  encoder.finish();
  CHECK(encoder.bytes_written() == static_cast<int64_t>(result.output.bytes.size()));
  result.frames = at::cat(all);
  return result;
}

// CogVideoX-like batches: the VAE's first temporal batch is short, the rest longer; sizes drawn per run.
std::vector<int64_t> random_batches(std::mt19937_64& random) {
  std::uniform_int_distribution<int64_t> count(2, 6), size(1, 8);
  std::vector<int64_t> batches(count(random));
  for (int64_t& batch : batches) batch = size(random);
  return batches;
}

}  // namespace

TEST_CASE("H.264 in fragmented MP4 decodes back to the frames, size and rate", "[integration][video]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 random(rng.seed);
  VideoEncoderOptions options;
  options.width = 2 * std::uniform_int_distribution<int>(24, 80)(random);
  options.height = 2 * std::uniform_int_distribution<int>(24, 60)(random);
  options.fps = std::vector<int>{8, 12, 16, 24, 30}[random() % 5];
  options.crf = 20;
  CAPTURE(options.width, options.height, options.fps);
  const GradientVideo source(random, options.height, options.width);
  const EncodedVideo encoded = encode_in_batches(options, source, random_batches(random));
  CAPTURE(encoded.batches);

  const DecodedVideo video = sagevid::test::decode_video(encoded.output.bytes);
  CHECK(video.codec == "h264");
  CHECK(video.pixel_format == "yuv420p");
  CHECK(video.width == options.width);
  CHECK(video.height == options.height);
  CHECK(av_cmp_q(video.frame_rate, AVRational{options.fps, 1}) == 0);
  REQUIRE(static_cast<int64_t>(video.rgb.size()) == encoded.frames.size(0));
  const double quality = psnr(video.rgb, encoded.frames);
  CAPTURE(quality);
  // Smooth content at CRF 20 measured 37-43 dB over 40 random runs; 30 dB would be visible degradation.
  CHECK(quality > 34);
  // Each frame in its place, not merely a similar video: frame i is closer to input i than to its neighbours.
  for (size_t i = 0; i + 1 < video.rgb.size(); ++i) {
    CAPTURE(i);
    const double same = psnr({video.rgb[i]}, encoded.frames[i].unsqueeze(0));
    CHECK(same > psnr({video.rgb[i]}, encoded.frames[i + 1].unsqueeze(0)));
  }
}

TEST_CASE("the first batch is a playable stream before the next batch arrives", "[integration][video]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 random(rng.seed);
  VideoEncoderOptions options;
  options.width = 2 * std::uniform_int_distribution<int>(16, 64)(random);
  options.height = 2 * std::uniform_int_distribution<int>(16, 48)(random);
  const GradientVideo source(random, options.height, options.width);
  std::vector<int64_t> batches = random_batches(random);
  batches.insert(batches.begin(), std::uniform_int_distribution<int64_t>(1, 5)(random));
  CAPTURE(batches);
  const EncodedVideo encoded = encode_in_batches(options, source, batches);
  const std::string& bytes = encoded.output.bytes;

  // After each add_frames the output so far is whole boxes ending in that batch's fragment, and decodes to
  // the frames given so far, pixel for pixel as the whole stream decodes them.
  const DecodedVideo whole = sagevid::test::decode_video(bytes);
  REQUIRE(static_cast<int64_t>(whole.rgb.size()) == encoded.frames.size(0));
  CHECK(psnr(whole.rgb, encoded.frames) > 30);  // CRF 23 on frames down to 32x32: measured 31-40 dB
  int64_t frames_so_far = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    CAPTURE(b);
    frames_so_far += batches[b];
    const std::string prefix = bytes.substr(0, encoded.output.size_after_batch[b]);
    const std::string expected_types = b == 0 ? "ftyp moov moof mdat" : "moof mdat";
    const std::string previous = b == 0 ? "" : bytes.substr(0, encoded.output.size_after_batch[b - 1]);
    CHECK(box_types(prefix.substr(previous.size())) == expected_types);
    const DecodedVideo partial = sagevid::test::decode_video(prefix);
    REQUIRE(static_cast<int64_t>(partial.rgb.size()) == frames_so_far);
    for (int64_t i = 0; i < frames_so_far; ++i) CHECK(at::equal(partial.rgb[i], whole.rgb[i]));
  }
  // finish() adds only the index at the end (no frames were held back).
  CHECK(box_types(bytes.substr(encoded.output.size_after_batch.back())).find("moof") == std::string::npos);
}

TEST_CASE("output chunks are contiguous and in order", "[integration][video]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 random(rng.seed);
  VideoEncoderOptions options;
  options.width = 64;
  options.height = 48;
  const GradientVideo source(random, options.height, options.width);
  const EncodedVideo encoded = encode_in_batches(options, source, random_batches(random));
  const Output& output = encoded.output;
  REQUIRE_FALSE(output.chunks.empty());
  int64_t offset = 0;
  for (const auto& [chunk_offset, size] : output.chunks) {
    CHECK(chunk_offset == offset);
    CHECK(size > 0);
    offset += static_cast<int64_t>(size);
  }
  CHECK(offset == static_cast<int64_t>(output.bytes.size()));
  // The boxes tile the whole output: nothing was patched after it was sent.
  const std::string types = box_types(output.bytes);
  CHECK(types.rfind("ftyp moov moof mdat", 0) == 0);
}

TEST_CASE("the lossless format returns the encoder's YUV exactly", "[integration][video]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 random(rng.seed);
  VideoEncoderOptions options;
  options.format = VideoFormat::mp4_h264_lossless;
  options.width = std::uniform_int_distribution<int>(33, 100)(random);  // 4:4:4 takes odd sizes too
  options.height = std::uniform_int_distribution<int>(33, 80)(random);
  CAPTURE(options.width, options.height);
  const GradientVideo source(random, options.height, options.width);
  const EncodedVideo encoded = encode_in_batches(options, source, random_batches(random));

  const DecodedVideo video = sagevid::test::decode_video(encoded.output.bytes);
  CHECK(video.pixel_format == "yuv444p");
  CHECK(video.width == options.width);
  CHECK(video.height == options.height);
  REQUIRE(static_cast<int64_t>(video.rgb.size()) == encoded.frames.size(0));
  // The only loss is rounding the full-range BT.709 YUV to 8 bits: each of Y, Cb, Cr is off by at most 1/2,
  // which the inverse matrix turns into at most 0.5 + 1.856 / 2 = 1.43 in B (Y + 1.856 Cb), less in R and G.
  // The input was an integer, so rounding the RGB result lands at most 1 level away (1.43 < 1.5; swscale's
  // fixed point adds ~1/100). Measured: max 1, mean about 0.33.
  const at::Tensor difference = (at::stack(video.rgb).to(at::kInt) - encoded.frames.to(at::kInt)).abs();
  const int max_error = difference.max().item<int>();
  const double mean_error = difference.to(at::kDouble).mean().item<double>();
  CAPTURE(max_error, mean_error);
  CHECK(max_error <= 1);
  CHECK(mean_error < 0.5);
  // And the codec itself is exact: the decoded planes are the encoder's, converted here the same way.
  // (If x264 were lossy at all, smooth content would still pass the bounds above; this would not.)
  SwsContext* scaler =
      sws_getContext(options.width, options.height, AV_PIX_FMT_RGB24, options.width, options.height, AV_PIX_FMT_YUV444P,
                     SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, nullptr, nullptr, nullptr);
  REQUIRE(scaler != nullptr);
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(scaler, bt709, 1, bt709, 1, 0, 1 << 16, 1 << 16);
  for (size_t i = 0; i < video.yuv.size(); ++i) {
    at::Tensor expected = at::empty({3, options.height, options.width}, at::kByte);
    uint8_t* destination[3] = {expected[0].data_ptr<uint8_t>(), expected[1].data_ptr<uint8_t>(),
                               expected[2].data_ptr<uint8_t>()};
    const int destination_stride[3] = {options.width, options.width, options.width};
    const uint8_t* source_rgb[1] = {encoded.frames[i].contiguous().data_ptr<uint8_t>()};
    const int source_stride[1] = {3 * options.width};
    sws_scale(scaler, source_rgb, source_stride, 0, options.height, destination, destination_stride);
    CAPTURE(i);
    CHECK(at::equal(video.yuv[i], expected));
  }
  sws_freeContext(scaler);
  CHECK(video.yuv.size() == video.rgb.size());
}

TEST_CASE("the frames format streams the raw RGB back to back", "[integration][video]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 random(rng.seed);
  VideoEncoderOptions options;
  options.format = VideoFormat::rgb_frames;
  options.width = std::uniform_int_distribution<int>(1, 50)(random);
  options.height = std::uniform_int_distribution<int>(1, 50)(random);
  const GradientVideo source(random, options.height, options.width);
  const EncodedVideo encoded = encode_in_batches(options, source, random_batches(random));
  const std::string& bytes = encoded.output.bytes;
  REQUIRE(static_cast<int64_t>(bytes.size()) == encoded.frames.numel());
  CHECK(std::memcmp(bytes.data(), encoded.frames.data_ptr<uint8_t>(), bytes.size()) == 0);
  CHECK(std::string(sagevid::mime_type(VideoFormat::rgb_frames)) == "application/octet-stream");
  CHECK(std::string(sagevid::mime_type(VideoFormat::mp4_h264)) == "video/mp4");
}

TEST_CASE("bad frames and options are rejected naming the problem", "[integration][video]") {
  VideoEncoderOptions options;
  options.width = 32;
  options.height = 16;
  Output output;
  StreamingVideoEncoder encoder(options, output.sink());
  REQUIRE_THROWS_AS(encoder.add_frames(at::zeros({2, 16, 32, 3}, at::kFloat)), std::invalid_argument);
  REQUIRE_THROWS_WITH(encoder.add_frames(at::zeros({2, 16, 32, 3}, at::kFloat)), ContainsSubstring("uint8"));
  REQUIRE_THROWS_WITH(encoder.add_frames(at::zeros({16, 32, 3}, at::kByte)), ContainsSubstring("[F, 16, 32, 3]"));
  REQUIRE_THROWS_AS(encoder.add_frames(at::zeros({1, 32, 16, 3}, at::kByte)), std::invalid_argument);
  REQUIRE_THROWS_AS(encoder.add_frames(at::zeros({1, 16, 32, 4}, at::kByte)), std::invalid_argument);
  REQUIRE_THROWS_AS(encoder.add_frames(at::Tensor()), std::invalid_argument);
  // Rejected input leaves the encoder usable; an empty batch is no fragment.
  const int64_t header_bytes = encoder.bytes_written();
  encoder.add_frames(at::zeros({0, 16, 32, 3}, at::kByte));
  CHECK(encoder.bytes_written() == header_bytes);
  encoder.add_frames(at::zeros({1, 16, 32, 3}, at::kByte));
  encoder.finish();
  CHECK(encoder.frames_written() == 1);
  REQUIRE_THROWS_AS(encoder.add_frames(at::zeros({1, 16, 32, 3}, at::kByte)), std::logic_error);

  const auto make = [&](const VideoEncoderOptions& bad) { StreamingVideoEncoder(bad, output.sink()); };
  VideoEncoderOptions odd = options;
  odd.width = 33;
  REQUIRE_THROWS_AS(make(odd), std::invalid_argument);
  REQUIRE_THROWS_WITH(make(odd), ContainsSubstring("even width and height"));
  odd.format = VideoFormat::mp4_h264_lossless;
  REQUIRE_NOTHROW(make(odd));
  VideoEncoderOptions bad = options;
  bad.crf = 52;
  REQUIRE_THROWS_WITH(make(bad), ContainsSubstring("crf"));
  bad = options;
  bad.preset = "warp";
  REQUIRE_THROWS_WITH(make(bad), ContainsSubstring("preset 'warp'"));
  bad = options;
  bad.fps = 0;
  REQUIRE_THROWS_WITH(make(bad), ContainsSubstring("fps"));
  bad = options;
  bad.height = 0;
  REQUIRE_THROWS_WITH(make(bad), ContainsSubstring("width and height must be positive"));
  REQUIRE_THROWS_WITH(StreamingVideoEncoder(options, nullptr), ContainsSubstring("on_bytes"));
}

TEST_CASE("a failing consumer's exception comes out of the encoder, which still cleans up", "[integration][video]") {
  VideoEncoderOptions options;
  options.width = 32;
  options.height = 32;
  // The header goes out from the constructor already.
  const auto fail = [](std::string_view) { throw std::runtime_error("client went away"); };
  REQUIRE_THROWS_WITH(StreamingVideoEncoder(options, fail), ContainsSubstring("client went away"));

  // Failing from the first fragment on: the error comes out of add_frames, and the encoder refuses more.
  bool gone = false;
  StreamingVideoEncoder encoder(options, [&](std::string_view) {
    if (gone) throw std::runtime_error("client went away");
  });
  REQUIRE(encoder.bytes_written() > 0);
  gone = true;
  REQUIRE_THROWS_WITH(encoder.add_frames(at::zeros({3, 32, 32, 3}, at::kByte)), ContainsSubstring("client went away"));
  REQUIRE_THROWS_AS(encoder.add_frames(at::zeros({1, 32, 32, 3}, at::kByte)), std::logic_error);
  REQUIRE_THROWS_AS(encoder.finish(), std::logic_error);
  // The destructors free the FFmpeg state (the sanitizer build checks that nothing leaks).
}
