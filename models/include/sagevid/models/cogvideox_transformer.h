#pragma once
// The CogVideoX diffusion transformer (diffusers' CogVideoXTransformer3DModel) for the 2b, 5b, 5b-I2V and 1.5
// checkpoints: text tokens and video patch tokens go through the blocks together ([text; video]), each block
// modulated by the timestep embedding (adaptive LayerNorm shift/scale/gate, separately for text and video);
// the video tokens come out as the noise (v) prediction. Attention goes through the attention-backend layer.
//
//   auto model = CogVideoXTransformer::load(dir / "transformer",
//                                           at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
//   at::Tensor v = model.forward(latents, prompt_embeds, timesteps, std::nullopt, attention);
#include "sagevid/models/attention.h"
#include "sagevid/models/cogvideox_config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace sagevid {

class WeightLoader;
namespace cogvideox {
struct LinearInput;  // a linear layer's activations or their FP8 rows (transformer/cogvideox_transformer_weights.h)
}
namespace parallel {
class SequenceParallel;  // Ulysses sequence parallelism (parallel/sequence_parallel.h)
struct Shares;
}  // namespace parallel

class CogVideoXTransformer {
 public:
  // transformer_dir: config.json and the safetensors checkpoint (one file or sharded with an index). Weights
  // go straight to target's device and dtype. Every tensor the config implies is checked: missing or
  // mis-shaped ones, and tensors the config has no place for, are std::runtime_errors naming them.
  static CogVideoXTransformer load(const std::filesystem::path& transformer_dir, const at::TensorOptions& target);
  // The model of this config with random weights (WeightLoader::random): benchmarks at real sizes.
  static CogVideoXTransformer random(const CogVideoXConfig& config, const at::TensorOptions& target, uint64_t seed);

  // latents [B, F, C_in, H, W] (latent frames and pixels; H, W multiples of patch_size, F a multiple of
  // patch_size_t where set), text_embeddings [B, L, text_embed_dim], timestep [B] (integer or float),
  // ofs [1] or [B] (required when the config has an ofs embedding; the I2V pipeline passes 2.0).
  // Inputs may be on any device/dtype; the model runs in its weights'. Returns the prediction
  // [B, F, C_out, H, W] in the weights' dtype, as diffusers' forward(..., return_dict=False)[0] with the
  // rotary tables the pipeline computes for these sizes (built here).
  // sequence: this rank's Ulysses group, whose ranks all call forward with the same inputs: each carries its
  // share of the video tokens through the blocks, and all return the whole prediction.
  at::Tensor forward(const at::Tensor& latents, const at::Tensor& text_embeddings, const at::Tensor& timestep,
                     const std::optional<at::Tensor>& ofs, const Attention& attention,
                     const parallel::SequenceParallel* sequence = nullptr) const;

  // The same model with the blocks' big linears (QKV, attention output, feed-forward) in FP8 E4M3: weights
  // quantized per output channel here, activations per token at each call (cuBLASLt FP8 GEMMs through
  // at::_scaled_mm on CUDA; the same arithmetic in fp32 elsewhere). Other layers keep their dtype. fast_accum:
  // the GEMMs with cuBLASLt's fast accumulation (PipelineOptions::fp8_fast_accum; no effect off CUDA).
  CogVideoXTransformer with_fp8_linears(bool fast_accum = false) const;

  const CogVideoXConfig& config() const { return config_; }
  const at::TensorOptions& options() const { return options_; }

  // The layers as plain weight structs, private to sagevid_models (transformer/cogvideox_transformer_weights.h).
  struct Block;
  struct Weights;

 private:
  static CogVideoXTransformer build(const CogVideoXConfig& config, WeightLoader& weights);
  at::Tensor embed_time(const at::Tensor& timestep, const std::optional<at::Tensor>& ofs, int64_t batch) const;
  at::Tensor embed_patches(const at::Tensor& latents) const;  // [B, N_video, D]
  // The position table added to [text; video] (sin-cos or learned), or undefined when the model uses RoPE only.
  at::Tensor positional_table(int64_t frames, int64_t height, int64_t width) const;
  // A half block's output with its gates, not yet added to the residual streams: the next half adds it in the
  // pass that norms its input (forward() adds the last block's).
  struct PendingUpdate {
    at::Tensor joint;            // [B, L + N, D]: text rows, then video rows
    at::Tensor gate, text_gate;  // [B, 1, D]
  };
  // This rank's share of the video tokens, where a Ulysses group runs the call.
  struct VideoShare {
    const parallel::SequenceParallel& group;
    const parallel::Shares& shares;
  };
  // One block over the text [B, L, D] and video [B, N, D] residual streams, which first take `pending` (the
  // previous block's feed-forward update, released once added); returns this block's own. rope: cos, sin
  // [N, head_dim]. Each half holds its temporaries only while it runs: the fused QKV output, q and k are gone
  // before the output projection, and all of them before the feed-forward.
  PendingUpdate run_block(const Block& block, at::Tensor& text, at::Tensor& video, std::optional<PendingUpdate> pending,
                          const at::Tensor& temb, const std::optional<std::pair<at::Tensor, at::Tensor>>& rope,
                          const Attention& attention, const VideoShare* share) const;
  // Self-attention over the modulated joint input [B, L, D] (taken over and released once projected to q, k, v;
  // FP8 rows where the QKV projection is FP8); returns the output projection [B, L, D]. With a share, L holds
  // this rank's video tokens and the attention call goes through its Ulysses group.
  at::Tensor joint_attention(const Block& block, cogvideox::LinearInput input, int64_t text_length,
                             const std::optional<std::pair<at::Tensor, at::Tensor>>& rope, const Attention& attention,
                             const VideoShare* share) const;
  at::Tensor unpatchify(const at::Tensor& tokens, int64_t frames, int64_t height, int64_t width) const;

  CogVideoXConfig config_;
  at::TensorOptions options_;
  std::shared_ptr<const Weights> weights_;
};

}  // namespace sagevid
