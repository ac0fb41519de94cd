// SageAttention2 host API: validates, resolves per-architecture defaults, runs the preprocessing and the
// attention kernel.
#include "sagevid/kernels/sage2.h"

#include "sage2_kernels.h"
#include "sagevid/kernels/cuda_check.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2_inputs.h"
#include "sagevid/kernels/sage2_reference.h"
#include "sagevid/kernels/sage2_smoothing.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/repeat_interleave.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace sagevid::kernels::sage2 {
namespace {

detail::StridedInput strided(const at::Tensor& x, Layout layout) {
  const Dims d = dims_of(x, layout);
  const bool bhnd = layout == Layout::bhnd;
  return {x.data_ptr(),
          x.scalar_type() == at::kHalf ? detail::InputType::fp16 : detail::InputType::bf16,
          x.stride(0),
          bhnd ? x.stride(1) : x.stride(2),
          bhnd ? x.stride(2) : x.stride(1),
          int(d.batch),
          int(d.heads),
          int(d.len),
          int(d.head_dim)};
}

// Q or K's quantized values (INT4: two per byte) and group scales, empty, in the kernel's layout.
std::pair<at::Tensor, at::Tensor> empty_quantized_rows(const at::Tensor& x, const Options& o, bool is_key) {
  const Dims d = dims_of(x, o.layout);
  const int64_t tile = is_key ? kKBlock : kQBlock, blocks = (d.len + tile - 1) / tile;
  const int64_t groups = blocks * (is_key ? k_groups_per_block(*o.granularity) : q_groups_per_block(*o.granularity));
  return {at::empty({d.batch, d.heads, blocks * tile, *o.qk == QkType::int4 ? d.head_dim / 2 : d.head_dim},
                    x.options().dtype(at::kChar)),
          at::empty({d.batch, d.heads, groups}, x.options().dtype(at::kFloat))};
}

// V's values, empty, in the layout of the P·V MMA of the kernel family.
at::Tensor empty_v_values(const at::Tensor& v, const Options& o, detail::VFormat format) {
  const Dims d = dims_of(v, o.layout);
  const int64_t padded = round_up(d.len, kKBlock);
  switch (format) {
    case detail::VFormat::fp8_transposed:
      return at::empty({d.batch, d.heads, d.head_dim, padded}, v.options().dtype(at::kByte));
    case detail::VFormat::fp16_transposed:
      return at::empty({d.batch, d.heads, d.head_dim, padded}, v.options().dtype(at::kHalf));
    case detail::VFormat::fp16: break;
  }
  return at::empty({d.batch, d.heads, padded, d.head_dim}, v.options().dtype(at::kHalf));
}

float* float_pointer(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// Whether FP8 V's scale comes from the sampled keys' absmax (sage2_layout.h), the heads with a value past its bound
// quantized again with their exact absmax. Smoothed V's absmax is exact already.
bool sampled_v_scale(const Options& o) { return *o.pv == PvType::fp8 && !o.smooth_v; }

}  // namespace

std::optional<std::string> device_unsupported_reason(const at::Device& device, at::ScalarType dtype) {
  if (!device.is_cuda()) return "tensors must be on a CUDA device, not " + device.str();
  if (dtype != at::kHalf && dtype != at::kBFloat16)
    return std::string("q, k and v must all be float16 or all bfloat16, not ") + c10::toString(dtype);
  if (compute_capability(device.has_index() ? device.index() : 0) < 80) return "needs sm_80 or newer";
  return std::nullopt;
}

std::optional<std::string> unsupported_reason(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                              const Options& options, bool has_bias) {
  if (k.device() != q.device() || v.device() != q.device()) return "q, k and v must be on one device";
  const auto dtype = q.scalar_type();
  if (k.scalar_type() != dtype || v.scalar_type() != dtype) return "q, k and v must share one dtype";
  if (auto reason = device_unsupported_reason(q.device(), dtype)) return reason;
  if (auto problem = qkv_shape_problem(q, k, v, options.layout)) return problem;
  if (q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1) return "the head dim must be contiguous";
  const int64_t head_dim = q.size(3);
  if (head_dim != 64 && head_dim != 128)
    return "head dim " + std::to_string(head_dim) + " (kernels exist for 64 and 128)";
  const int cc = compute_capability(q.device().index());
  if (options.pv == PvType::fp8 && cc < 89) return "FP8 P·V needs sm_89 or newer";
  try {
    resolve(options, cc, has_bias);
  } catch (const std::invalid_argument& error) {
    return std::string(error.what()).substr(std::string("sage2: ").size());
  }
  return std::nullopt;
}

namespace {

// The preprocessing for resolved options (device and stream already current): K's and V's token statistics
// (K's from every kKeyMeanStride-th key) in one pass, then Q, K and V quantized in one more (V smoothed into FP8
// needs a pass for its absmax between them; Q smoothing its block means from torch, and with INT4 an INT8 K' for
// ΔS).
Quantized prepare_resolved(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& o) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const Dims dk = dims_of(k, o.layout);
  const bool fp8 = *o.pv == PvType::fp8;
  const auto floats = [&](at::IntArrayRef sizes) { return at::empty(sizes, q.options().dtype(at::kFloat)); };
  const auto channels = [&] { return floats({dk.batch, dk.heads, dk.head_dim}); };

  const int parts = detail::statistics_chunks(int(dk.len));
  const auto partial = [&](bool wanted) {
    return wanted ? floats({dk.batch, dk.heads, parts, dk.head_dim}) : at::Tensor();
  };
  const bool sampled = sampled_v_scale(o);
  const at::Tensor k_sum = partial(o.smooth_k), v_sum = partial(o.smooth_v), v_absmax = partial(sampled);
  // The sampled scale's check, zeroed by the statistics pass: each channel's exact absmax [B, H, D] as float bits,
  // then each head's flag [B, H].
  at::Tensor v_bound;
  detail::SampledVScale v_check;
  if (sampled) {
    const int64_t heads = int64_t(dk.batch) * dk.heads, channel_count = heads * dk.head_dim;
    v_bound = at::empty({channel_count + heads}, q.options().dtype(at::kInt));
    v_check = {reinterpret_cast<float*>(v_bound.data_ptr<int>()), v_bound.data_ptr<int>() + channel_count};
  }
  if (k_sum.defined() || v_sum.defined() || v_absmax.defined()) {
    detail::token_statistics(strided(k, o.layout), strided(v, o.layout),
                             {float_pointer(k_sum), float_pointer(v_sum), float_pointer(v_absmax),
                              sampled ? v_bound.data_ptr<int>() : nullptr, sampled ? v_bound.numel() : 0},
                             stream);
  }
  const auto folded = [&](const at::Tensor& t, float divisor) {
    return t.defined() ? detail::ChannelPartials{t.data_ptr<float>(), parts, divisor} : detail::ChannelPartials{};
  };
  const detail::ChannelPartials k_mean = folded(k_sum, float(key_mean_samples(int(dk.len))));
  const detail::ChannelPartials v_mean = folded(v_sum, float(dk.len));
  detail::ChannelPartials v_scale_source = folded(v_absmax, 1.0f);
  at::Tensor smoothed_absmax;
  if (fp8 && o.smooth_v) {
    smoothed_absmax = channels();
    detail::channel_absmax(strided(v, o.layout), v_mean, smoothed_absmax.data_ptr<float>(), stream);
    v_scale_source = {smoothed_absmax.data_ptr<float>(), 1, 1.0f};
  }

  Quantized quantized;
  quantized.kernel = *o.kernel;
  // Q's block means from sage2_smoothing.h, as the reference computes them: both sides quantize identical bits.
  if (*o.smooth_q) quantized.q_mean = block_mean(to_bhnd_float(q, o.layout)).contiguous();
  std::tie(quantized.q_values, quantized.q_scales) = empty_quantized_rows(q, o, /*is_key=*/false);
  std::tie(quantized.k_values, quantized.k_scales) = empty_quantized_rows(k, o, /*is_key=*/true);
  if (o.smooth_k) quantized.k_mean = channels();
  if (o.smooth_v) quantized.v_mean = channels();
  if (fp8) quantized.v_scales = channels();
  const detail::VFormat v_format = fp8                              ? detail::VFormat::fp8_transposed
                                   : tiling(*o.kernel).v_transposed ? detail::VFormat::fp16_transposed
                                                                    : detail::VFormat::fp16;
  quantized.v_values = empty_v_values(v, o, v_format);

  detail::RowsJob q_job{strided(q, o.layout),
                        float_pointer(quantized.q_mean),
                        {},
                        quantized.q_values.data_ptr<int8_t>(),
                        quantized.q_scales.data_ptr<float>(),
                        nullptr};
  detail::RowsJob k_job{strided(k, o.layout),
                        nullptr,
                        k_mean,
                        quantized.k_values.data_ptr<int8_t>(),
                        quantized.k_scales.data_ptr<float>(),
                        float_pointer(quantized.k_mean)};
  const detail::VJob v_job{strided(v, o.layout),
                           v_format,
                           v_mean,
                           v_scale_source,
                           quantized.v_values.data_ptr(),
                           float_pointer(quantized.v_scales),
                           float_pointer(quantized.v_mean),
                           v_check};
  detail::quantize_qkv(q_job, k_job, v_job, *o.granularity, *o.qk == QkType::int4, stream);
  if (sampled) detail::requantize_flagged_v(v_job, stream);

  if (*o.smooth_q) {
    // The kernel adds ΔS = q̄·K'ᵀ back from the INT8 block means and INT8 K' (sage2_reference.h); with INT4
    // Q·Kᵀ, K' is quantized a second time, to INT8, with the same mean.
    const reference::QuantizedRows means = reference::quantize_q(quantized.q_mean, Granularity::per_token, kInt8Max);
    quantized.q_mean_values = means.values.contiguous();
    quantized.q_mean_scales = means.scales.contiguous();
    if (*o.qk == QkType::int4) {
      Options int8 = o;
      int8.qk = QkType::int8;
      std::tie(quantized.k_int8_values, quantized.k_int8_scales) = empty_quantized_rows(k, int8, /*is_key=*/true);
      const detail::RowsJob k_int8_job{strided(k, o.layout),
                                       nullptr,
                                       k_mean,
                                       quantized.k_int8_values.data_ptr<int8_t>(),
                                       quantized.k_int8_scales.data_ptr<float>(),
                                       nullptr};
      detail::quantize_qkv({}, k_int8_job, {}, *o.granularity, /*int4=*/false, stream);
    }
  }
  return quantized;
}

}  // namespace

int64_t workspace_bytes(const Options& o, int64_t batch, int64_t heads, int64_t q_len, int64_t kv_len,
                        int64_t head_dim) {
  constexpr int64_t kFloatBytes = 4;
  const bool fp8 = *o.pv == PvType::fp8, sampled = sampled_v_scale(o);
  const int64_t heads_total = batch * heads;
  const int64_t q_blocks = (q_len + kQBlock - 1) / kQBlock, kv_blocks = (kv_len + kKBlock - 1) / kKBlock;
  // The token statistics' partials and the per-channel vectors: K's mean, V's mean and FP8 scales, and FP8 V's exact
  // absmax (smoothed V's, or the sampled scale's check), with each head's flag for the sampled scale.
  const int64_t partials = detail::statistics_chunks(int(kv_len)) * (int(o.smooth_k) + int(o.smooth_v) + int(sampled));
  const int64_t vectors = int(o.smooth_k) + int(o.smooth_v) + 2 * int(fp8);
  const int64_t per_channel =
      (partials + vectors) * heads_total * head_dim * kFloatBytes + (sampled ? heads_total * kFloatBytes : 0);
  // Quantized Q and K (INT4: two values a byte) with their group scales, and V (FP8 a byte, fp16 two).
  const int64_t q_rows = heads_total * q_blocks * kQBlock, kv_rows = heads_total * kv_blocks * kKBlock;
  const int64_t scales =
      heads_total * (q_blocks * q_groups_per_block(*o.granularity) + kv_blocks * k_groups_per_block(*o.granularity));
  const int64_t quantized = (q_rows + kv_rows) * head_dim / (*o.qk == QkType::int4 ? 2 : 1) +
                            kv_rows * head_dim * (fp8 ? 1 : 2) + scales * kFloatBytes;
  if (!*o.smooth_q) return per_channel + quantized;
  // Q smoothing. First its block means (block_mean): an fp32 copy of Q, a second one of its whole
  // blocks when N_q is not a multiple of 64 (the reshape), the means and their concatenation. Then, with the
  // quantized tensors, the means, their INT8 copy and, with INT4 Q·Kᵀ, an INT8 K' for ΔS.
  const int64_t float_q = heads_total * q_len * head_dim * kFloatBytes;
  const int64_t q_means = heads_total * q_blocks * head_dim * kFloatBytes;
  const int64_t means_int8 = heads_total * round_up(q_blocks, kQBlock) * (head_dim + kFloatBytes);
  const int64_t k_int8 =
      *o.qk == QkType::int4
          ? kv_rows * head_dim + heads_total * kv_blocks * k_groups_per_block(*o.granularity) * kFloatBytes
          : 0;
  const int64_t block_means = float_q * (q_len % kQBlock == 0 ? 1 : 2) + 2 * q_means;
  // The output (fp16/bf16) is allocated after the preprocessing: the block means' phase counts against it.
  const int64_t output = heads_total * q_len * head_dim * 2;
  return per_channel + std::max(block_means - output, quantized + q_means + means_int8 + k_int8);
}

Quantized prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options) {
  if (auto reason = unsupported_reason(q, k, v, options)) throw std::invalid_argument("sage2: " + *reason);
  const c10::cuda::CUDAGuard guard(q.device());
  return prepare_resolved(q, k, v, resolve(options, compute_capability(q.device().index())));
}

Result attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& options,
                 const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& out) {
  if (auto reason = unsupported_reason(q, k, v, options, bias.has_value()))
    throw std::invalid_argument("sage2: " + *reason);
  const c10::cuda::CUDAGuard guard(q.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const Options o = resolve(options, compute_capability(q.device().index()), bias.has_value());
  const Quantized quantized = prepare_resolved(q, k, v, o);
  const Dims dq = dims_of(q, o.layout), dk = dims_of(k, o.layout);
  if (bias)
    if (auto problem = bias_problem(*bias, q, dq, dk.len)) throw std::invalid_argument("sage2: " + *problem);
  const double sm_scale = o.scale.value_or(1.0 / std::sqrt(double(dq.head_dim)));

  Result result;
  if (out) {
    if (out->sizes() != q.sizes() || out->scalar_type() != q.scalar_type() || out->device() != q.device() ||
        out->stride(3) != 1)
      throw std::invalid_argument("sage2: out must be shaped, typed and placed like q, with a contiguous head dim");
    result.out = *out;
  } else {
    result.out = at::empty(q.sizes(), q.options());
  }
  if (o.return_lse) result.lse = at::empty({dq.batch, dq.heads, dq.len}, q.options().dtype(at::kFloat));
  const at::Tensor bias_f = bias ? broadcast_bias(*bias, at::kFloat, dq, dk.len) : at::Tensor();
  const auto pointer = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };

  detail::AttentionArgs args{};
  args.q = quantized.q_values.data_ptr<int8_t>();
  args.q_scale = quantized.q_scales.data_ptr<float>();
  args.k = quantized.k_values.data_ptr<int8_t>();
  args.k_scale = quantized.k_scales.data_ptr<float>();
  args.v = quantized.v_values.data_ptr();
  args.v_scale = pointer(quantized.v_scales);
  args.v_mean = pointer(quantized.v_mean);
  const auto int8_pointer = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<int8_t>() : nullptr; };
  args.q_mean = int8_pointer(quantized.q_mean_values);
  args.q_mean_scale = pointer(quantized.q_mean_scales);
  args.k_int8 = int8_pointer(quantized.k_int8_values);
  args.k_int8_scale = pointer(quantized.k_int8_scales);
  if (bias_f.defined()) {
    args.bias = bias_f.data_ptr<float>();
    args.bias_sb = bias_f.stride(0);
    args.bias_sh = bias_f.stride(1);
    args.bias_si = bias_f.stride(2);
  }
  const at::Tensor& o_tensor = result.out;
  const bool bhnd = o.layout == Layout::bhnd;
  args.out = o_tensor.data_ptr();
  args.out_type = q.scalar_type() == at::kHalf ? detail::InputType::fp16 : detail::InputType::bf16;
  args.out_sb = o_tensor.stride(0);
  args.out_sh = bhnd ? o_tensor.stride(1) : o_tensor.stride(2);
  args.out_si = bhnd ? o_tensor.stride(2) : o_tensor.stride(1);
  args.lse = o.return_lse ? result.lse.data_ptr<float>() : nullptr;
  args.batch = int(dq.batch);
  args.q_heads = int(dq.heads);
  args.kv_heads = int(dk.heads);
  args.q_len = int(dq.len);
  args.kv_len = int(dk.len);
  args.head_dim = int(dq.head_dim);
  args.granularity = *o.granularity;
  args.int4 = *o.qk == QkType::int4;
  args.fp8_pv = *o.pv == PvType::fp8;
  args.causal = o.causal;
  static_assert(int(PExponent::exact) == 0 && int(PExponent::quarter_linear) == 1 && int(PExponent::half_linear) == 2 &&
                    int(PExponent::linear) == detail::kLinearAll,
                "linear_p_share counts PExponent's steps");
  args.linear_p_share = int(o.p_exponent);
  args.pv_flush_tiles = o.pv_flush_tiles;
  args.score_scale = float(sm_scale * kLog2e);
  // The wgmma kernels' work counters (the first 16 bytes, as floats) and their partial rows.
  const int64_t partial_rows = detail::partial_rows_floats(*o.kernel, args);
  const at::Tensor scratch =
      *o.kernel == KernelFamily::wgmma ? at::empty({4 + partial_rows}, q.options().dtype(at::kFloat)) : at::Tensor();
  args.work_counter = scratch.defined() ? reinterpret_cast<int*>(scratch.data_ptr<float>()) : nullptr;
  args.partial_rows = scratch.defined() ? scratch.data_ptr<float>() + 4 : nullptr;
  detail::attention(*o.kernel, args, stream);

  if (o.return_lse) {
    // The kernel's LSE is base 2 of the smoothed scores; the true scores add sm_scale · q · k_mean.
    result.lse = result.lse * float(1.0 / kLog2e);
    if (quantized.k_mean.defined()) {
      const at::Tensor& k_mean = quantized.k_mean;
      const at::Tensor mean = dq.heads != dk.heads ? at::repeat_interleave(k_mean, dq.heads / dk.heads, 1) : k_mean;
      result.lse =
          result.lse + at::matmul(to_bhnd_float(q, o.layout), mean.unsqueeze(-1)).squeeze(-1) * float(sm_scale);
    }
  }
  return result;
}

}  // namespace sagevid::kernels::sage2
