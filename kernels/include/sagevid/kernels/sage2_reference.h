#pragma once
// CPU reference of SageAttention2 (torch ops, fp32; runs on any device): the same smoothing, quantization
// and FP8 rounding as the CUDA kernels, step by step, so tests can compare the kernels tightly with it and
// loosely with full-precision attention. Options must be resolved (sage2::resolve) before the call. P is
// exponentiated exactly (PExponent::exact) whatever the options say.
#include "sagevid/kernels/sage2.h"
#include "sagevid/kernels/sage2_smoothing.h"

namespace sagevid::kernels::sage2::reference {

// The smoothing math lives in sage2_smoothing.h (the host API uses it too); the reference names it here.
using sage2::bhnd_view;
using sage2::block_mean;
using sage2::key_mean;
using sage2::to_bhnd_float;
using sage2::token_mean;

// Symmetric per-group quantization of x [B, H, N, D] fp32 (N any; rows past N are padding and excluded),
// grouped as in sage2_layout.h. values: int8 [B, H, round_up(N, tile), D] holding integers in [-qmax, qmax]
// (INT4 too: one value per byte here), padding rows 0. scales: [B, H, groups] fp32, scale = amax / qmax
// (1 for an all-zero group); value = clamp(round_half_even(x * (qmax / amax)), -qmax, qmax).
struct QuantizedRows {
  at::Tensor values;
  at::Tensor scales;
};
QuantizedRows quantize_q(const at::Tensor& x_bhnd, Granularity granularity, int qmax);
QuantizedRows quantize_k(const at::Tensor& x_bhnd, Granularity granularity, int qmax);

// Per-channel FP8 E4M3 quantization of v [B, H, N, D] fp32: scale[c] = amax_c / 448 (1 if amax_c is 0),
// values = e4m3(v * (448 / amax_c)) returned as fp32 holding the exact E4M3 values, [B, H, N, D]. amax_c: with
// VScale::sampled (sage2_layout.h), kVScaleMargin times the absmax of channel c over keys 0, kVScaleStride, ...,
// in a head where no value lies past it, else (and with VScale::exact) channel c's absmax.
struct QuantizedV {
  at::Tensor values;
  at::Tensor scales;  // [B, H, D]
};
enum class VScale { sampled, exact };
QuantizedV quantize_v_fp8(const at::Tensor& v_bhnd, VScale scale = VScale::sampled);

// Everything the attention kernel reads, computed the reference way.
struct Preprocessed {
  QuantizedRows q, k;
  at::Tensor k_mean;   // [B, H_kv, D]; undefined without smooth_k
  at::Tensor q_mean;   // [B, H_q, ceil(N_q / kQBlock), D]; undefined without smooth_q
  // Q smoothing adds back ΔS = q_mean · (K − k_mean)ᵀ, as the kernels compute it: from q_mean in INT8
  // (per-token groups over its rows: one scale per block) and K − k_mean in INT8 (the K granularity; k itself
  // in INT8 mode). delta_s: [B, H_q, ceil(N_q / kQBlock), N_kv]. All undefined without smooth_q.
  QuantizedRows q_mean_int8, k_int8;
  at::Tensor delta_s;
  at::Tensor v_mean;   // [B, H_kv, D]; undefined without smooth_v
  QuantizedV v;        // FP8 path: quantized (smoothed) V; FP16 path: values = fp16-rounded V, scales undefined
};
// The token means to smooth K and V with, e.g. the CUDA preprocessing's (a reduction's bits depend on its
// order) to compare the rest bit for bit; key_mean() / token_mean() for an undefined one.
struct TokenMeans {
  at::Tensor k_mean, v_mean;
};
Preprocessed preprocess(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options,
                        const TokenMeans& means = {});

// The kernels' exponents of P differ from the reference's in their last bits: the sm90 kernel's magic-number
// offset rounds at about 6e-5 (base 2) at either end of t − max, so p differs by up to about 8e-5 (relative), and an
// FP8 P̃ value within this relative distance of a rounding midpoint may round the other way there. One such value in
// a row over a few keys moves the row's output by a percent or more.
inline constexpr double kRoundingDoubt = 1e-4;

// The simulated output, and how far each of its elements may move when every FP8 P̃ value within kRoundingDoubt of
// a rounding midpoint rounds the other way (fp32, out's shape and layout; 0 where none is in doubt). FP16 P̃ has none:
// its steps are 64 times finer, so such values move the output far less than the kernels' other differences, while
// a fifth to two fifths of them would be in doubt.
struct Simulated : Result {
  at::Tensor slack;
};

// The whole simulated computation: dequantized scores (+ ΔS, + bias), online softmax in base 2 over the
// kernel family's key tiles, P̃ rounded to FP8 (×448) or FP16 with the running max of its tile, fp32
// accumulation, epilogue.
Simulated attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options,
                    const std::optional<at::Tensor>& bias = std::nullopt, const TokenMeans& means = {});

}  // namespace sagevid::kernels::sage2::reference
