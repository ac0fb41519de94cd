#pragma once
// Many values divided by one positive scale (a row's FP8 scale) for a multiply and two FMAs each, where a
// division costs a reciprocal, its refinement and a slow-path check. With r = 1 / scale correctly rounded and
// q = v · r within an ulp of the quotient, one correction step q + r · (v − q · scale), an FMA each, is the
// correctly rounded quotient (Markstein's theorem) as long as the correction's residual does not underflow;
// the quotient takes v's sign, which also keeps the sign of a zero. For scales in [kSmallestScale, kLargestScale]
// that holds for every quotient of 2^-11 or more (smaller ones, which E4M3 rounds to zero, may differ in the last
// bit); other scales (tiny, infinite or NaN) keep the division.
#include "sagevid/kernels/host_device.h"

#include <math.h>

namespace sagevid::kernels {

class ScaleDivisor {
 public:
  static constexpr float kSmallestScale = 0x1p-80f;
  static constexpr float kLargestScale = 0x1p120f;  // above any finite row's, FLT_MAX / 448

  SAGEVID_HD explicit ScaleDivisor(float scale) : scale_(scale), reciprocal_(1.0f / scale) {}

  // Whether the quotients are the division's, as above.
  SAGEVID_HD bool exact() const { return scale_ >= kSmallestScale && scale_ <= kLargestScale; }

  SAGEVID_HD float operator()(float v) const {
    const float q = v * reciprocal_;
    return copysignf(fmaf(fmaf(-q, scale_, v), reciprocal_, q), v);
  }

 private:
  float scale_, reciprocal_;
};

// The plain division, where a ScaleDivisor is not exact.
struct Division {
  float scale;
  SAGEVID_HD float operator()(float v) const { return v / scale; }
};

}  // namespace sagevid::kernels
