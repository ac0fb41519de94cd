// Request images through FFmpeg (server/src/image_decoding.cpp): the fixture PNGs decode to the pixels PIL
// reads from them, the JPEG close to PIL's decode (the IDCT and chroma upsampling differ), and files that are
// not images we take fail with a message, the limits checked from the header before any decoding.
#include "catch.h"
#include "unit/safetensors_writer.h"

#include "image_decoding.h"
#include "test_random.h"

#include "sagevid/models/safetensors.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>

#include <filesystem>
#include <random>
#include <string>

namespace {

namespace fs = std::filesystem;
using sagevid::ImageError;
using sagevid::ImageLimits;

const fs::path kI2v = fs::path(SAGEVID_FIXTURES_DIR) / "i2v";

at::Tensor pil_pixels(const std::string& name) {
  return sagevid::SafetensorsModel::open(kI2v / "pixels.safetensors").view(name);
}

// A PNG whose IHDR claims width x height; the rest of the file is the fixture's (so it would not decode).
std::string png_claiming(uint32_t width, uint32_t height) {
  std::string bytes = sagevid::testing::read_file(kI2v / "images" / "rings.png");
  for (int i = 0; i < 4; ++i) {
    bytes[size_t(16 + i)] = char(width >> (24 - 8 * i));
    bytes[size_t(20 + i)] = char(height >> (24 - 8 * i));
  }
  return bytes;
}

}  // namespace

TEST_CASE("PNGs decode to the pixels PIL reads, bit for bit", "[integration][image]") {
  for (const char* name : {"gradient", "rings"}) {
    CAPTURE(name);
    const std::string bytes = sagevid::testing::read_file(kI2v / "images" / (std::string(name) + ".png"));
    const sagevid::ImageHeader header = sagevid::read_image_header(bytes);
    const at::Tensor want = pil_pixels(name);
    CHECK(header.format == sagevid::ImageFormat::png);
    CHECK(header.height == want.size(0));
    CHECK(header.width == want.size(1));
    const at::Tensor got = sagevid::decode_image(bytes, {});
    REQUIRE(got.sizes() == want.sizes());
    CHECK(at::equal(got, want));
  }
}

TEST_CASE("a JPEG decodes close to PIL's decode of it", "[integration][image]") {
  const std::string bytes = sagevid::testing::read_file(kI2v / "images" / "rings.jpg");
  const sagevid::ImageHeader header = sagevid::read_image_header(bytes);
  CHECK(header.format == sagevid::ImageFormat::jpeg);
  const at::Tensor want = pil_pixels("rings-jpeg");
  CHECK(header.height == want.size(0));
  CHECK(header.width == want.size(1));
  const at::Tensor got = sagevid::decode_image(bytes, {});
  REQUIRE(got.sizes() == want.sizes());
  // The test image's one-pixel stripes make the decoders' chroma upsampling differ pixel by pixel (FFmpeg's
  // is as close to the original as libjpeg's fancy upsampling), but a wrong range or matrix would shift colours.
  const at::Tensor signed_difference = (got.to(at::kInt) - want.to(at::kInt)).to(at::kFloat);
  const at::Tensor original = pil_pixels("rings").to(at::kInt);
  const float ours = (got.to(at::kInt) - original).abs().to(at::kFloat).mean().item<float>();
  const float pil = (want.to(at::kInt) - original).abs().to(at::kFloat).mean().item<float>();
  WARN("FFmpeg vs PIL JPEG decode: mean difference " << signed_difference.abs().mean().item<float>()
                                                     << "; from the original pixels: FFmpeg " << ours << ", PIL "
                                                     << pil);
  CHECK(signed_difference.mean(at::IntArrayRef{0, 1}).abs().max().item<float>() < 0.5f);  // per channel
  CHECK(signed_difference.abs().mean().item<float>() < 8.0f);
  CHECK(ours < 1.1f * pil);
}

TEST_CASE("what is not a PNG or JPEG, or is corrupt, is an ImageError that says so", "[integration][image]") {
  using Catch::Matchers::ContainsSubstring;
  const std::string png = sagevid::testing::read_file(kI2v / "images" / "rings.png");
  const std::string jpeg = sagevid::testing::read_file(kI2v / "images" / "rings.jpg");
  CHECK_THROWS_WITH(sagevid::decode_image("GIF89a....", {}), ContainsSubstring("not a PNG or JPEG"));
  CHECK_THROWS_WITH(sagevid::decode_image("", {}), ContainsSubstring("not a PNG or JPEG"));
  CHECK_THROWS_WITH(sagevid::decode_image(png.substr(0, 20), {}), ContainsSubstring("no IHDR"));
  CHECK_THROWS_WITH(sagevid::decode_image(png.substr(0, png.size() / 2), {}), ContainsSubstring("corrupt PNG"));
  CHECK_THROWS_WITH(sagevid::decode_image(jpeg.substr(0, 40), {}), ContainsSubstring("corrupt JPEG"));
  std::string garbled = png;
  for (size_t i = 64; i < garbled.size(); i += 7) garbled[i] = char(garbled[i] ^ 0x5A);
  CHECK_THROWS_AS(sagevid::decode_image(garbled, {}), ImageError);
  CHECK_THROWS_WITH(sagevid::decode_image(png_claiming(0, 5), {}), ContainsSubstring("0x5"));
}

TEST_CASE("the byte and pixel limits are checked before decoding", "[integration][image]") {
  using Catch::Matchers::ContainsSubstring;
  const std::string png = sagevid::testing::read_file(kI2v / "images" / "rings.png");  // 100 x 80
  CHECK_THROWS_WITH(sagevid::decode_image(png, {.max_bytes = int64_t(png.size()) - 1}),
                    ContainsSubstring(std::to_string(png.size()) + " bytes is over the limit"));
  CHECK(sagevid::decode_image(png, {.max_bytes = int64_t(png.size()), .max_pixels = 8000}).size(0) == 80);
  CHECK_THROWS_WITH(sagevid::decode_image(png, {.max_pixels = 7999}), ContainsSubstring("100x80 pixels is over"));
  // A header claiming 100000 x 100000 (or 2^32 - 1 squared) is refused from the header: the data after it would
  // not decode to that, so the message shows no decoding happened.
  CHECK_THROWS_WITH(sagevid::decode_image(png_claiming(100000, 100000), {}),
                    ContainsSubstring("100000x100000 pixels is over the limit of 16777216"));
  CHECK_THROWS_WITH(sagevid::decode_image(png_claiming(0xFFFFFFFF, 0xFFFFFFFF), {}), ContainsSubstring("is over"));
}

// Damaged files from clients: truncated and with random bytes changed (in the header more often). Each either
// decodes to an RGB image or is an ImageError; nothing else escapes (scripts/sanitize.sh runs this under ASan).
TEST_CASE("mutated PNG and JPEG files decode or are refused, nothing else", "[integration][image]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  for (const char* name : {"rings.png", "rings.jpg", "gradient.png"}) {
    const std::string original = sagevid::testing::read_file(kI2v / "images" / name);
    for (int i = 0; i < 200; ++i) {
      std::string bytes = original;
      if (draw() % 3 == 0) bytes.resize(draw() % bytes.size());
      for (int flip = 0, flips = 1 + int(draw() % 8); flip < flips && !bytes.empty(); ++flip) {
        const size_t span = draw() % 4 == 0 ? std::min<size_t>(bytes.size(), 64) : bytes.size();
        bytes[draw() % span] = char(draw());
      }
      CAPTURE(name, i);
      try {
        const at::Tensor image = sagevid::decode_image(bytes, {});
        CHECK((image.dim() == 3 && image.size(2) == 3 && image.scalar_type() == at::kByte));
      } catch (const ImageError&) {}
    }
  }
}
