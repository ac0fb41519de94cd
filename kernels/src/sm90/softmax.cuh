#pragma once
// The online softmax of the wgmma kernel, per thread: its two query rows' slices of a 64 x 128 score tile.
#include "../sage2_device.cuh"

#include <cstdint>

namespace sagevid::kernels::sage2::sm90 {

// Accumulator element i of a thread sits in row (i / 2) % 2 (of its two rows), column 8 (i / 4) + 2 t + i % 2
// of the key tile (t = lane % 4): the 64 x 128 wgmma accumulator layout.
__host__ __device__ constexpr int accumulator_row(int i) { return (i / 2) % 2; }
__host__ __device__ constexpr int accumulator_column(int i) { return 8 * (i / 4) + i % 2; }  // past 2 t

// float(x) · scale in an integer add and an FMA (magic_float); the FMA's offset rounds at a fraction of one
// unit of x.
__device__ __forceinline__ float scaled_score(int32_t x, float scale) {
  return fmaf(magic_float(x), scale, -kMagic * scale);
}

// One online-softmax step for the lane's two rows over scores already scaled by their k-scales (masked
// ones −inf); the row's q-scale (positive) rides in the exponent's FMA, and so does P's own scale
// (p_log2_scale: FP8 P is stored as 448·p). Leaves the scaled p in s, adds it into row_sum, and gives the
// factors by which the rows' earlier output must shrink in rescale. upper_half_empty: the tile's last 64 keys are
// masked for every row, so their p are 0 without an exponential.
__device__ __forceinline__ void softmax(float (&s)[64], const float (&q_scale)[2], float p_log2_scale,
                                        float (&row_max)[2], float (&row_sum)[2], float (&rescale)[2],
                                        bool upper_half_empty) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float tile_max = kNegInf;
#pragma unroll
    for (int j = 0; j < 16; ++j) tile_max = fmaxf(tile_max, fmaxf(s[4 * j + 2 * half], s[4 * j + 2 * half + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2)) * q_scale[half];
    const float new_max = fmaxf(row_max[half], tile_max);
    const float reference = new_max == kNegInf ? 0.0f : new_max;  // a fully masked row so far
    rescale[half] = fast_exp2(row_max[half] - reference);
    row_max[half] = new_max;
    float sum = 0.0f;
    const auto exponentiate = [&](int first_j, int last_j) {
#pragma unroll
      for (int j = first_j; j < last_j; ++j)
#pragma unroll
        for (int e = 2 * half; e < 2 * half + 2; ++e) {
          s[4 * j + e] = fast_exp2(fmaf(s[4 * j + e], q_scale[half], p_log2_scale - reference));
          sum += s[4 * j + e];
        }
    };
    exponentiate(0, 8);
    if (!upper_half_empty) {
      exponentiate(8, 16);
    } else {
#pragma unroll
      for (int j = 8; j < 16; ++j) s[4 * j + 2 * half] = s[4 * j + 2 * half + 1] = 0.0f;
    }
    row_sum[half] = row_sum[half] * rescale[half] + sum;
  }
}

// The same step for an unmasked tile whose k-scale is uniform over each 64-key half (every granularity but
// per-token), one row (0 or 1 of the lane's two) at a time and in two parts, so that the P·V of a tile's first
// 64 keys can be issued before the exponentials of its last 64. The scores come as the bits of the floats
// kMagic + score (the kernel starts their accumulators from kMagicBits), whose order as integers is the scores'.
// uniform_row_maximum takes the row max over those integers, shrinks the row's sum by its rescale factor and gives
// each 64-key half the exponent's scale and offset; uniform_row_exponentials then turns the row's scores in one
// 64-key half into p at one FMA and the exponential each.
struct RowExponent {
  float scale[2], offset[2];  // per 64-key half
  float linear_scale[2], linear_offset[2];  // the same for linear_e4m3 or linear_f16
};

// P's exponential without the MUFU pipe, the loop's tightest: FP8 keeps 3 of p̃ = 2^y's mantissa bits, and read
// with a mantissa linear in y's fraction (2^f ≈ 1 + f, within 6%), E4M3's byte for 2^y is 8y + 56, rounded. One FMA
// takes the score to w = (8y + 56 − kLinearBias) · 2⁻²⁴; pack_p's conversion to fp16 rounds a pair of them to
// subnormals whose bits are those bytes (negative ones 0: p̃ below 2⁻⁷ is 0), and clamps them to 126, E4M3's largest
// finite byte. kLinearBias centres 1 + f on 2^f (their ratio's mean over f, in eighths), so such bytes sit among
// rounded exponentials without a bias.
constexpr float kLinearBias = 0.4586f;
constexpr float kLinearByteUnit = 0x1p-24f;  // an fp16 subnormal's step
__device__ __forceinline__ float linear_e4m3(float x, float byte_scale, float byte_offset) {
  return fmaf(x, byte_scale, byte_offset);
}

// FP16 P without the MUFU pipe: fp16's bits for 2^y, read with a mantissa linear in y's fraction, are B = 1024 (y + 15)
// (Schraudolph's exponential). Its error is the ratio (1 + f) / 2^f, which the normalization cancels up to its spread
// (1.8%, against E4M3 rounding's 2.6%), so FP16 P·V with these p is still more accurate than FP8 P·V with exact
// ones. One saturating FMA takes the score to w = 1 − (B − kLinearF16Bias) · 2⁻²⁴: inside [0.5, 1) the low 16 bits
// of w are −B's, and B below 0 (p below 2⁻¹⁵) saturates to w = 1, whose are 0; linear_f16x2 packs two and negates
// them. kLinearF16Bias centres the ratio on 1 (1024 log2 of its mean): the normalization would cancel it anyway, but
// so p and its row sums keep exact P's scale.
constexpr float kLinearF16Bias = 58.93f;
__device__ __forceinline__ float linear_f16(float x, float scale, float offset) {
  float w;
  asm("fma.rn.sat.f32 %0, %1, %2, %3;\n" : "=f"(w) : "f"(x), "f"(scale), "f"(offset));
  return w;
}
// The two 16-bit negations in one subtraction: a borrow out of the low half (whenever its B is not 0) is what the
// high half's negation needs; when it is 0, the high half comes out one unit (2⁻¹⁰ of an octave) high.
__device__ __forceinline__ uint32_t linear_f16x2(float lo, float hi) {
  return 0x10000u - __byte_perm(__float_as_uint(lo), __float_as_uint(hi), 0x5410);
}

// Adds a tile's row sums of P, from its packed fp16 pairs (P·V's A fragments: pair r of each 16-key step belongs to
// row r % 2), to row_sum: in fp16 as a tree, whose parts stay under 32 (a relative error near 2⁻¹¹, far under p's).
__device__ __forceinline__ void add_f16_row_sums(const uint32_t (&p)[8][4], float (&row_sum)[2]) {
  const auto half2_of = [](uint32_t bits) { return *reinterpret_cast<const __half2*>(&bits); };
#pragma unroll
  for (int row = 0; row < 2; ++row) {
    __half2 part[8];
#pragma unroll
    for (int step = 0; step < 8; ++step) part[step] = __hadd2(half2_of(p[step][row]), half2_of(p[step][row + 2]));
#pragma unroll
    for (int width = 4; width > 0; width /= 2)
#pragma unroll
      for (int i = 0; i < width; ++i) part[i] = __hadd2(part[i], part[i + width]);
    const float2 sums = __half22float2(part[0]);
    row_sum[row] += sums.x + sums.y;
  }
}

// Two linear_e4m3 values' bytes, lo's in bits 0-7 and hi's in bits 16-23.
__device__ __forceinline__ uint32_t linear_e4m3x2(float lo, float hi) {
  uint32_t halves;
  asm("cvt.rn.relu.f16x2.f32 %0, %1, %2;\n" : "=r"(halves) : "f"(hi), "f"(lo));
  asm("min.u16x2 %0, %0, %1;\n" : "+r"(halves) : "r"(0x007E007Eu));
  return halves;
}

// How much of a uniform tile's P comes from linear bytes or bits (kLinearShare, PExponent's order): which of a row's
// 8-key groups j (its accumulator elements 4j..4j+3) do: none, one in four, every other one, all.
using detail::kLinearAll;
__host__ __device__ constexpr bool linear_group(int linear_share, int j) {
  return linear_share == kLinearAll || (linear_share == 2 && j % 2 == 1) || (linear_share == 1 && j % 4 == 3);
}

// P's four bytes of pack_e4m3x4 (a lowest): a and b of a row's 8-key group j (even), c and d of group j + 1, each
// pair from linear_e4m3 where linear_group says (in every share, when group j's are linear so are j + 1's).
template <int kLinearShare>
__device__ __forceinline__ uint32_t pack_p(int j, float a, float b, float c, float d) {
  if (!linear_group(kLinearShare, j + 1)) return pack_e4m3x4(a, b, c, d);
  const uint32_t high = linear_e4m3x2(c, d);
  if (!linear_group(kLinearShare, j)) return __byte_perm(uint32_t(pack_e4m3x2(a, b)), high, 0x6410);
  return __byte_perm(linear_e4m3x2(a, b), high, 0x6420);
}

// kFp8P: P's type, which sets the linear exponent's constants.
template <bool kFp8P>
__device__ __forceinline__ RowExponent uniform_row_maximum(const int32_t (&x)[64], int row, const float (&key_scale)[2],
                                                           const float (&q_scale)[2], float p_log2_scale,
                                                           float (&row_max)[2], float (&row_sum)[2],
                                                           float (&rescale)[2]) {
  int32_t int_max[2] = {INT32_MIN, INT32_MIN};  // per 64-key half
#pragma unroll
  for (int j = 0; j < 16; ++j) int_max[j / 8] = max(int_max[j / 8], max(x[4 * j + 2 * row], x[4 * j + 2 * row + 1]));
  float tile_max =
      fmaxf((__int_as_float(int_max[0]) - kMagic) * key_scale[0], (__int_as_float(int_max[1]) - kMagic) * key_scale[1]);
  tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
  tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2)) * q_scale[row];
  const float new_max = fmaxf(row_max[row], tile_max);
  rescale[row] = fast_exp2(row_max[row] - new_max);
  row_max[row] = new_max;
  row_sum[row] *= rescale[row];
  RowExponent exponent;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    exponent.scale[k] = key_scale[k] * q_scale[row];
    exponent.offset[k] = p_log2_scale - fmaf(kMagic, exponent.scale[k], new_max);
    if constexpr (kFp8P) {
      exponent.linear_scale[k] = exponent.scale[k] * (8.0f * kLinearByteUnit);
      exponent.linear_offset[k] = (8.0f * exponent.offset[k] + (56.0f - kLinearBias)) * kLinearByteUnit;
    } else {
      exponent.linear_scale[k] = exponent.scale[k] * -0x1p-14f;  // −1024 · 2⁻²⁴
      exponent.linear_offset[k] = 1.0f - (1024.0f * exponent.offset[k] + (15.0f * 1024.0f - kLinearF16Bias)) * 0x1p-24f;
    }
  }
  return exponent;
}

// kLinearShare: which p come from linear_e4m3 (kFp8P, for pack_p) or linear_f16 (for linear_f16x2), whose sums the
// caller makes: those of linear_group.
template <int kLinearShare, bool kFp8P>
__device__ __forceinline__ void uniform_row_exponentials(const int32_t (&x)[64], int row, const RowExponent& exponent,
                                                         int key_half, float (&p)[64], float (&row_sum)[2]) {
  float sum = 0.0f;
#pragma unroll
  for (int j = 8 * key_half; j < 8 * key_half + 8; ++j)
#pragma unroll
    for (int e = 2 * row; e < 2 * row + 2; ++e) {
      const float score = __int_as_float(x[4 * j + e]);
      if (linear_group(kLinearShare, j)) {
        p[4 * j + e] = kFp8P ? linear_e4m3(score, exponent.linear_scale[key_half], exponent.linear_offset[key_half])
                             : linear_f16(score, exponent.linear_scale[key_half], exponent.linear_offset[key_half]);
      } else {
        p[4 * j + e] = fast_exp2(fmaf(score, exponent.scale[key_half], exponent.offset[key_half]));
        sum += p[4 * j + e];
      }
    }
  row_sum[row] += sum;
}

}  // namespace sagevid::kernels::sage2::sm90
