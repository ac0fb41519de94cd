// One CogVideoX block (diffusers' CogVideoXBlock): adaptive LayerNorm -> joint attention over [text; video]
// with per-head QK LayerNorm and RoPE on the video tokens -> gated residual; adaptive LayerNorm -> GELU
// feed-forward -> gated residual. Text and video carry their own shift/scale/gate from the timestep embedding.
#include "sagevid/models/cogvideox_transformer.h"

#include "cogvideox_transformer_parts.h"

#include <ATen/TensorOperators.h>
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

at::Tensor modulate(const CogVideoXTransformer::LayerNorm& norm, const at::Tensor& x, const at::Tensor& shift,
                    const at::Tensor& scale) {
  return norm(x) * (1 + scale) + shift;
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
  const auto heads_of = [&](const at::Tensor& t) { return t.view({batch, length, heads, head_dim}).transpose(1, 2); };
  at::Tensor q = block.norm_q(heads_of(block.to_q(x)));
  at::Tensor k = block.norm_k(heads_of(block.to_k(x)));
  const at::Tensor v = heads_of(block.to_v(x));
  if (rope) {  // positions are for the video tokens only; text tokens stay unrotated
    const auto& [cos, sin] = *rope;
    q = at::cat({q.narrow(2, 0, text_length), cogvideox::apply_rotary(q.narrow(2, text_length, video_length), cos, sin)}, 2);
    k = at::cat({k.narrow(2, 0, text_length), cogvideox::apply_rotary(k.narrow(2, text_length, video_length), cos, sin)}, 2);
  }
  const at::Tensor context = attention(q, k, v).transpose(1, 2).reshape({batch, length, heads * head_dim});
  const at::Tensor attended = block.to_out(context);
  video = video + m1.gate * attended.narrow(1, text_length, video_length);
  text = text + m1.text_gate * attended.narrow(1, 0, text_length);

  // Feed-forward, also over the joint sequence (one GEMM for both streams).
  const Modulation m2 = modulation(block.norm2, temb);
  const at::Tensor y = at::cat({modulate(block.norm2.norm, text, m2.text_shift, m2.text_scale),
                                modulate(block.norm2.norm, video, m2.shift, m2.scale)},
                               1);
  const bool tanh = config_.activation_fn == "gelu-approximate";
  const at::Tensor ff = block.ff_out(at::gelu(block.ff_in(y), tanh ? "tanh" : "none"));
  video = video + m2.gate * ff.narrow(1, text_length, video_length);
  text = text + m2.text_gate * ff.narrow(1, 0, text_length);
}

}  // namespace sagevid
