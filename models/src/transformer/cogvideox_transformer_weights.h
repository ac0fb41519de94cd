#pragma once
// The CogVideoX transformer's layers as plain weight structs (undefined tensors where the config has no
// bias/affine), private to its source files and white-box tests; the public face is
// sagevid/models/cogvideox_transformer.h.
#include "sagevid/kernels/fp8_rows.h"
#include "sagevid/models/cogvideox_transformer.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <variant>
#include <vector>

namespace sagevid {
namespace cogvideox {

// Activations already quantized per token for an FP8 linear by the pass that made them (the norm before it:
// kernels::residual_norm_modulate_fp8), with the dtype its product comes out in.
struct QuantizedRows {
  kernels::Fp8Rows rows;  // values [..., K] E4M3, scales [..., 1]
  at::ScalarType dtype = at::kBFloat16;
};

// What a linear layer takes: activations [..., K], or, for an FP8 layer, their quantized rows.
struct LinearInput {
  std::variant<at::Tensor, QuantizedRows> rows;
  LinearInput(at::Tensor x = {}) : rows(std::move(x)) {}
  LinearInput(QuantizedRows x) : rows(std::move(x)) {}
  at::IntArrayRef sizes() const;                                         // [..., K] either way
  const at::Tensor& tensor() const { return std::get<at::Tensor>(rows); }  // the activations (else throws)
};

struct Linear {
  at::Tensor weight, bias;
  at::Tensor weight_scale;  // defined: weight is FP8 E4M3 [out, in], times weight_scale [out] fp32 (fp8_linear.cpp)
  bool fast_accum = false;  // FP8 on CUDA: the GEMM with cuBLASLt's fast accumulation
  at::Tensor operator()(const at::Tensor& x) const;
  at::Tensor operator()(const LinearInput& x) const;  // quantized rows need an FP8 layer (else invalid_argument)
};
// `linear` with its weight quantized to FP8 E4M3 per output channel, and its product on FP8 operands (of
// activation(x) where one is given: fused into x's quantization; or of rows quantized before).
Linear to_fp8(const Linear& linear, bool fast_accum = false);
at::Tensor fp8_linear(const Linear& linear, const at::Tensor& x,
                      kernels::RowActivation activation = kernels::RowActivation::none);
at::Tensor fp8_linear(const Linear& linear, const QuantizedRows& x);
// x [..., K] quantized per row for an FP8 linear, activation(x) where one is given.
QuantizedRows quantize_rows(const at::Tensor& x, kernels::RowActivation activation = kernels::RowActivation::none);
struct LayerNorm {
  at::Tensor weight, bias;
  double eps = 1e-5;
  at::Tensor operator()(const at::Tensor& x) const;
};
// CogVideoXLayerNormZero: SiLU(temb) -> linear -> shift/scale/gate for video and for text tokens.
struct NormZero {
  Linear linear;
  LayerNorm norm;
};
// A sinusoidal projection followed by linear -> SiLU -> linear (diffusers' Timesteps + TimestepEmbedding).
struct TimestepMlp {
  int64_t channels = 0;
  Linear linear_1, linear_2;
};

}  // namespace cogvideox

struct CogVideoXTransformer::Block {
  cogvideox::NormZero norm1, norm2;
  cogvideox::Linear to_qkv;  // to_q, to_k, to_v stacked: [3D, D]
  cogvideox::Linear to_out;
  cogvideox::LayerNorm norm_q, norm_k;  // per head, over attention_head_dim
  cogvideox::Linear ff_in, ff_out;
};

struct CogVideoXTransformer::Weights {
  cogvideox::Linear patch_proj;  // conv weight [D, C, p, p] for 1.0, linear [D, C*p_t*p*p] for 1.5
  cogvideox::Linear text_proj;
  at::Tensor learned_positions;  // [1, max_text + sample tokens, D] when learned
  cogvideox::TimestepMlp time, ofs;
  std::vector<Block> blocks;
  cogvideox::LayerNorm norm_final;
  cogvideox::Linear norm_out_linear;  // AdaLayerNorm: SiLU(temb) -> shift, scale
  cogvideox::LayerNorm norm_out_norm;
  cogvideox::Linear proj_out;
};

}  // namespace sagevid
