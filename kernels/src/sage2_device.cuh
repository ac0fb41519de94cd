#pragma once
// Device helpers both attention kernel families share: the exponential, P's packing (FP8 packing also serves
// V's preprocessing), and the epilogue's store of one row's output channels.
#include "sage2_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

namespace sagevid::kernels::sage2 {

constexpr float kNegInf = -INFINITY;  // a masked score

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// An INT8 (or INT4) Q·Kᵀ score as a float in one integer add: 0x4B400000 + x is the float 1.5·2²³ + x, exact
// for |x| < 2²², which bounds every dot product (127² · 128 < 2²¹); the conversion unit it avoids shares the
// exponential's throughput on Hopper. Subtract kMagic (or fold it into the FMA that scales the score).
constexpr float kMagic = 12582912.0f;
constexpr int32_t kMagicBits = 0x4B400000;  // kMagic's bits: an integer sum started from them ends as a float
__device__ __forceinline__ float magic_float(int32_t x) { return __int_as_float(kMagicBits + x); }

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Two floats to two E4M3 bytes (lo in the low byte), round to nearest even, saturating.
__device__ __forceinline__ uint16_t pack_e4m3x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  uint16_t packed;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(packed) : "f"(hi), "f"(lo));
  return packed;
#else
  __trap();
  return 0;
#endif
}

// Four FP8 E4M3 values, `a` in the lowest byte.
__device__ __forceinline__ uint32_t pack_e4m3x4(float a, float b, float c, float d) {
  return uint32_t(pack_e4m3x2(a, b)) | (uint32_t(pack_e4m3x2(c, d)) << 16);
}

// The epilogue's V scale (FP8 P·V; times `v_scale_factor`, what P's own scale left over) and V mean (smoothing) for
// a thread's output channels 8j + c0 and 8j + c0 + 1 (j < kPairs), then the store of a row's pairs with them. All
// are loaded before the first store: for all the compiler knows a store may alias them, so a load placed after one
// would wait for it, and a row's pairs would go one memory round trip each.
template <int kPairs>
struct OutputChannels {
  float2 scale[kPairs], mean[kPairs];
  int c0;
  bool has_mean;

  __device__ __forceinline__ OutputChannels(const float* v_scale, float v_scale_factor, const float* v_mean, int c0)
      : c0(c0), has_mean(v_mean != nullptr) {
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int c = 8 * j + c0;
      scale[j] = v_scale ? make_float2(v_scale[c] * v_scale_factor, v_scale[c + 1] * v_scale_factor)
                         : make_float2(1.0f, 1.0f);
      mean[j] = v_mean ? make_float2(v_mean[c], v_mean[c + 1]) : make_float2(0.0f, 0.0f);
    }
  }

  // Pair j of the row at element offset `row_base`, from the normalized accumulator values, in the output type.
  __device__ __forceinline__ void store(const detail::AttentionArgs& args, int64_t row_base, int j, float x0,
                                        float x1) const {
    x0 *= scale[j].x, x1 *= scale[j].y;
    if (has_mean) x0 += mean[j].x, x1 += mean[j].y;
    const int64_t at = row_base + 8 * j + c0;
    if (args.out_type == detail::InputType::fp16)
      *reinterpret_cast<__half2*>(static_cast<__half*>(args.out) + at) = __floats2half2_rn(x0, x1);
    else
      *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(args.out) + at) = __floats2bfloat162_rn(x0, x1);
  }
};

}  // namespace sagevid::kernels::sage2
