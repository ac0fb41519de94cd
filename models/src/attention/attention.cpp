// The attention layer's dispatch: validates a call, runs the configured backend and falls back where it
// cannot run. Reading the configuration is attention_config.cpp's job.
#include "sagevid/models/attention.h"

#include "attention_backends.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2_inputs.h"

#include <ATen/ops/repeat_interleave.h>

#include <spdlog/spdlog.h>

#include <cmath>
#include <stdexcept>

namespace sagevid {
namespace {

[[noreturn]] void invalid(const std::string& message) { throw std::invalid_argument("attention: " + message); }

// The shape and bias rules are the kernels' (sage2_inputs.h), so every backend and the kernels agree on them;
// dtype and device rules are this layer's: float32 is allowed here for the math backend.
void validate(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionParams& params) {
  namespace sage2 = kernels::sage2;
  if (!q.defined() || !k.defined() || !v.defined()) invalid("q, k and v must be defined");
  if (auto problem = sage2::qkv_shape_problem(q, k, v, sage2::Layout::bhnd)) invalid(*problem);
  const auto dtype = q.scalar_type();
  if (dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kFloat)
    invalid(std::string("dtype ") + c10::toString(dtype) + " is not float16, bfloat16 or float32");
  if (k.scalar_type() != dtype || v.scalar_type() != dtype) invalid("q, k and v must share one dtype");
  if (k.device() != q.device() || v.device() != q.device()) invalid("q, k and v must be on one device");
  if (params.scale && !std::isfinite(*params.scale)) invalid("scale must be finite");
  if (params.bias)
    if (auto problem = sage2::bias_problem(*params.bias, q, sage2::dims_of(q, sage2::Layout::bhnd), k.size(2)))
      invalid(*problem);
}

std::optional<std::string> unsupported_reason(AttentionBackend backend, const detail::AttentionCall& call) {
  switch (backend) {
    case AttentionBackend::sage2: return detail::sage2_unsupported(call);
    case AttentionBackend::flash: return detail::flash_unsupported(call);
    case AttentionBackend::cudnn: return detail::cudnn_unsupported(call);
    case AttentionBackend::math: return std::nullopt;
  }
  return "unknown backend";
}

at::Tensor run_backend(AttentionBackend backend, const detail::AttentionCall& call) {
  switch (backend) {
    case AttentionBackend::sage2: return detail::sage2_attention(call);
    case AttentionBackend::flash: return detail::flash_attention(call);
    case AttentionBackend::cudnn: return detail::cudnn_attention(call);
    case AttentionBackend::math: return detail::math_attention(call);
  }
  throw std::logic_error("unknown attention backend");
}

double resolved_scale(const at::Tensor& q, const AttentionParams& params) {
  return params.scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(3))));
}

}  // namespace

std::optional<std::string> attention_unsupported_reason(AttentionBackend backend, const at::Tensor& q,
                                                        const at::Tensor& k, const at::Tensor& v,
                                                        const AttentionParams& params) {
  validate(q, k, v, params);
  static const AttentionConfig defaults;
  return unsupported_reason(backend, {defaults, q, k, v, params, resolved_scale(q, params)});
}

std::optional<std::string> attention_unsupported_on(AttentionBackend backend, const at::Device& device,
                                                    at::ScalarType dtype) {
  switch (backend) {
    case AttentionBackend::sage2: return kernels::sage2::device_unsupported_reason(device, dtype);
    case AttentionBackend::flash:
    case AttentionBackend::cudnn: return detail::fused_device_unsupported(device, dtype);
    case AttentionBackend::math: return std::nullopt;
  }
  return "unknown backend";
}

Attention::Attention(AttentionConfig config) : config_(config) {}

at::Tensor Attention::operator()(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const AttentionParams& params) const {
  return run(config_.backend, q, k, v, params);
}

at::Tensor Attention::run(AttentionBackend backend, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionParams& params) const {
  validate(q, k, v, params);
  const detail::AttentionCall call{config_, q, k, v, params, resolved_scale(q, params)};
  const auto reason = unsupported_reason(backend, call);
  if (!reason) return run_backend(backend, call);

  const std::string what = std::string(backend_name(backend)) + ": " + *reason;
  if (!config_.fallback || *config_.fallback == backend)
    throw std::runtime_error("attention backend " + what + " (no fallback configured)");
  const auto fallback_reason = unsupported_reason(*config_.fallback, call);
  if (fallback_reason)
    throw std::runtime_error("attention backend " + what + "; fallback " +
                             std::string(backend_name(*config_.fallback)) + ": " + *fallback_reason);
  count_fallback(std::string(backend_name(backend)) + " -> " + std::string(backend_name(*config_.fallback)) + ": " +
                 *reason);
  return run_backend(*config_.fallback, call);
}

void Attention::count_fallback(const std::string& what) const {
  std::lock_guard lock(mutex_);
  if (fallbacks_[what]++ == 0) spdlog::warn("attention fallback {} (logged once; counted from now on)", what);
}

std::map<std::string, int64_t> Attention::fallbacks() const {
  std::lock_guard lock(mutex_);
  return fallbacks_;
}

int64_t Attention::fallback_count() const {
  int64_t total = 0;
  for (const auto& [what, count] : fallbacks()) total += count;
  return total;
}

namespace detail {

at::Tensor expanded_bias(const AttentionCall& call, at::ScalarType dtype) {
  namespace sage2 = kernels::sage2;
  return sage2::broadcast_bias(*call.params.bias, dtype, sage2::dims_of(call.q, sage2::Layout::bhnd), call.k.size(2));
}

at::Tensor repeat_kv_heads(const at::Tensor& kv, int64_t query_heads) {
  const int64_t repeats = query_heads / kv.size(1);
  return repeats == 1 ? kv : at::repeat_interleave(kv, repeats, 1);
}

std::optional<std::string> fused_device_unsupported(const at::Device& device, at::ScalarType dtype) {
  if (!device.is_cuda()) return "tensors are on " + device.str() + ", it needs CUDA";
  if (dtype != at::kHalf && dtype != at::kBFloat16)
    return std::string("dtype ") + c10::toString(dtype) + ", it needs float16 or bfloat16";
  if (kernels::compute_capability(device.has_index() ? device.index() : 0) < 80) return "it needs sm_80 or newer";
  return std::nullopt;
}

std::optional<std::string> fused_kernel_unsupported(const AttentionCall& call, int64_t max_head_dim) {
  if (auto reason = fused_device_unsupported(call.q.device(), call.q.scalar_type())) return reason;
  const int64_t head_dim = call.q.size(3);
  if (head_dim % 8 != 0 || head_dim > max_head_dim)
    return "head dim " + std::to_string(head_dim) + ", it needs a multiple of 8 up to " + std::to_string(max_head_dim);
  // Both kernels align a causal mask bottom-right when N_q != N_kv; our convention is top-left.
  if (call.params.causal && call.q.size(2) != call.k.size(2)) return "causal with N_q != N_kv";
  return std::nullopt;
}

}  // namespace detail
}  // namespace sagevid
