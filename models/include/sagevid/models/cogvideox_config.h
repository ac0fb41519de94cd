#pragma once
// transformer/config.json of a CogVideoX checkpoint (diffusers' CogVideoXTransformer3DModel arguments), typed.
// Absent keys take the class defaults of diffusers 0.39; keys not listed here are ignored (diffusers writes
// "_class_name", "_diffusers_version" and the like). Values we cannot run are ConfigErrors naming the key.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace sagevid {

struct CogVideoXConfig {
  int64_t num_attention_heads = 30;
  int64_t attention_head_dim = 64;
  int64_t in_channels = 16;   // 2x out_channels for image-to-video (image latents concatenated on channels)
  int64_t out_channels = 16;
  bool flip_sin_to_cos = true;  // timestep embedding order: cos then sin
  int64_t freq_shift = 0;
  int64_t time_embed_dim = 512;
  std::optional<int64_t> ofs_embed_dim;  // CogVideoX1.5-5B-I2V only; null or 0: no ofs embedding
  int64_t text_embed_dim = 4096;
  int64_t num_layers = 30;
  double dropout = 0.0;  // read for completeness; inference never drops
  bool attention_bias = true;
  // The sample size the model was trained at, in latent pixels (and pixel frames for sample_frames, see
  // latent_sample_frames()): it sizes the learned positional table and the RoPE base grid.
  int64_t sample_width = 90;
  int64_t sample_height = 60;
  int64_t sample_frames = 49;
  int64_t patch_size = 2;
  std::optional<int64_t> patch_size_t;  // CogVideoX 1.5: 2 (frames are patched in pairs); 1.0: null
  int64_t temporal_compression_ratio = 4;
  int64_t max_text_seq_length = 226;
  std::string activation_fn = "gelu-approximate";  // feed-forward: "gelu-approximate" (tanh) or "gelu"
  std::string timestep_activation_fn = "silu";
  bool norm_elementwise_affine = true;
  double norm_eps = 1e-5;
  double spatial_interpolation_scale = 1.875;
  double temporal_interpolation_scale = 1.0;
  bool use_rotary_positional_embeddings = false;
  bool use_learned_positional_embeddings = false;
  bool patch_bias = true;  // the 2D patch convolution's bias; the patch_size_t linear always has one

  static CogVideoXConfig from_json(const nlohmann::json& document, const std::string& source);
  static CogVideoXConfig load(const std::filesystem::path& config_json);

  int64_t inner_dim() const { return num_attention_heads * attention_head_dim; }
  bool has_ofs() const { return ofs_embed_dim.has_value() && *ofs_embed_dim != 0; }
  // Latent frames of the sample size: sample_frames counts pixel frames (49 -> 13).
  int64_t latent_sample_frames() const { return (sample_frames - 1) / temporal_compression_ratio + 1; }
  // Values per video token: C x p x p, times p_t with patch_size_t.
  int64_t patch_volume() const { return patch_size * patch_size * patch_size_t.value_or(1); }
};

}  // namespace sagevid
