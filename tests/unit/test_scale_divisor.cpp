// ScaleDivisor (kernels/include/sagevid/kernels/scale_divisor.h): the FP8 row kernels' division by a row's scale
// as a multiply and two FMAs. The host runs the same IEEE float operations as the device, so the claim that its
// quotients are the division's is checked here, over scales from tiny to huge and quotients from 448 down to zero.
#include "catch.h"
#include "test_random.h"

#include "sagevid/kernels/scale_divisor.h"

#include <c10/util/Float8_e4m3fn.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

namespace {

uint32_t bits_of(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

uint8_t e4m3_of(float x) { return c10::Float8_e4m3fn(x).x; }

}  // namespace

TEST_CASE("a ScaleDivisor's quotients are the division's bits, and the same E4M3 bytes below 2^-11", "[fp8]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 gen(rng.seed);
  std::uniform_real_distribution<float> exponent(-70.0f, 119.0f), unit(0.0f, 1.0f), fraction_log2(-30.0f, 0.0f);
  int64_t compared = 0, small = 0, mismatched = 0;
  for (int row = 0; row < 20000; ++row) {
    const float amax = std::exp2(exponent(gen)) * (1.0f + unit(gen));
    const float scale = amax / 448.0f;  // as fp8_row_scale makes it
    const sagevid::kernels::ScaleDivisor divide(scale);
    REQUIRE(divide.exact());
    for (int i = 0; i < 64; ++i) {
      // Values up to the row's absmax, down to 2^-30 of it, either sign; the row's extremes and zeros too.
      float v = i == 0 ? amax : i == 1 ? -0.0f : i == 2 ? 0.0f : amax * std::exp2(fraction_log2(gen)) * unit(gen);
      if (gen() & 1) v = -v;
      const float want = v / scale, got = divide(v);
      if (std::fabs(want) >= 0x1p-11f) {
        ++compared;
        if (bits_of(got) != bits_of(want)) {
          ++mismatched;
          if (mismatched <= 5) UNSCOPED_INFO("v " << v << " scale " << scale << ": " << got << " instead of " << want);
        }
      } else {
        ++small;
        if (e4m3_of(got) != e4m3_of(want) || std::signbit(got) != std::signbit(want)) ++mismatched;
      }
    }
  }
  CAPTURE(compared, small);
  CHECK(compared > 100000);
  CHECK(small > 10000);
  CHECK(mismatched == 0);
}

TEST_CASE("a ScaleDivisor leaves tiny, infinite and NaN scales to the division", "[fp8]") {
  using sagevid::kernels::ScaleDivisor;
  CHECK(ScaleDivisor(ScaleDivisor::kSmallestScale).exact());
  CHECK(ScaleDivisor(std::numeric_limits<float>::max() / 448).exact());
  CHECK_FALSE(ScaleDivisor(ScaleDivisor::kSmallestScale / 2).exact());
  CHECK_FALSE(ScaleDivisor(0.0f).exact());
  CHECK_FALSE(ScaleDivisor(std::numeric_limits<float>::infinity()).exact());
  CHECK_FALSE(ScaleDivisor(std::nanf("")).exact());
  CHECK(sagevid::kernels::Division{0.5f}(3.0f) == 6.0f);
}
