#include "sagevid/kernels/residual_norm.h"

#include "residual_norm_kernel.h"
#include "sagevid/kernels/shape_string.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/layer_norm.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <stdexcept>
#include <string>

namespace sagevid::kernels {
namespace {

[[noreturn]] void refuse(const std::string& what) { throw std::invalid_argument("residual_norm_modulate: " + what); }

// Each stream's tensors fit its residual [B, L, D]; returns the joint length ΣL.
int64_t check_streams(const std::vector<NormStream>& streams) {
  if (streams.empty()) refuse("no streams");
  const at::Tensor& first = streams[0].residual;
  if (first.dim() != 3) refuse("residuals must be [B, L, D], got " + shape_string(first.sizes()));
  const int64_t batch = first.size(0), dim = first.size(2);
  int64_t length = 0;
  for (const NormStream& s : streams) {
    const auto fits = [&](const at::Tensor& t, int64_t rows) {
      return t.dim() == 3 && t.size(0) == batch && t.size(1) == rows && t.size(2) == dim &&
             t.scalar_type() == first.scalar_type() && t.device() == first.device();
    };
    if (!fits(s.residual, s.residual.size(1))) refuse("residuals must share [B, *, D] and dtype");
    const int64_t rows = s.residual.size(1);
    if (s.update.defined() && (!fits(s.update, rows) || !s.gate.defined() || !fits(s.gate, 1)))
      refuse("an update must be [B, L, D] like its residual, with a gate [B, 1, D]");
    if (!s.shift.defined() || !s.scale.defined() || !fits(s.shift, 1) || !fits(s.scale, 1))
      refuse("shift and scale must be [B, 1, D], got " + shape_string(s.shift.sizes()) + " and " +
             shape_string(s.scale.sizes()));
    length += rows;
  }
  return length;
}

bool aligned(const at::Tensor& t) {
  return !t.defined() || (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && t.stride(-1) == 1 &&
                          (t.dim() < 2 || (t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0)));
}

bool kernel_takes(const std::vector<NormStream>& streams, const at::Tensor& weight, const at::Tensor& bias) {
  const at::Tensor& first = streams[0].residual;
  const auto type = first.scalar_type();
  if (!first.is_cuda() || (type != at::kBFloat16 && type != at::kHalf) ||
      !detail::residual_norm_fits(int(first.size(2))))
    return false;
  for (const at::Tensor& t : {weight, bias})
    if (t.defined() && (t.scalar_type() != type || !t.is_contiguous() || !aligned(t))) return false;
  for (const NormStream& s : streams)
    for (const at::Tensor* t : {&s.residual, &s.update, &s.gate, &s.shift, &s.scale})
      if (!aligned(*t)) return false;
  return true;
}

detail::RowsView view_of(const at::Tensor& t) {
  if (!t.defined()) return {};
  return {t.data_ptr(), t.stride(0), t.stride(1)};
}

detail::NormElement element_of(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf ? detail::NormElement::fp16 : detail::NormElement::bf16;
}

// One kernel per stream, writing its rows [start, start + L) of the joint output: set_out(args, start, L) points
// args there.
template <typename SetOut>
void launch_streams(const std::vector<NormStream>& streams, const at::Tensor& weight, const at::Tensor& bias,
                    double eps, SetOut set_out) {
  const at::Tensor& first = streams[0].residual;
  const c10::cuda::CUDAGuard guard(first.device());
  int64_t start = 0;
  for (const NormStream& s : streams) {
    detail::ResidualNormArgs args;
    args.residual = view_of(s.residual);
    args.update = view_of(s.update);
    args.gate = view_of(s.gate);
    args.shift = view_of(s.shift);
    args.scale = view_of(s.scale);
    args.weight = weight.defined() ? weight.data_ptr() : nullptr;
    args.bias = bias.defined() ? bias.data_ptr() : nullptr;
    args.eps = float(eps);
    args.batch = s.residual.size(0);
    args.rows = s.residual.size(1);
    args.dim = int(s.residual.size(2));
    set_out(args, start, args.rows);
    detail::residual_norm_modulate(args, element_of(first), c10::cuda::getCurrentCUDAStream().stream());
    start += args.rows;
  }
}

}  // namespace

at::Tensor residual_norm_modulate_reference(const std::vector<NormStream>& streams, const at::Tensor& weight,
                                            const at::Tensor& bias, double eps) {
  const int64_t length = check_streams(streams);
  const at::Tensor& first = streams[0].residual;
  at::Tensor joint = at::empty({first.size(0), length, first.size(2)}, first.options());
  int64_t start = 0;
  for (const NormStream& s : streams) {
    if (s.update.defined()) s.residual.addcmul_(s.gate, s.update);
    at::Tensor part = joint.narrow(1, start, s.residual.size(1));
    at::addcmul_out(part, s.shift, at::layer_norm(s.residual, {first.size(2)}, weight, bias, eps), 1 + s.scale);
    start += s.residual.size(1);
  }
  return joint;
}

at::Tensor residual_norm_modulate(const std::vector<NormStream>& streams, const at::Tensor& weight,
                                  const at::Tensor& bias, double eps, std::optional<at::Tensor> out) {
  const int64_t length = check_streams(streams);
  const at::Tensor& first = streams[0].residual;
  const std::vector<int64_t> shape{first.size(0), length, first.size(2)};
  if (out && (!out->is_contiguous() || out->sizes() != at::IntArrayRef(shape) ||
              out->scalar_type() != first.scalar_type() || out->device() != first.device()))
    refuse("out must be a contiguous " + shape_string(shape) + " tensor of the residuals' dtype and device");
  if (!kernel_takes(streams, weight, bias) || (out && !aligned(*out))) {
    at::Tensor joint = residual_norm_modulate_reference(streams, weight, bias, eps);
    return out ? out->copy_(joint) : joint;
  }
  at::Tensor joint = out ? *out : at::empty(shape, first.options());
  launch_streams(streams, weight, bias, eps, [&](detail::ResidualNormArgs& args, int64_t start, int64_t rows) {
    args.out = view_of(joint.narrow(1, start, rows));
  });
  return joint;
}

Fp8Rows residual_norm_modulate_fp8(const std::vector<NormStream>& streams, const at::Tensor& weight,
                                   const at::Tensor& bias, double eps) {
  const int64_t length = check_streams(streams);
  const at::Tensor& first = streams[0].residual;
  const int64_t batch = first.size(0), dim = first.size(2);
  if (!kernel_takes(streams, weight, bias) || !detail::residual_norm_fp8_fits(int(dim))) {
    const at::Tensor joint = residual_norm_modulate(streams, weight, bias, eps);
    const Fp8Rows rows = quantize_rows_fp8(joint.view({-1, dim}));
    return {rows.values.view(joint.sizes()), rows.scales.view({batch, length, 1})};
  }
  Fp8Rows rows{at::empty({batch, length, dim}, first.options().dtype(at::kFloat8_e4m3fn)),
               at::empty({batch, length, 1}, first.options().dtype(at::kFloat))};
  launch_streams(streams, weight, bias, eps, [&](detail::ResidualNormArgs& args, int64_t start, int64_t count) {
    args.fp8_values = view_of(rows.values.narrow(1, start, count));
    args.fp8_scales = view_of(rows.scales.narrow(1, start, count));
  });
  return rows;
}

}  // namespace sagevid::kernels
