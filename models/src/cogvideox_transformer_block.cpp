// One CogVideoX block (diffusers' CogVideoXBlock): adaptive LayerNorm -> joint attention over [text; video]
// with per-head QK LayerNorm and RoPE on the video tokens -> gated residual; adaptive LayerNorm -> GELU
// feed-forward -> gated residual. Text and video carry their own shift/scale/gate from the timestep embedding.
#include "sagevid/models/cogvideox_transformer.h"

#include "cogvideox_transformer_parts.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/cat.h>
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

Modulation modulation(const CogVideoXTransformer::NormZero& norm, const at::Tensor& temb) {
  const std::vector<at::Tensor> parts = norm.linear(at::silu(temb)).unsqueeze(1).chunk(6, -1);
  return {parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]};
}

// norm(x) * (1 + scale) + shift, in one pass over the activations.
at::Tensor modulate(const CogVideoXTransformer::LayerNorm& norm, const at::Tensor& x, const at::Tensor& shift,
                    const at::Tensor& scale) {
  return at::addcmul(shift, norm(x), 1 + scale);
}

// residual += gate * update, in place (the streams are the block's own tensors).
void add_gated(at::Tensor& residual, const at::Tensor& gate, const at::Tensor& update) {
  residual.addcmul_(gate, update);
}

}  // namespace

at::Tensor CogVideoXTransformer::Linear::operator()(const at::Tensor& x) const { return at::linear(x, weight, bias); }

at::Tensor CogVideoXTransformer::LayerNorm::operator()(const at::Tensor& x) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

void CogVideoXTransformer::run_block(const Block& block, at::Tensor& text, at::Tensor& video, const at::Tensor& temb,
                                     const std::optional<std::pair<at::Tensor, at::Tensor>>& rope,
                                     const Attention& attention) const {
  const int64_t batch = video.size(0), text_length = text.size(1), video_length = video.size(1);
  const int64_t length = text_length + video_length;
  const int64_t heads = config_.num_attention_heads, head_dim = config_.attention_head_dim;

  // Attention over the joint sequence.
  const Modulation m1 = modulation(block.norm1, temb);
  const at::Tensor x = at::cat({modulate(block.norm1.norm, text, m1.text_shift, m1.text_scale),
                                modulate(block.norm1.norm, video, m1.shift, m1.scale)},
                               1);
  // [B, L, 3, H, d] -> q, k, v as [B, H, L, d]; the QK norms return fresh tensors, which RoPE rotates in place.
  const at::Tensor qkv = block.to_qkv(x).view({batch, length, 3, heads, head_dim});
  const auto heads_of = [&](int64_t i) { return qkv.select(2, i).transpose(1, 2); };
  const at::Tensor q = block.norm_q(heads_of(0));
  const at::Tensor k = block.norm_k(heads_of(1));
  const at::Tensor v = heads_of(2);
  if (rope) {  // positions are for the video tokens only; text tokens stay unrotated
    const auto& [cos, sin] = *rope;
    for (const at::Tensor& t : {q, k}) {
      at::Tensor video_part = t.narrow(2, text_length, video_length);
      video_part.copy_(cogvideox::apply_rotary(video_part, cos, sin));
    }
  }
  const at::Tensor context = attention(q, k, v).transpose(1, 2).reshape({batch, length, heads * head_dim});
  const at::Tensor attended = block.to_out(context);
  add_gated(video, m1.gate, attended.narrow(1, text_length, video_length));
  add_gated(text, m1.text_gate, attended.narrow(1, 0, text_length));

  // Feed-forward, also over the joint sequence (one GEMM for both streams).
  const Modulation m2 = modulation(block.norm2, temb);
  const at::Tensor y = at::cat({modulate(block.norm2.norm, text, m2.text_shift, m2.text_scale),
                                modulate(block.norm2.norm, video, m2.shift, m2.scale)},
                               1);
  const bool tanh = config_.activation_fn == "gelu-approximate";
  const at::Tensor ff = block.ff_out(at::gelu(block.ff_in(y), tanh ? "tanh" : "none"));
  add_gated(video, m2.gate, ff.narrow(1, text_length, video_length));
  add_gated(text, m2.text_gate, ff.narrow(1, 0, text_length));
}

}  // namespace sagevid
