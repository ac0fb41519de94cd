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
// a thread's output channels 8j + c0 and 8j + c0 + 1 (j < kPairs), and the store of a row's pairs with them.
// kPreload: all of them loaded up front, before the first store. For all the compiler knows a store may alias them,
// so a load placed after one waits for it, and a row's pairs go one memory round trip each, a cost paid at every
// work tile's end; preloaded they hold 4·kPairs registers more in the epilogue (docs/sm90-attention.md: which kernels
// take which).
template <int kPairs, bool kPreload>
class OutputChannels {
 public:
  __device__ __forceinline__ OutputChannels(const float* v_scale, float v_scale_factor, const float* v_mean, int c0)
      : v_scale_(v_scale), v_mean_(v_mean), v_scale_factor_(v_scale_factor), c0_(c0) {
    if constexpr (kPreload) {
#pragma unroll
      for (int j = 0; j < kPairs; ++j) {
        const int c = 8 * j + c0;
        scale_[j] = v_scale ? make_float2(v_scale[c] * v_scale_factor, v_scale[c + 1] * v_scale_factor)
                            : make_float2(1.0f, 1.0f);
        mean_[j] = v_mean ? make_float2(v_mean[c], v_mean[c + 1]) : make_float2(0.0f, 0.0f);
      }
    }
  }

  // Pair j of the row at element offset `row_base`, from the normalized accumulator values, in the output type.
  __device__ __forceinline__ void store(const detail::AttentionArgs& args, int64_t row_base, int j, float x0,
                                        float x1) const {
    const int c = 8 * j + c0_;
    if constexpr (kPreload) {
      x0 *= scale_[j].x, x1 *= scale_[j].y;
      if (v_mean_) x0 += mean_[j].x, x1 += mean_[j].y;
    } else {
      if (v_scale_) x0 *= v_scale_[c] * v_scale_factor_, x1 *= v_scale_[c + 1] * v_scale_factor_;
      if (v_mean_) x0 += v_mean_[c], x1 += v_mean_[c + 1];
    }
    if (args.out_type == detail::InputType::fp16)
      *reinterpret_cast<__half2*>(static_cast<__half*>(args.out) + row_base + c) = __floats2half2_rn(x0, x1);
    else
      *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(args.out) + row_base + c) =
          __floats2bfloat162_rn(x0, x1);
  }

 private:
  const float *v_scale_, *v_mean_;
  float v_scale_factor_;
  int c0_;
  float2 scale_[kPreload ? kPairs : 1], mean_[kPreload ? kPairs : 1];
};

}  // namespace sagevid::kernels::sage2
