#include "sagevid/models/t5_encoder.h"

#include "sagevid/models/config_reader.h"
#include "sagevid/models/weights.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/where.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace sagevid {

T5Config T5Config::load(const std::filesystem::path& config_json) {
  const nlohmann::json document = read_json_file(config_json);
  ConfigReader reader(document, config_json.string());
  T5Config c;
  c.vocab_size = reader.get<int64_t>("vocab_size", c.vocab_size);
  c.d_model = reader.get<int64_t>("d_model", c.d_model);
  c.d_kv = reader.get<int64_t>("d_kv", c.d_kv);
  c.d_ff = reader.get<int64_t>("d_ff", c.d_ff);
  c.num_layers = reader.get<int64_t>("num_layers", c.num_layers);
  c.num_heads = reader.get<int64_t>("num_heads", c.num_heads);
  c.relative_attention_num_buckets =
      reader.get<int64_t>("relative_attention_num_buckets", c.relative_attention_num_buckets);
  c.relative_attention_max_distance =
      reader.get<int64_t>("relative_attention_max_distance", c.relative_attention_max_distance);
  c.layer_norm_epsilon = reader.get<double>("layer_norm_epsilon", c.layer_norm_epsilon);
  const std::string projection = reader.get<std::string>("feed_forward_proj", "gated-gelu");
  if (projection != "gated-gelu")
    reader.fail("feed_forward_proj", "'" + projection + "': only T5 v1.1's gated-gelu is supported");
  return c;
}

T5Encoder T5Encoder::load(const std::filesystem::path& dir, const at::TensorOptions& target) {
  T5Encoder encoder;
  encoder.config_ = T5Config::load(dir / "config.json");
  const T5Config& c = encoder.config_;
  WeightLoader weights(dir, target);
  const int64_t inner = c.num_heads * c.d_kv;
  // The token embedding is tied: checkpoints keep it as shared.weight, encoder.embed_tokens.weight or both.
  const bool has_shared = weights.contains("shared.weight");
  encoder.embedding_ =
      weights.get(has_shared ? "shared.weight" : "encoder.embed_tokens.weight", {c.vocab_size, c.d_model});
  if (has_shared && weights.contains("encoder.embed_tokens.weight"))
    weights.get("encoder.embed_tokens.weight", {c.vocab_size, c.d_model});
  encoder.relative_attention_bias_ = weights.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                                 {c.relative_attention_num_buckets, c.num_heads});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string prefix = "encoder.block." + std::to_string(i) + ".layer.";
    Block b;
    b.attention_norm = weights.get(prefix + "0.layer_norm.weight", {c.d_model});
    b.q = weights.get(prefix + "0.SelfAttention.q.weight", {inner, c.d_model});
    b.k = weights.get(prefix + "0.SelfAttention.k.weight", {inner, c.d_model});
    b.v = weights.get(prefix + "0.SelfAttention.v.weight", {inner, c.d_model});
    b.o = weights.get(prefix + "0.SelfAttention.o.weight", {c.d_model, inner});
    b.feed_forward_norm = weights.get(prefix + "1.layer_norm.weight", {c.d_model});
    b.wi_0 = weights.get(prefix + "1.DenseReluDense.wi_0.weight", {c.d_ff, c.d_model});
    b.wi_1 = weights.get(prefix + "1.DenseReluDense.wi_1.weight", {c.d_ff, c.d_model});
    b.wo = weights.get(prefix + "1.DenseReluDense.wo.weight", {c.d_model, c.d_ff});
    encoder.blocks_.push_back(std::move(b));
  }
  encoder.final_norm_ = weights.get("encoder.final_layer_norm.weight", {c.d_model});
  weights.check_all_used();
  return encoder;
}

// T5's layer norm: scale only, no mean, variance in fp32, back to the weight's dtype before scaling.
at::Tensor T5Encoder::rms_norm(const at::Tensor& x, const at::Tensor& weight) const {
  const at::Tensor variance = x.to(at::kFloat).pow(2).mean({-1}, /*keepdim=*/true);
  const at::Tensor normalized = x.to(at::kFloat) * at::rsqrt(variance + config_.layer_norm_epsilon);
  return weight * normalized.to(weight.scalar_type());
}

T5Encoder::Block T5Encoder::Block::to(const c10::Device& device) const {
  // Asynchronous from pinned memory only; from pageable host memory the copy is done when this returns.
  const auto copy = [&](const at::Tensor& t) { return t.to(t.options().device(device), /*non_blocking=*/true); };
  return {copy(attention_norm),    copy(q),    copy(k),    copy(v), copy(o),
          copy(feed_forward_norm), copy(wi_0), copy(wi_1), copy(wo)};
}

// Bidirectional relative-position buckets: half the buckets per direction, exact for short distances,
// logarithmic up to max_distance, then clamped.
at::Tensor T5Encoder::position_bias(int64_t length, const c10::Device& device) const {
  const auto options = at::TensorOptions().dtype(at::kLong).device(device);
  const at::Tensor position = at::arange(length, options);
  const at::Tensor relative = position.unsqueeze(0) - position.unsqueeze(1);  // key - query
  const int64_t buckets = config_.relative_attention_num_buckets / 2, max_exact = buckets / 2;
  const at::Tensor distance = at::abs(relative);
  const at::Tensor log_ratio = at::log(distance.to(at::kFloat) / float(max_exact)) /
                               float(std::log(double(config_.relative_attention_max_distance) / double(max_exact)));
  const at::Tensor large = at::minimum((log_ratio * float(buckets - max_exact)).to(at::kLong) + max_exact,
                                       at::full_like(distance, buckets - 1));
  const at::Tensor bucket = (relative > 0).to(at::kLong) * buckets + at::where(distance < max_exact, distance, large);
  return at::embedding(relative_attention_bias_.to(device), bucket).permute({2, 0, 1}).unsqueeze(0);
}

at::Tensor T5Encoder::forward(const at::Tensor& input_ids, const Attention& attention) const {
  return forward(input_ids, attention, embedding_.device());
}

at::Tensor T5Encoder::forward(const at::Tensor& input_ids, const Attention& attention,
                              const c10::Device& device) const {
  if (input_ids.dim() != 2) throw std::invalid_argument("T5 encoder: input_ids must be [B, L]");
  const int64_t batch = input_ids.size(0), length = input_ids.size(1);
  const int64_t heads = config_.num_heads, head_dim = config_.d_kv;
  // The lookup where the table is: only the rows looked up travel, not the 32k-token table.
  at::Tensor x = at::embedding(embedding_, input_ids.to(embedding_.device())).to(device);
  AttentionParams params;
  params.scale = 1.0;  // T5 folds the 1/sqrt(d) into its weights' initialisation
  params.bias = position_bias(length, device).to(x.scalar_type());
  const auto split_heads = [&](const at::Tensor& t) {
    return t.view({batch, length, heads, head_dim}).transpose(1, 2);
  };
  const auto clamp_half = [](at::Tensor t) {
    // As transformers does in fp16: keep infinities out of the residual stream.
    if (t.scalar_type() != at::kHalf) return t;
    const double limit = double(std::numeric_limits<c10::Half>::max()) - (t.isinf().any().item<bool>() ? 1000 : 0);
    return at::clamp(t, -limit, limit);
  };
  for (const Block& stored : blocks_) {
    const Block b = stored.to(device);  // released at the end of the iteration, before the next block's copy
    const at::Tensor h = rms_norm(x, b.attention_norm);
    const at::Tensor context = attention(split_heads(at::linear(h, b.q)), split_heads(at::linear(h, b.k)),
                                         split_heads(at::linear(h, b.v)), params);
    x = clamp_half(x + at::linear(context.transpose(1, 2).reshape({batch, length, heads * head_dim}), b.o));
    const at::Tensor f = rms_norm(x, b.feed_forward_norm);
    x = clamp_half(x + at::linear(at::gelu(at::linear(f, b.wi_0), "tanh") * at::linear(f, b.wi_1), b.wo));
  }
  return rms_norm(x, final_norm_.to(device));
}

}  // namespace sagevid
