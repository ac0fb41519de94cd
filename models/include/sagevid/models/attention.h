#pragma once
// The attention-backend layer: every attention call of every model goes through Attention, and the config
// decides which kernel runs it. A backend that cannot serve a call (no GPU, a head dim or bias it does not
// take) is an error unless the config names a fallback; each fallback is counted and logged once per reason.
#include "sagevid/kernels/sage2.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace sagevid {

class ConfigReader;

enum class AttentionBackend {
  sage2,  // our SageAttention2 kernels (CUDA sm_80+, fp16/bf16, head dim 64/128, takes a bias)
  flash,  // PyTorch's FlashAttention-2 kernel, called directly (CUDA, fp16/bf16, no bias)
  cudnn,  // cuDNN fused attention through PyTorch (CUDA, fp16/bf16, takes a bias)
  math,   // portable: any device, fp32 accumulation, takes everything; the reference for the others
};

// Every backend, in the enum's order: a table indexed by backend has kAllBackends.size() entries.
inline constexpr std::array kAllBackends = {AttentionBackend::sage2, AttentionBackend::flash, AttentionBackend::cudnn,
                                            AttentionBackend::math};

std::string_view backend_name(AttentionBackend backend);
AttentionBackend parse_attention_backend(std::string_view name);  // ConfigError listing the choices

struct AttentionConfig {
  AttentionBackend backend = AttentionBackend::math;
  std::optional<AttentionBackend> fallback;  // serves the calls `backend` cannot; none: those calls fail
  kernels::sage2::Options sage2;             // quantization choices of the sage2 backend (causal/scale per call)
};

// Reads {"backend": "sage2", "fallback": "cudnn" | null, "sage2": {"kernel": "auto|mma_sync|wgmma",
// "qk": "auto|int8|int4", "pv": "auto|fp8|fp16", "granularity": "auto|per_thread|per_warp|per_block|per_token",
// "smooth_k": true, "smooth_q": null|true|false, "smooth_v": false, "pv_flush_tiles": 1,
// "p_exponent": "exact"|"quarter_linear"|"half_linear"|"linear"}}.
AttentionConfig read_attention_config(ConfigReader& reader);

// Per-call options. q is [B, H_q, N_q, D]; k and v are [B, H_kv, N_kv, D] with H_q a multiple of H_kv
// (grouped-query attention); fp16, bf16 or fp32, all of one dtype and device.
struct AttentionParams {
  bool causal = false;             // top-left aligned, as torch's SDPA: query i sees keys 0..i
  std::optional<double> scale;     // default 1/sqrt(D)
  std::optional<at::Tensor> bias;  // additive, [N_q, N_kv], [H_q or 1, N_q, N_kv] or [B or 1, H_q or 1, N_q, N_kv]
};

// Why `backend` (with default sage2 options) cannot run this call here, or nullopt if it can.
std::optional<std::string> attention_unsupported_reason(AttentionBackend backend, const at::Tensor& q,
                                                        const at::Tensor& k, const at::Tensor& v,
                                                        const AttentionParams& params);

// Why `backend` cannot run any call on `device` in `dtype` (the device kind, the dtype, the GPU's generation;
// sage2 with default options), or nullopt if it may: calls can still be refused for their shapes or options.
// A cuda device without an index means device 0.
std::optional<std::string> attention_unsupported_on(AttentionBackend backend, const at::Device& device,
                                                    at::ScalarType dtype);

class Attention {
 public:
  explicit Attention(AttentionConfig config = {});

  // Runs the configured backend. Malformed inputs throw std::invalid_argument; never a fallback.
  at::Tensor operator()(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const AttentionParams& params = {}) const;
  // The same with another backend for this call (per-request A/B comparisons); the fallback still applies.
  at::Tensor run(AttentionBackend backend, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                 const AttentionParams& params = {}) const;

  const AttentionConfig& config() const { return config_; }
  std::map<std::string, int64_t> fallbacks() const;  // count per "flash -> math: <reason>"
  int64_t fallback_count() const;

 private:
  void count_fallback(const std::string& what) const;

  AttentionConfig config_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, int64_t> fallbacks_;
};

}  // namespace sagevid
