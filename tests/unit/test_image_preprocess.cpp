// The image-to-video request's image preprocessing against PIL (tests/fixtures/make_i2v_fixtures.py wrote the
// images' pixels and what PIL's Image.resize(..., LANCZOS) makes of them, up and down, to several sizes).
#include "catch.h"

#include "sagevid/models/image_preprocess.h"
#include "sagevid/models/safetensors.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/zeros.h>

#include <filesystem>
#include <string>

namespace {

const std::filesystem::path kPixels = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "i2v" / "pixels.safetensors";

}  // namespace

TEST_CASE("the Lanczos resize equals PIL's bit for bit, up and down", "[image]") {
  const auto fixture = sagevid::SafetensorsModel::open(kPixels);
  int compared = 0;
  for (const std::string& name : fixture.names()) {
    const size_t dash = name.find('-');
    if (dash == std::string::npos || name.ends_with("-jpeg")) continue;  // an original, or the JPEG decode
    CAPTURE(name);
    const at::Tensor want = fixture.view(name);
    const at::Tensor got = sagevid::resize_lanczos(fixture.view(name.substr(0, dash)), want.size(0), want.size(1));
    REQUIRE(got.sizes() == want.sizes());
    CHECK((got.to(at::kInt) - want.to(at::kInt)).abs().max().item<int>() == 0);
    ++compared;
  }
  CHECK(compared == 5);
}

TEST_CASE("the same size is a copy, and preprocessing scales to [-1, 1] as [1, 3, H, W]", "[image]") {
  const auto fixture = sagevid::SafetensorsModel::open(kPixels);
  const at::Tensor image = fixture.view("gradient");
  CHECK(at::equal(sagevid::resize_lanczos(image, image.size(0), image.size(1)), image));
  const at::Tensor pixels = sagevid::preprocess_image(image, image.size(0), image.size(1), at::kFloat);
  REQUIRE(pixels.sizes() == at::IntArrayRef{1, 3, image.size(0), image.size(1)});
  const at::Tensor expected = (image.to(at::kFloat) / 255.0f * 2.0f - 1.0f).permute({2, 0, 1}).unsqueeze(0);
  CHECK(at::equal(pixels, expected));
  CHECK(sagevid::preprocess_image(image, 16, 24, at::kBFloat16).scalar_type() == at::kBFloat16);
}

TEST_CASE("images that are not uint8 RGB [H, W, 3] are refused", "[image]") {
  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_WITH(sagevid::resize_lanczos(at::zeros({4, 4, 4}, at::kByte), 2, 2),
                    ContainsSubstring("[height, width, 3]"));
  CHECK_THROWS_WITH(sagevid::resize_lanczos(at::zeros({4, 4, 3}, at::kFloat), 2, 2), ContainsSubstring("Float"));
  CHECK_THROWS_WITH(sagevid::resize_lanczos(at::zeros({0, 4, 3}, at::kByte), 2, 2), ContainsSubstring("uint8 RGB"));
  CHECK_THROWS_AS(sagevid::resize_lanczos(at::zeros({4, 4, 3}, at::kByte), 0, 2), std::invalid_argument);
}
