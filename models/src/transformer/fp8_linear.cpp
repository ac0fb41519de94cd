// FP8 linear layers: E4M3 weights scaled per output channel, E4M3 activations scaled per token (quantized at
// each call, with the activation before the layer where there is one: sagevid/kernels/fp8_rows.h; or by the norm
// before the layer), one FP8 GEMM with both scales and the bias applied to its fp32 accumulator.
#include "cogvideox_transformer_weights.h"

#include "sagevid/kernels/fp8_rows.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_scaled_mm.h>
#include <ATen/ops/linear.h>
#include <c10/util/Exception.h>

#include <vector>

namespace sagevid {

cogvideox::Linear cogvideox::to_fp8(const Linear& linear, bool fast_accum) {
  const kernels::Fp8Rows rows = kernels::quantize_rows_fp8(linear.weight);
  return {rows.values, linear.bias, rows.scales.squeeze(1), fast_accum};
}

namespace {

// The FP8 product of activation rows quantized per token (values [M, in] E4M3, scales [M, 1]) in `dtype`, shaped
// [leading..., out].
at::Tensor fp8_product(const cogvideox::Linear& linear, const at::Tensor& values, const at::Tensor& scales,
                       at::ScalarType dtype, at::IntArrayRef leading) {
  at::Tensor out;
  if (values.is_cuda()) {
    // weight [out, in] row-major is the column-major [in, out] operand cuBLASLt wants; scales per row of the
    // activations [M, 1] and per column of the product [1, out]; the bias, in the output's dtype, in the epilogue.
    const std::optional<at::Tensor> bias =
        linear.bias.defined() ? std::optional<at::Tensor>(linear.bias.to(dtype)) : std::nullopt;
    const auto product = [&](bool fast_accum) {
      return at::_scaled_mm(values, linear.weight.t(), scales, linear.weight_scale.unsqueeze(0), bias, std::nullopt,
                            dtype, fast_accum);
    };
    if (!linear.fast_accum) {
      out = product(false);
    } else {
      // cuBLASLt has no fast-accumulation kernel for some shapes (small products with a bias): those take the
      // plain accumulation rather than fail the request.
      try {
        out = product(true);
      } catch (const c10::Error&) {
        out = product(false);
      }
    }
  } else {
    const at::Tensor a = values.to(at::kFloat) * scales;
    const at::Tensor w = linear.weight.to(at::kFloat) * linear.weight_scale.unsqueeze(1);
    out = at::linear(a, w, linear.bias.defined() ? linear.bias.to(at::kFloat) : at::Tensor()).to(dtype);
  }
  std::vector<int64_t> shape(leading.begin(), leading.end());
  shape.push_back(linear.weight.size(0));
  return out.view(shape);
}

}  // namespace

cogvideox::QuantizedRows cogvideox::quantize_rows(const at::Tensor& x, kernels::RowActivation activation) {
  const kernels::Fp8Rows rows = kernels::quantize_rows_fp8(x.reshape({-1, x.size(-1)}).contiguous(), activation);
  std::vector<int64_t> scales_shape(x.sizes().begin(), x.sizes().end() - 1);
  scales_shape.push_back(1);
  return {{rows.values.view(x.sizes()), rows.scales.view(scales_shape)}, x.scalar_type()};
}

at::Tensor cogvideox::fp8_linear(const Linear& linear, const at::Tensor& x, kernels::RowActivation activation) {
  return fp8_linear(linear, quantize_rows(x, activation));
}

at::Tensor cogvideox::fp8_linear(const Linear& linear, const QuantizedRows& x) {
  const at::Tensor& values = x.rows.values;
  return fp8_product(linear, values.reshape({-1, values.size(-1)}), x.rows.scales.reshape({-1, 1}), x.dtype,
                     values.sizes().slice(0, values.dim() - 1));
}

at::IntArrayRef cogvideox::LinearInput::sizes() const {
  const auto* quantized = std::get_if<QuantizedRows>(&rows);
  return quantized ? quantized->rows.values.sizes() : tensor().sizes();
}

// The original keeps its weights until the caller drops it: the linears' memory is 1.5 times theirs meanwhile.
CogVideoXTransformer CogVideoXTransformer::with_fp8_linears(bool fast_accum) const {
  auto weights = std::make_shared<Weights>(*weights_);
  for (Block& block : weights->blocks)
    for (cogvideox::Linear* linear : {&block.to_qkv, &block.to_out, &block.ff_in, &block.ff_out})
      if (!linear->weight_scale.defined()) *linear = cogvideox::to_fp8(*linear, fast_accum);
      else linear->fast_accum = fast_accum;
  CogVideoXTransformer model = *this;
  model.weights_ = std::move(weights);
  return model;
}

}  // namespace sagevid
