// The T5 encoder on the GPU in bf16, with its position bias, on every attention backend that takes a bias:
// the text encoder's attention runs on the sage2 kernels too.
#include "catch.h"

#include "sagevid/models/safetensors.h"
#include "sagevid/models/t5_encoder.h"

#include <filesystem>

TEST_CASE("T5 (head dim 64) in bf16 on sage2, cudnn and math stays close to transformers' fp32", "[gpu][t5]") {
  const std::filesystem::path dir = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "t5" / "hd64";
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(dir / "io.safetensors");
  const at::Tensor want = io.view("hidden").to(at::kDouble);
  const sagevid::T5Encoder encoder =
      sagevid::T5Encoder::load(dir / "text_encoder", at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  const auto backend =
      GENERATE(sagevid::AttentionBackend::sage2, sagevid::AttentionBackend::cudnn, sagevid::AttentionBackend::math);
  CAPTURE(sagevid::backend_name(backend));
  const sagevid::Attention attention(sagevid::AttentionConfig{backend, std::nullopt, {}});
  const at::Tensor got = encoder.forward(io.view("input_ids"), attention).to(at::kCPU, at::kDouble);
  const double cosine = (got.flatten().dot(want.flatten()) / (got.norm() * want.norm())).item<double>();
  CAPTURE(cosine);
  CHECK(cosine > 0.999);
  CHECK(attention.fallback_count() == 0);
}
