#pragma once
// The T5 v1.1 encoder CogVideoX uses as its text encoder (transformers' T5EncoderModel): RMS norms, gated-GELU
// feed-forward, no biases, unscaled attention scores plus a relative-position bias computed once (block 0's
// table) and shared by every block. Attention goes through the attention-backend layer with that bias.
#include "sagevid/models/attention.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <vector>

namespace sagevid {

struct T5Config {
  int64_t vocab_size = 32128;
  int64_t d_model = 4096;
  int64_t d_kv = 64;
  int64_t d_ff = 10240;
  int64_t num_layers = 24;
  int64_t num_heads = 64;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;

  // Reads text_encoder/config.json; keys not listed here are ignored (transformers writes many).
  static T5Config load(const std::filesystem::path& config_json);
};

class T5Encoder {
 public:
  // dir: the text_encoder/ folder (config.json and the safetensors checkpoint).
  static T5Encoder load(const std::filesystem::path& dir, const at::TensorOptions& target);

  // input_ids [B, L] (int64, any device) -> last hidden state [B, L, d_model] in the weights' dtype, on the
  // weights' device.
  at::Tensor forward(const at::Tensor& input_ids, const Attention& attention) const;
  // The same computed on `device` with the weights wherever they were loaded: weights elsewhere (an encoder
  // kept in host memory) are copied there one block at a time, each freed before the next arrives, so the
  // device holds one block's weights (~0.4 GB for T5-XXL in bf16) instead of the whole encoder. The token
  // lookup stays where the embedding table is. Returns the hidden state on `device`.
  at::Tensor forward(const at::Tensor& input_ids, const Attention& attention, const c10::Device& device) const;
  const T5Config& config() const { return config_; }

 private:
  struct Block {
    at::Tensor attention_norm, q, k, v, o;
    at::Tensor feed_forward_norm, wi_0, wi_1, wo;
    Block to(const c10::Device& device) const;  // the same tensors where they are there, else copies
  };
  at::Tensor position_bias(int64_t length, const c10::Device& device) const;  // [1, H, L, L]
  at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight) const;

  T5Config config_;
  at::Tensor embedding_, relative_attention_bias_, final_norm_;
  std::vector<Block> blocks_;
};

}  // namespace sagevid
