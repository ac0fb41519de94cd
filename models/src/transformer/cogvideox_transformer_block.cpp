// One CogVideoX block (diffusers' CogVideoXBlock): adaptive LayerNorm -> joint attention over [text; video]
// with per-head QK LayerNorm and RoPE on the video tokens -> gated residual; adaptive LayerNorm -> GELU
// feed-forward -> gated residual. Text and video carry their own shift/scale/gate from the timestep embedding.
#include "sagevid/models/cogvideox_transformer.h"

#include "cogvideox_transformer_parts.h"
#include "cogvideox_transformer_weights.h"
#include "sagevid/kernels/head_norm.h"
#include "sagevid/models/step_profile.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_addmm_activation.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/silu.h>

namespace sagevid {
namespace {

// Shift, scale and gate for each stream, from one linear of SiLU(temb): [B, 6D] -> six [B, 1, D].
struct Modulation {
  at::Tensor shift, scale, gate, text_shift, text_scale, text_gate;
};

Modulation modulation(const cogvideox::NormZero& norm, const at::Tensor& temb) {
  const ProfileRegion region("modulation (SiLU, linear)");
  const std::vector<at::Tensor> parts = norm.linear(at::silu(temb)).unsqueeze(1).chunk(6, -1);
  return {parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]};
}

// [text; video], each stream normed and modulated with its own shift and scale (norm(x) * (1 + scale) + shift,
// one pass over the activations), written straight into one joint [B, L, D] tensor: no per-stream copies to
// concatenate.
at::Tensor modulated_joint(const cogvideox::LayerNorm& norm, const at::Tensor& text, const at::Tensor& video,
                           const Modulation& m) {
  const ProfileRegion region("LayerNorm + modulate");
  const int64_t text_length = text.size(1), video_length = video.size(1);
  at::Tensor joint = at::empty({video.size(0), text_length + video_length, video.size(2)}, video.options());
  at::Tensor text_part = joint.narrow(1, 0, text_length), video_part = joint.narrow(1, text_length, video_length);
  at::addcmul_out(text_part, m.text_shift, norm(text), 1 + m.text_scale);
  at::addcmul_out(video_part, m.shift, norm(video), 1 + m.scale);
  return joint;
}

// fn(), timed as the region `name` of a StepProfile.
template <typename Fn>
auto profiled(const char* name, Fn&& fn) {
  const ProfileRegion region(name);
  return fn();
}

// The feed-forward: GEMM, GELU, GEMM. The tanh GELU (every CogVideoX checkpoint's) rides in a pass that is
// there anyway: the second GEMM's input quantization where that linear is FP8, else the first GEMM's epilogue
// (at::_addmm_activation: cuBLASLt's GELU_BIAS on CUDA). The exact GELU runs in place between the GEMMs.
// x is let go once the hidden exists.
at::Tensor feed_forward(const cogvideox::Linear& in, const cogvideox::Linear& out, at::Tensor x, bool tanh_gelu) {
  if (tanh_gelu && out.weight_scale.defined()) {
    const at::Tensor hidden = profiled("FF in GEMM", [&] { return in(x); });
    x.reset();
    return profiled("GELU + FF out GEMM",
                    [&] { return cogvideox::fp8_linear(out, hidden, kernels::RowActivation::gelu_tanh); });
  }
  at::Tensor hidden;
  if (tanh_gelu && in.bias.defined() && !in.weight_scale.defined()) {
    const ProfileRegion region("FF in GEMM + GELU");
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end() - 1);
    shape.push_back(in.weight.size(0));
    hidden =
        at::_addmm_activation(in.bias, x.reshape({-1, x.size(-1)}), in.weight.t(), 1, 1, /*use_gelu=*/true).view(shape);
  } else {
    hidden = profiled("FF in GEMM", [&] { return in(x); });
    profiled("GELU", [&] { return at::gelu_(hidden, tanh_gelu ? "tanh" : "none"); });
  }
  x.reset();
  return profiled("FF out GEMM", [&] { return out(hidden); });
}

// residual += gate * update, in place (the streams are the block's own tensors).
void add_gated(at::Tensor& residual, const at::Tensor& gate, const at::Tensor& update) {
  residual.addcmul_(gate, update);
}

// Both streams' gated residual updates from one joint [B, L, D] output.
void add_gated_joint(at::Tensor& text, at::Tensor& video, const Modulation& m, const at::Tensor& joint) {
  const ProfileRegion region("gated residual add");
  const int64_t text_length = text.size(1);
  add_gated(video, m.gate, joint.narrow(1, text_length, video.size(1)));
  add_gated(text, m.text_gate, joint.narrow(1, 0, text_length));
}

}  // namespace

at::Tensor cogvideox::Linear::operator()(const at::Tensor& x) const {
  return weight_scale.defined() ? fp8_linear(*this, x) : at::linear(x, weight, bias);
}

at::Tensor cogvideox::LayerNorm::operator()(const at::Tensor& x) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

at::Tensor CogVideoXTransformer::joint_attention(const Block& block, at::Tensor input, int64_t text_length,
                                                 const std::optional<std::pair<at::Tensor, at::Tensor>>& rope,
                                                 const Attention& attention) const {
  const int64_t batch = input.size(0), length = input.size(1);
  const int64_t heads = config_.num_attention_heads, head_dim = config_.attention_head_dim;
  at::Tensor out;  // [B, H, L, d]
  {
    // [B, L, 3, H, d] -> q, k, v as [B, H, L, d]; q and k normed and rotated into fresh tensors, v a view.
    const at::Tensor qkv =
        profiled("QKV GEMM", [&] { return block.to_qkv(input); }).view({batch, length, 3, heads, head_dim});
    input.reset();  // the modulated input is done with
    const auto heads_of = [&](int64_t i) { return qkv.select(2, i).transpose(1, 2); };
    std::optional<kernels::Rotary> rotary;  // positions are for the video tokens only; text tokens stay unrotated
    if (rope) rotary = kernels::Rotary{rope->first, rope->second, text_length};
    const auto normed = [&](const cogvideox::LayerNorm& norm, int64_t i) {
      return profiled("QK LayerNorm + RoPE",
                      [&] { return kernels::layer_norm_heads(heads_of(i), norm.weight, norm.bias, norm.eps, rotary); });
    };
    const at::Tensor q = normed(block.norm_q, 0), k = normed(block.norm_k, 1);
    out = profiled("attention", [&] { return attention(q, k, heads_of(2)); });
  }  // qkv, q and k go before the output projection
  at::Tensor context =
      profiled("heads -> tokens copy", [&] { return out.transpose(1, 2).reshape({batch, length, heads * head_dim}); });
  out.reset();
  return profiled("output GEMM", [&] { return block.to_out(context); });
}

void CogVideoXTransformer::run_block(const Block& block, at::Tensor& text, at::Tensor& video, const at::Tensor& temb,
                                     const std::optional<std::pair<at::Tensor, at::Tensor>>& rope,
                                     const Attention& attention) const {
  // Attention over the joint sequence.
  const Modulation m1 = modulation(block.norm1, temb);
  add_gated_joint(
      text, video, m1,
      joint_attention(block, modulated_joint(block.norm1.norm, text, video, m1), text.size(1), rope, attention));

  // Feed-forward, also over the joint sequence (one GEMM for both streams).
  const Modulation m2 = modulation(block.norm2, temb);
  const at::Tensor ff = feed_forward(block.ff_in, block.ff_out, modulated_joint(block.norm2.norm, text, video, m2),
                                     config_.activation_fn == "gelu-approximate");
  add_gated_joint(text, video, m2, ff);
}

}  // namespace sagevid
