// SageAttention2 host API: validates, resolves per-architecture defaults, runs the preprocessing (means with
// the reference's own torch calls so both sides quantize identical numbers) and the attention kernel.
#include "sagevid/kernels/sage2.h"

#include "sage2_kernels.h"
#include "sagevid/kernels/device_info.h"
#include "sagevid/kernels/sage2_reference.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/where.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cmath>
#include <stdexcept>

namespace sagevid::kernels::sage2 {
namespace {

struct Dims {
  int64_t batch, heads, len, head_dim;
};

Dims dims_of(const at::Tensor& x, Layout layout) {
  return layout == Layout::bhnd ? Dims{x.size(0), x.size(1), x.size(2), x.size(3)}
                                : Dims{x.size(0), x.size(2), x.size(1), x.size(3)};
}

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

// Q or K quantized into the kernel's layout: int8 values (INT4: two per byte) and group scales.
std::pair<at::Tensor, at::Tensor> quantize(const at::Tensor& x, const Options& o, const at::Tensor& mean,
                                           bool mean_per_block, bool is_key, cudaStream_t stream) {
  const Dims d = dims_of(x, o.layout);
  const bool int4 = *o.qk == QkType::int4;
  const int64_t tile = is_key ? kKBlock : kQBlock, blocks = (d.len + tile - 1) / tile;
  const int64_t groups = blocks * (is_key ? k_groups_per_block(*o.granularity) : q_groups_per_block(*o.granularity));
  at::Tensor values = at::empty({d.batch, d.heads, blocks * tile, int4 ? d.head_dim / 2 : d.head_dim},
                                x.options().dtype(at::kChar));
  at::Tensor scales = at::empty({d.batch, d.heads, groups}, x.options().dtype(at::kFloat));
  detail::quantize_rows(strided(x, o.layout), mean.defined() ? mean.data_ptr<float>() : nullptr, mean_per_block,
                        is_key, *o.granularity, int4, values.data_ptr<int8_t>(), scales.data_ptr<float>(), stream);
  return {values, scales};
}

struct PreparedV {
  at::Tensor values, scales, mean;
};

PreparedV prepare_v(const at::Tensor& v, const Options& o, cudaStream_t stream) {
  const Dims d = dims_of(v, o.layout);
  const int64_t padded = round_up(d.len, kKBlock);
  PreparedV out;
  if (o.smooth_v) out.mean = reference::token_mean(reference::bhnd_view(v, o.layout)).contiguous();
  const auto input = strided(v, o.layout);
  const float* mean = out.mean.defined() ? out.mean.data_ptr<float>() : nullptr;
  if (*o.pv == PvType::fp16) {
    const bool transposed = tiling(*o.kernel).v_transposed;
    out.values = transposed ? at::empty({d.batch, d.heads, d.head_dim, padded}, v.options().dtype(at::kHalf))
                            : at::empty({d.batch, d.heads, padded, d.head_dim}, v.options().dtype(at::kHalf));
    detail::convert_v_fp16(input, mean, transposed, out.values.data_ptr(), stream);
    return out;
  }
  at::Tensor absmax = at::empty({d.batch, d.heads, d.head_dim}, v.options().dtype(at::kFloat));
  detail::channel_absmax(input, mean, absmax.data_ptr<float>(), stream);
  // A true division (torch turns "tensor / scalar" into a reciprocal multiply on CUDA): the reference's scale.
  out.scales = at::where(absmax > 0, absmax.div(at::full_like(absmax, kFp8Max)), at::ones_like(absmax)).contiguous();
  out.values = at::empty({d.batch, d.heads, d.head_dim, padded}, v.options().dtype(at::kByte));
  detail::quantize_v_fp8(input, mean, absmax.data_ptr<float>(), out.values.data_ptr<uint8_t>(), stream);
  return out;
}

// The bias as fp32 [B|1, H|1, N_q, N_kv] with a contiguous last dim; broadcast dims get stride 0.
at::Tensor prepare_bias(const at::Tensor& bias, const Dims& q) {
  at::Tensor b = bias.to(at::kFloat).contiguous();
  while (b.dim() < 4) b = b.unsqueeze(0);
  return b.expand({q.batch, q.heads, b.size(2), b.size(3)});
}

}  // namespace

std::optional<std::string> unsupported_reason(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                              const Options& options, bool has_bias) {
  if (!q.is_cuda() || !k.is_cuda() || !v.is_cuda()) return "tensors must be on a CUDA device";
  if (k.device() != q.device() || v.device() != q.device()) return "q, k and v must be on one device";
  const auto dtype = q.scalar_type();
  if ((dtype != at::kHalf && dtype != at::kBFloat16) || k.scalar_type() != dtype || v.scalar_type() != dtype)
    return "q, k and v must all be float16 or all bfloat16";
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return "q, k and v must be 4-D";
  if (q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1) return "the head dim must be contiguous";
  const Dims dq = dims_of(q, options.layout), dk = dims_of(k, options.layout);
  if (k.sizes() != v.sizes()) return "k and v shapes differ";
  if (dq.head_dim != 64 && dq.head_dim != 128)
    return "head dim " + std::to_string(dq.head_dim) + " (kernels exist for 64 and 128)";
  if (dk.head_dim != dq.head_dim || dk.batch != dq.batch) return "q and k differ in batch or head dim";
  if (dk.heads == 0 || dq.heads % dk.heads != 0) return "query heads must be a multiple of key/value heads";
  if (dk.len == 0) return "no keys";
  const int cc = compute_capability(q.device().index());
  if (cc < 80) return "needs sm_80 or newer";
  if (options.pv == PvType::fp8 && cc < 89) return "FP8 P·V needs sm_89 or newer";
  try {
    resolve(options, cc, has_bias);
  } catch (const std::invalid_argument& error) {
    return std::string(error.what()).substr(std::string("sage2: ").size());
  }
  return std::nullopt;
}

namespace {

// The preprocessing for resolved options (device and stream already current).
Quantized prepare_resolved(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Options& o) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  Quantized quantized;
  quantized.kernel = *o.kernel;
  // Means with the reference's own calls, so both sides quantize identical bits.
  if (o.smooth_k) quantized.k_mean = reference::token_mean(reference::bhnd_view(k, o.layout)).contiguous();
  if (*o.smooth_q) {
    // The kernel adds ΔS = q̄·K'ᵀ back from the INT8 block means and INT8 K' (sage2_reference.h).
    quantized.q_mean = reference::block_mean(reference::to_bhnd_float(q, o.layout)).contiguous();
    const reference::QuantizedRows means = reference::quantize_q(quantized.q_mean, Granularity::per_token, kInt8Max);
    quantized.q_mean_values = means.values.contiguous();
    quantized.q_mean_scales = means.scales.contiguous();
  }
  std::tie(quantized.q_values, quantized.q_scales) =
      quantize(q, o, quantized.q_mean, /*mean_per_block=*/true, /*is_key=*/false, stream);
  std::tie(quantized.k_values, quantized.k_scales) =
      quantize(k, o, quantized.k_mean, /*mean_per_block=*/false, /*is_key=*/true, stream);
  if (*o.smooth_q && *o.qk == QkType::int4) {
    Options int8 = o;
    int8.qk = QkType::int8;
    std::tie(quantized.k_int8_values, quantized.k_int8_scales) =
        quantize(k, int8, quantized.k_mean, /*mean_per_block=*/false, /*is_key=*/true, stream);
  }
  PreparedV pv = prepare_v(v, o, stream);
  quantized.v_values = pv.values;
  quantized.v_scales = pv.scales;
  quantized.v_mean = pv.mean;
  return quantized;
}

}  // namespace

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
  const at::Tensor bias_f = bias ? prepare_bias(*bias, dq) : at::Tensor();
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
  args.pv_flush_tiles = o.pv_flush_tiles;
  args.score_scale = float(sm_scale * kLog2e);
  detail::attention(*o.kernel, args, stream);

  if (o.return_lse) {
    // The kernel's LSE is base 2 of the smoothed scores; the true scores add sm_scale · q · k_mean.
    result.lse = result.lse * float(1.0 / kLog2e);
    if (quantized.k_mean.defined()) {
      const at::Tensor& k_mean = quantized.k_mean;
      const at::Tensor mean = dq.heads != dk.heads ? at::repeat_interleave(k_mean, dq.heads / dk.heads, 1) : k_mean;
      result.lse = result.lse + at::matmul(reference::to_bhnd_float(q, o.layout), mean.unsqueeze(-1)).squeeze(-1) *
                                    float(sm_scale);
    }
  }
  return result;
}

}  // namespace sagevid::kernels::sage2
