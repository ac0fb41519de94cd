// CogVideoXTransformer: loading the diffusers checkpoint, and the forward pass around the blocks (timestep
// embedding, patch/text embedding, positions, output norm, unpatchify).
#include "sagevid/models/cogvideox_transformer.h"

#include "cogvideox_transformer_parts.h"
#include "cogvideox_transformer_weights.h"
#include "parallel/sequence_parallel.h"
#include "sagevid/kernels/shape_string.h"
#include "sagevid/models/weights.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace sagevid {
namespace {

using cogvideox::LayerNorm;
using cogvideox::Linear;
using cogvideox::TimestepMlp;

Linear load_linear(WeightLoader& weights, const std::string& name, int64_t out, int64_t in, bool bias) {
  Linear linear;
  linear.weight = weights.get(name + ".weight", {out, in});
  if (bias) linear.bias = weights.get(name + ".bias", {out});
  return linear;
}

// Without elementwise affine a LayerNorm has no tensors at all.
LayerNorm load_norm(WeightLoader& weights, const std::string& name, int64_t dim, double eps, bool affine) {
  LayerNorm norm;
  norm.eps = eps;
  if (affine) {
    norm.weight = weights.get(name + ".weight", {dim});
    norm.bias = weights.get(name + ".bias", {dim});
  }
  return norm;
}

// One linear computing several of the same input, outputs stacked: one GEMM instead of several (q, k, v).
Linear fuse_linears(const std::vector<Linear>& parts) {
  std::vector<at::Tensor> weights, biases;
  for (const Linear& part : parts) {
    weights.push_back(part.weight);
    if (part.bias.defined()) biases.push_back(part.bias);
  }
  return {at::cat(weights), biases.empty() ? at::Tensor() : at::cat(biases)};
}

TimestepMlp load_timestep_mlp(WeightLoader& weights, const std::string& name, int64_t channels, int64_t dim) {
  TimestepMlp mlp;
  mlp.channels = channels;
  mlp.linear_1 = load_linear(weights, name + ".linear_1", dim, channels, true);
  mlp.linear_2 = load_linear(weights, name + ".linear_2", dim, dim, true);
  return mlp;
}

[[noreturn]] void bad_input(const std::string& what) { throw std::invalid_argument("CogVideoX transformer: " + what); }

}  // namespace

CogVideoXTransformer CogVideoXTransformer::load(const std::filesystem::path& transformer_dir,
                                                const at::TensorOptions& target) {
  WeightLoader weights(transformer_dir, target);
  return build(CogVideoXConfig::load(transformer_dir / "config.json"), weights);
}

CogVideoXTransformer CogVideoXTransformer::random(const CogVideoXConfig& config, const at::TensorOptions& target,
                                                  uint64_t seed) {
  WeightLoader weights = WeightLoader::random(target, seed);
  return build(config, weights);
}

CogVideoXTransformer CogVideoXTransformer::build(const CogVideoXConfig& config, WeightLoader& weights) {
  CogVideoXTransformer model;
  model.config_ = config;
  auto layers = std::make_shared<Weights>();
  const CogVideoXConfig& c = model.config_;
  const int64_t dim = c.inner_dim(), time_dim = c.time_embed_dim, p = c.patch_size;
  const bool affine = c.norm_elementwise_affine;

  // Patch embedding: a strided conv over 2D patches (1.0), or a linear over (C, p_t, p, p) patches (1.5),
  // which diffusers builds with a bias whatever patch_bias says.
  if (!c.patch_size_t) {
    layers->patch_proj.weight = weights.get("patch_embed.proj.weight", {dim, c.in_channels, p, p});
    if (c.patch_bias) layers->patch_proj.bias = weights.get("patch_embed.proj.bias", {dim});
  } else {
    layers->patch_proj = load_linear(weights, "patch_embed.proj", dim, c.in_channels * c.patch_volume(), true);
  }
  layers->text_proj = load_linear(weights, "patch_embed.text_proj", dim, c.text_embed_dim, true);
  if (c.use_learned_positional_embeddings) {
    const int64_t tokens = (c.sample_height / p) * (c.sample_width / p) * c.latent_sample_frames();
    layers->learned_positions = weights.get("patch_embed.pos_embedding", {1, c.max_text_seq_length + tokens, dim});
  }

  layers->time = load_timestep_mlp(weights, "time_embedding", dim, time_dim);
  if (c.has_ofs()) layers->ofs = load_timestep_mlp(weights, "ofs_embedding", *c.ofs_embed_dim, *c.ofs_embed_dim);

  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string prefix = "transformer_blocks." + std::to_string(i) + ".";
    Block b;
    for (auto [norm, name] : {std::pair{&b.norm1, "norm1"}, std::pair{&b.norm2, "norm2"}}) {
      norm->linear = load_linear(weights, prefix + name + ".linear", 6 * dim, time_dim, true);
      norm->norm = load_norm(weights, prefix + name + ".norm", dim, c.norm_eps, affine);
    }
    b.to_qkv = fuse_linears({load_linear(weights, prefix + "attn1.to_q", dim, dim, c.attention_bias),
                             load_linear(weights, prefix + "attn1.to_k", dim, dim, c.attention_bias),
                             load_linear(weights, prefix + "attn1.to_v", dim, dim, c.attention_bias)});
    // The QK norms are affine and eps 1e-6 in every CogVideoX model (diffusers fixes both).
    b.norm_q = load_norm(weights, prefix + "attn1.norm_q", c.attention_head_dim, 1e-6, true);
    b.norm_k = load_norm(weights, prefix + "attn1.norm_k", c.attention_head_dim, 1e-6, true);
    b.to_out = load_linear(weights, prefix + "attn1.to_out.0", dim, dim, true);
    b.ff_in = load_linear(weights, prefix + "ff.net.0.proj", 4 * dim, dim, true);
    b.ff_out = load_linear(weights, prefix + "ff.net.2", dim, 4 * dim, true);
    layers->blocks.push_back(std::move(b));
  }

  layers->norm_final = load_norm(weights, "norm_final", dim, c.norm_eps, affine);
  layers->norm_out_linear = load_linear(weights, "norm_out.linear", 2 * dim, time_dim, true);
  layers->norm_out_norm = load_norm(weights, "norm_out.norm", dim, c.norm_eps, affine);
  layers->proj_out = load_linear(weights, "proj_out", c.patch_volume() * c.out_channels, dim, true);
  weights.check_all_used();
  model.options_ = layers->proj_out.weight.options();
  model.weights_ = std::move(layers);
  return model;
}

at::Tensor CogVideoXTransformer::embed_time(const at::Tensor& timestep, const std::optional<at::Tensor>& ofs,
                                            int64_t batch) const {
  const auto mlp = [&](const TimestepMlp& m, const at::Tensor& t, const char* what) {
    if (t.dim() != 1 || (t.size(0) != 1 && t.size(0) != batch))
      bad_input(std::string(what) + " must be [1] or [B] = [" + std::to_string(batch) + "], got " +
                kernels::shape_string(t.sizes()));
    const at::Tensor projected = cogvideox::timestep_projection(t.to(options_.device()), m.channels,
                                                                config_.flip_sin_to_cos, double(config_.freq_shift));
    return m.linear_2(at::silu(m.linear_1(projected.to(options_.dtype()))));
  };
  at::Tensor temb = mlp(weights_->time, timestep, "timestep");
  if (config_.has_ofs()) {
    if (!ofs) bad_input("this model has an ofs embedding: pass ofs (the I2V pipeline's 2.0)");
    temb = temb + mlp(weights_->ofs, *ofs, "ofs");
  }
  return temb;
}

at::Tensor CogVideoXTransformer::embed_patches(const at::Tensor& latents) const {
  const int64_t batch = latents.size(0), frames = latents.size(1), channels = latents.size(2);
  const int64_t height = latents.size(3), width = latents.size(4), p = config_.patch_size;
  const int64_t grid_h = height / p, grid_w = width / p;
  if (!config_.patch_size_t) {
    // Each frame alone: [B*F, C, H, W] -> [B*F, D, h, w] -> tokens in (f, h, w) order.
    const at::Tensor patches = at::conv2d(latents.reshape({batch * frames, channels, height, width}),
                                          weights_->patch_proj.weight, weights_->patch_proj.bias, {p, p});
    return patches.view({batch, frames, -1, grid_h * grid_w})
        .transpose(2, 3)
        .reshape({batch, frames * grid_h * grid_w, -1});
  }
  // 1.5: a patch spans p_t frames; its values are ordered (C, p_t, p, p), tokens (f / p_t, h, w).
  const int64_t pt = *config_.patch_size_t;
  const at::Tensor patches = latents.reshape({batch, frames / pt, pt, channels, grid_h, p, grid_w, p})
                                 .permute({0, 1, 4, 6, 3, 2, 5, 7})
                                 .reshape({batch, frames / pt * grid_h * grid_w, channels * pt * p * p});
  return weights_->patch_proj(patches);
}

at::Tensor CogVideoXTransformer::positional_table(int64_t frames, int64_t height, int64_t width) const {
  const CogVideoXConfig& c = config_;
  if (c.use_rotary_positional_embeddings && !c.use_learned_positional_embeddings) return {};
  const int64_t p = c.patch_size;
  // diffusers compares the pixel frame count the latents stand for with sample_frames.
  const int64_t pixel_frames = (frames - 1) * c.temporal_compression_ratio + 1;
  if (c.use_learned_positional_embeddings) {
    if (height != c.sample_height || width != c.sample_width)
      bad_input("learned positional embeddings only exist for the sample size " + std::to_string(c.sample_height) +
                "x" + std::to_string(c.sample_width) + " (latent pixels), got " + std::to_string(height) + "x" +
                std::to_string(width));
    if (pixel_frames == c.sample_frames) return weights_->learned_positions;
    // At another frame count diffusers falls back to the sin-cos table, text rows zero: so do we.
  }
  const at::Tensor video =
      cogvideox::sincos_positions_3d(c.inner_dim(), frames, height / p, width / p, c.spatial_interpolation_scale,
                                     c.temporal_interpolation_scale, options_.device());
  at::Tensor table = at::zeros({1, c.max_text_seq_length + video.size(0), c.inner_dim()}, video.options());
  table.narrow(1, c.max_text_seq_length, video.size(0)).copy_(video);
  return table.to(options_.dtype());
}

at::Tensor CogVideoXTransformer::unpatchify(const at::Tensor& tokens, int64_t frames, int64_t height,
                                            int64_t width) const {
  const int64_t batch = tokens.size(0), p = config_.patch_size, c_out = config_.out_channels;
  const int64_t grid_h = height / p, grid_w = width / p;
  if (!config_.patch_size_t) {
    // [B, (f, h, w), (C, p, p)] -> [B, F, C, h, p, w, p]
    return tokens.view({batch, frames, grid_h, grid_w, c_out, p, p})
        .permute({0, 1, 4, 2, 5, 3, 6})
        .reshape({batch, frames, c_out, height, width});
  }
  // [B, (f / p_t, h, w), (C, p_t, p, p)] -> [B, F / p_t, p_t, C, h, p, w, p]
  const int64_t pt = *config_.patch_size_t;
  return tokens.view({batch, frames / pt, grid_h, grid_w, c_out, pt, p, p})
      .permute({0, 1, 5, 4, 2, 6, 3, 7})
      .reshape({batch, frames, c_out, height, width});
}

at::Tensor CogVideoXTransformer::forward(const at::Tensor& latents, const at::Tensor& text_embeddings,
                                         const at::Tensor& timestep, const std::optional<at::Tensor>& ofs,
                                         const Attention& attention, const parallel::SequenceParallel* sequence) const {
  const CogVideoXConfig& c = config_;
  if (latents.dim() != 5 || latents.size(2) != c.in_channels)
    bad_input("latents must be [B, F, " + std::to_string(c.in_channels) + ", H, W], got " +
              kernels::shape_string(latents.sizes()));
  const int64_t batch = latents.size(0), frames = latents.size(1), height = latents.size(3), width = latents.size(4);
  if (height % c.patch_size || width % c.patch_size)
    bad_input("latent height and width must be multiples of patch_size " + std::to_string(c.patch_size) + ", got " +
              kernels::shape_string(latents.sizes()));
  if (c.patch_size_t && frames % *c.patch_size_t)
    bad_input("latent frames must be a multiple of patch_size_t " + std::to_string(*c.patch_size_t) +
              " (the pipeline pads them), got " + std::to_string(frames));
  if (text_embeddings.dim() != 3 || text_embeddings.size(0) != batch || text_embeddings.size(2) != c.text_embed_dim)
    bad_input("text_embeddings must be [" + std::to_string(batch) + ", L, " + std::to_string(c.text_embed_dim) +
              "], got " + kernels::shape_string(text_embeddings.sizes()));
  const int64_t text_length = text_embeddings.size(1);

  const at::Tensor temb = embed_time(timestep, ofs, batch);
  at::Tensor text = weights_->text_proj(text_embeddings.to(options_));
  at::Tensor video = embed_patches(latents.to(options_));
  if (const at::Tensor table = positional_table(frames, height, width); table.defined()) {
    if (text_length != c.max_text_seq_length)
      bad_input("with positional embeddings the text must be max_text_seq_length = " +
                std::to_string(c.max_text_seq_length) + " tokens, got " + std::to_string(text_length));
    text = text + table.narrow(1, 0, text_length);
    video = video + table.narrow(1, text_length, video.size(1));
  }
  std::optional<std::pair<at::Tensor, at::Tensor>> rope;
  if (c.use_rotary_positional_embeddings) rope = cogvideox::rotary_tables(c, frames, height, width, options_.device());

  // Under a Ulysses group this rank keeps its share of the video tokens (and of their positions) from here on.
  std::optional<parallel::Shares> shares;
  std::optional<VideoShare> share;
  if (sequence) {
    shares = sequence->shares(video.size(1));
    share.emplace(VideoShare{*sequence, *shares});
    video = sequence->shard(video, 1, *shares).clone(at::MemoryFormat::Contiguous);  // lets the whole go
    if (rope) rope = std::pair{sequence->shard(rope->first, 0, *shares), sequence->shard(rope->second, 0, *shares)};
  }

  std::optional<PendingUpdate> pending;
  for (const Block& block : weights_->blocks)
    pending = run_block(block, text, video, std::move(pending), temb, rope, attention, share ? &*share : nullptr);
  if (pending) video.addcmul_(pending->gate, pending->joint.narrow(1, text_length, video.size(1)));  // text is done
  pending.reset();

  video = weights_->norm_final(video);
  // AdaLayerNorm (chunk_dim 1): shift first, then scale.
  const std::vector<at::Tensor> shift_scale = weights_->norm_out_linear(at::silu(temb)).unsqueeze(1).chunk(2, -1);
  video = weights_->norm_out_norm(video) * (1 + shift_scale[1]) + shift_scale[0];
  at::Tensor patches = weights_->proj_out(video);  // fewer channels than the tokens: where the shares join
  if (sequence) patches = sequence->gather(patches, *shares);
  return unpatchify(patches, frames, height, width);
}

}  // namespace sagevid
