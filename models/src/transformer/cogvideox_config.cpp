// transformer/config.json -> CogVideoXConfig, with diffusers' class defaults and checks for what we cannot run.
#include "sagevid/models/cogvideox_config.h"

#include "sagevid/models/config_reader.h"

namespace sagevid {

CogVideoXConfig CogVideoXConfig::from_json(const nlohmann::json& document, const std::string& source) {
  ConfigReader reader(document, source);
  CogVideoXConfig c;
  const auto positive = [&](const char* key, int64_t fallback) {
    const int64_t value = reader.get<int64_t>(key, fallback);
    if (value < 1) reader.fail(key, "must be at least 1, got " + std::to_string(value));
    return value;
  };
  c.num_attention_heads = positive("num_attention_heads", c.num_attention_heads);
  c.attention_head_dim = positive("attention_head_dim", c.attention_head_dim);
  c.in_channels = positive("in_channels", c.in_channels);
  c.out_channels = positive("out_channels", c.out_channels);
  c.flip_sin_to_cos = reader.get<bool>("flip_sin_to_cos", c.flip_sin_to_cos);
  c.freq_shift = reader.get<int64_t>("freq_shift", c.freq_shift);
  c.time_embed_dim = positive("time_embed_dim", c.time_embed_dim);
  c.ofs_embed_dim = reader.optional<int64_t>("ofs_embed_dim");
  c.text_embed_dim = positive("text_embed_dim", c.text_embed_dim);
  c.num_layers = reader.get<int64_t>("num_layers", c.num_layers);
  if (c.num_layers < 0) reader.fail("num_layers", "must not be negative");
  c.dropout = reader.get<double>("dropout", c.dropout);
  c.attention_bias = reader.get<bool>("attention_bias", c.attention_bias);
  c.sample_width = positive("sample_width", c.sample_width);
  c.sample_height = positive("sample_height", c.sample_height);
  c.sample_frames = positive("sample_frames", c.sample_frames);
  c.patch_size = positive("patch_size", c.patch_size);
  c.patch_size_t = reader.optional<int64_t>("patch_size_t");
  if (c.patch_size_t && *c.patch_size_t < 1) reader.fail("patch_size_t", "must be null or at least 1");
  c.temporal_compression_ratio = positive("temporal_compression_ratio", c.temporal_compression_ratio);
  c.max_text_seq_length = positive("max_text_seq_length", c.max_text_seq_length);
  c.activation_fn = reader.get<std::string>("activation_fn", c.activation_fn);
  if (c.activation_fn != "gelu-approximate" && c.activation_fn != "gelu")
    reader.fail("activation_fn", "\"" + c.activation_fn + "\": only gelu-approximate and gelu are supported");
  c.timestep_activation_fn = reader.get<std::string>("timestep_activation_fn", c.timestep_activation_fn);
  if (c.timestep_activation_fn != "silu" && c.timestep_activation_fn != "swish")
    reader.fail("timestep_activation_fn", "\"" + c.timestep_activation_fn + "\": only silu is supported");
  c.norm_elementwise_affine = reader.get<bool>("norm_elementwise_affine", c.norm_elementwise_affine);
  c.norm_eps = reader.get<double>("norm_eps", c.norm_eps);
  c.spatial_interpolation_scale = reader.get<double>("spatial_interpolation_scale", c.spatial_interpolation_scale);
  c.temporal_interpolation_scale = reader.get<double>("temporal_interpolation_scale", c.temporal_interpolation_scale);
  c.use_rotary_positional_embeddings =
      reader.get<bool>("use_rotary_positional_embeddings", c.use_rotary_positional_embeddings);
  c.use_learned_positional_embeddings =
      reader.get<bool>("use_learned_positional_embeddings", c.use_learned_positional_embeddings);
  c.patch_bias = reader.get<bool>("patch_bias", c.patch_bias);

  // Combinations diffusers itself rejects, or that its math cannot split evenly.
  if (c.use_learned_positional_embeddings && !c.use_rotary_positional_embeddings)
    reader.fail("use_learned_positional_embeddings",
                "learned positions without RoPE: no CogVideoX model has it "
                "(diffusers rejects it too)");
  if (c.has_ofs() && *c.ofs_embed_dim != c.time_embed_dim)
    reader.fail("ofs_embed_dim", "must equal time_embed_dim (the ofs embedding is added to the time embedding)");
  // RoPE splits a head into t/h/w parts of D/4, 3D/8, 3D/8 rotated in pairs; the sin-cos table splits the
  // width the same way into sin/cos halves: both need multiples of 16.
  if (c.use_rotary_positional_embeddings && c.attention_head_dim % 16 != 0)
    reader.fail("attention_head_dim", "must be a multiple of 16 for the 3D rotary embedding");
  if (!c.use_rotary_positional_embeddings && c.inner_dim() % 16 != 0)
    reader.fail("num_attention_heads", "heads x head dim must be a multiple of 16 for the 3D sin-cos embedding");
  if (c.patch_size_t && !c.use_rotary_positional_embeddings)
    reader.fail("patch_size_t",
                "needs use_rotary_positional_embeddings (diffusers' sin-cos table has no "
                "temporal patches)");
  return c;
}

CogVideoXConfig CogVideoXConfig::load(const std::filesystem::path& config_json) {
  return from_json(read_json_file(config_json), config_json.string());
}

}  // namespace sagevid
