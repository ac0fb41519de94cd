// One CogVideoX block (diffusers' CogVideoXBlock): adaptive LayerNorm -> joint attention over [text; video]
// with per-head QK LayerNorm and RoPE on the video tokens -> gated residual; adaptive LayerNorm -> GELU
// feed-forward -> gated residual. Text and video carry their own shift/scale/gate from the timestep embedding.
#include "sagevid/models/cogvideox_transformer.h"

#include "cogvideox_transformer_parts.h"
#include "cogvideox_transformer_weights.h"
#include "parallel/sequence_parallel.h"
#include "sagevid/kernels/head_norm.h"
#include "sagevid/kernels/residual_norm.h"
#include "sagevid/models/step_profile.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_addmm_activation.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/silu.h>

#include <stdexcept>
#include <variant>

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

// [text; video] as the input of a half block's first linear, `next`: each residual stream first takes its gated
// update (where one is pending), then is normed and modulated with its own shift and scale (norm(x) * (1 + scale)
// + shift) into one joint [B, L, D] tensor, in one pass over the activations (kernels/residual_norm.h); for an
// FP8 `next`, into its quantized rows in that pass.
// update: [B, L, D] (text rows, then video rows) with each stream's gate, or undefined: none pending.
cogvideox::LinearInput updated_joint(const cogvideox::LayerNorm& norm, const cogvideox::Linear& next, at::Tensor& text,
                                     at::Tensor& video, const Modulation& m, const at::Tensor& update = {},
                                     const at::Tensor& gate = {}, const at::Tensor& text_gate = {}) {
  kernels::NormStream text_stream{text, {}, {}, m.text_shift, m.text_scale};
  kernels::NormStream video_stream{video, {}, {}, m.shift, m.scale};
  if (update.defined()) {
    const int64_t text_length = text.size(1);
    text_stream.update = update.narrow(1, 0, text_length);
    text_stream.gate = text_gate;
    video_stream.update = update.narrow(1, text_length, video.size(1));
    video_stream.gate = gate;
  }
  const std::vector<kernels::NormStream> streams{text_stream, video_stream};
  if (!next.weight_scale.defined()) {
    const ProfileRegion region("gated residual add + LayerNorm + modulate");
    return kernels::residual_norm_modulate(streams, norm.weight, norm.bias, norm.eps);
  }
  const ProfileRegion region("gated residual add + LayerNorm + modulate + FP8 rows");
  return cogvideox::QuantizedRows{kernels::residual_norm_modulate_fp8(streams, norm.weight, norm.bias, norm.eps),
                                  text.scalar_type()};
}

// fn(), timed as the region `name` of a StepProfile.
template <typename Fn>
auto profiled(const char* name, Fn&& fn) {
  const ProfileRegion region(name);
  return fn();
}

// The feed-forward: GEMM, GELU, GEMM. The tanh GELU (every CogVideoX checkpoint's) rides in a pass that is
// there anyway: the second GEMM's input quantization where that linear is FP8 (a profiled region of its own),
// else the first GEMM's epilogue (at::_addmm_activation: cuBLASLt's GELU_BIAS on CUDA). The exact GELU runs in
// place between the GEMMs. x is let go once the hidden exists.
at::Tensor feed_forward(const cogvideox::Linear& in, const cogvideox::Linear& out, cogvideox::LinearInput x,
                        bool tanh_gelu) {
  if (tanh_gelu && out.weight_scale.defined()) {
    at::Tensor hidden = profiled("FF in GEMM", [&] { return in(x); });
    x = {};
    const cogvideox::QuantizedRows rows = profiled(
        "GELU + FP8 rows", [&] { return cogvideox::quantize_rows(hidden, kernels::RowActivation::gelu_tanh); });
    hidden.reset();  // its memory back before the GEMM allocates the output
    return profiled("FF out GEMM", [&] { return cogvideox::fp8_linear(out, rows); });
  }
  at::Tensor hidden;
  if (tanh_gelu && in.bias.defined() && !in.weight_scale.defined()) {
    const ProfileRegion region("FF in GEMM + GELU");
    const at::Tensor& rows = x.tensor();  // not quantized: the layer is not FP8
    std::vector<int64_t> shape(rows.sizes().begin(), rows.sizes().end() - 1);
    shape.push_back(in.weight.size(0));
    hidden = at::_addmm_activation(in.bias, rows.reshape({-1, rows.size(-1)}), in.weight.t(), 1, 1, /*use_gelu=*/true)
                 .view(shape);
  } else {
    hidden = profiled("FF in GEMM", [&] { return in(x); });
    profiled("GELU", [&] { return at::gelu_(hidden, tanh_gelu ? "tanh" : "none"); });
  }
  x = {};
  return profiled("FF out GEMM", [&] { return out(hidden); });
}

}  // namespace

at::Tensor cogvideox::Linear::operator()(const at::Tensor& x) const {
  return weight_scale.defined() ? fp8_linear(*this, x) : at::linear(x, weight, bias);
}

at::Tensor cogvideox::Linear::operator()(const LinearInput& x) const {
  const auto* quantized = std::get_if<QuantizedRows>(&x.rows);
  if (!quantized) return (*this)(x.tensor());
  if (!weight_scale.defined()) throw std::invalid_argument("a linear layer given FP8 rows must be FP8 itself");
  return fp8_linear(*this, *quantized);
}

at::Tensor cogvideox::LayerNorm::operator()(const at::Tensor& x) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

at::Tensor CogVideoXTransformer::joint_attention(const Block& block, cogvideox::LinearInput input, int64_t text_length,
                                                 const std::optional<std::pair<at::Tensor, at::Tensor>>& rope,
                                                 const Attention& attention, const VideoShare* share) const {
  const int64_t batch = input.sizes()[0], length = input.sizes()[1];
  const int64_t heads = config_.num_attention_heads, head_dim = config_.attention_head_dim;
  at::Tensor out;  // [B, H, L, d]
  {
    // [B, L, 3, H, d] -> q, k, v as [B, H, L, d]; q and k normed and rotated into fresh tensors, v a view.
    const at::Tensor qkv =
        profiled("QKV GEMM", [&] { return block.to_qkv(input); }).view({batch, length, 3, heads, head_dim});
    input = {};  // the modulated input is done with
    const auto heads_of = [&](int64_t i) { return qkv.select(2, i).transpose(1, 2); };
    std::optional<kernels::Rotary> rotary;  // positions are for the video tokens only; text tokens stay unrotated
    if (rope) rotary = kernels::Rotary{rope->first, rope->second, text_length};
    const auto normed = [&](const cogvideox::LayerNorm& norm, int64_t i) {
      return profiled("QK LayerNorm + RoPE",
                      [&] { return kernels::layer_norm_heads(heads_of(i), norm.weight, norm.bias, norm.eps, rotary); });
    };
    const at::Tensor q = normed(block.norm_q, 0), k = normed(block.norm_k, 1);
    if (!share) {
      out = profiled("attention", [&] { return attention(q, k, heads_of(2)); });
    } else {  // Ulysses: this rank's heads of every token, through the group's all-to-alls
      at::Tensor inputs = profiled("Ulysses exchange: tokens -> heads", [&] {
        return share->group.to_heads(q, k, heads_of(2), text_length, share->shares);
      });
      out = profiled("attention", [&] { return attention(inputs[0], inputs[1], inputs[2]); });
      inputs.reset();
      out = profiled("Ulysses exchange: heads -> tokens",
                     [&] { return share->group.to_tokens(std::move(out), text_length, share->shares, heads); });
    }
  }  // qkv, q and k go before the output projection
  at::Tensor context =
      profiled("heads -> tokens copy", [&] { return out.transpose(1, 2).reshape({batch, length, heads * head_dim}); });
  out.reset();
  return profiled("output GEMM", [&] { return block.to_out(context); });
}

CogVideoXTransformer::PendingUpdate CogVideoXTransformer::run_block(
    const Block& block, at::Tensor& text, at::Tensor& video, std::optional<PendingUpdate> pending,
    const at::Tensor& temb, const std::optional<std::pair<at::Tensor, at::Tensor>>& rope, const Attention& attention,
    const VideoShare* share) const {
  // Attention over the joint sequence.
  const Modulation m1 = modulation(block.norm1, temb);
  const cogvideox::LayerNorm& norm1 = block.norm1.norm;
  cogvideox::LinearInput input =
      pending ? updated_joint(norm1, block.to_qkv, text, video, m1, pending->joint, pending->gate, pending->text_gate)
              : updated_joint(norm1, block.to_qkv, text, video, m1);
  pending.reset();
  at::Tensor attended = joint_attention(block, std::move(input), text.size(1), rope, attention, share);

  // Feed-forward, also over the joint sequence (one GEMM for both streams).
  const Modulation m2 = modulation(block.norm2, temb);
  input = updated_joint(block.norm2.norm, block.ff_in, text, video, m2, attended, m1.gate, m1.text_gate);
  attended.reset();
  return {feed_forward(block.ff_in, block.ff_out, std::move(input), config_.activation_fn == "gelu-approximate"),
          m2.gate, m2.text_gate};
}

}  // namespace sagevid
