// The CogVideoX transformer on CUDA: the head-dim-64 fixture (tests/fixtures/make_cogvideox_fixtures.py) in fp32
// on the math backend for parity with diffusers, and in bf16, the serving dtype, on every attention backend.
#include "catch.h"

#include "sagevid/models/cogvideox_transformer.h"
#include "sagevid/models/safetensors.h"

#include <filesystem>
#include <optional>

namespace {

const std::filesystem::path kFixture = std::filesystem::path(SAGEVID_FIXTURES_DIR) / "cogvideox" / "5b-hd64";

at::Tensor run(const sagevid::CogVideoXTransformer& model, const sagevid::SafetensorsModel& io,
               const sagevid::Attention& attention) {
  return model.forward(io.view("latents"), io.view("text"), io.view("timestep"), std::nullopt, attention)
      .to(at::kCPU, at::kDouble);
}

}  // namespace

TEST_CASE("the CogVideoX transformer on CUDA in fp32 matches diffusers", "[gpu][cogvideox]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kFixture / "io.safetensors");
  const auto model = sagevid::CogVideoXTransformer::load(kFixture / "transformer",
                                                         at::TensorOptions().device(at::kCUDA).dtype(at::kFloat));
  const at::Tensor want = io.view("output").to(at::kDouble);
  const at::Tensor got = run(model, io, sagevid::Attention());
  const double error = ((got - want).abs().max() / want.abs().max()).item<double>();
  CAPTURE(error);
  CHECK(error <= 5e-3);  // cuDNN runs the fp32 patch convolution in TF32 by default
}

TEST_CASE("the CogVideoX transformer in bf16 on sage2, flash, cudnn and math stays close to diffusers' fp32",
          "[gpu][cogvideox]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kFixture / "io.safetensors");
  const auto model = sagevid::CogVideoXTransformer::load(kFixture / "transformer",
                                                         at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  const auto backend = GENERATE(sagevid::AttentionBackend::sage2, sagevid::AttentionBackend::flash,
                                sagevid::AttentionBackend::cudnn, sagevid::AttentionBackend::math);
  CAPTURE(sagevid::backend_name(backend));
  const sagevid::Attention attention(sagevid::AttentionConfig{backend, std::nullopt, {}});
  const at::Tensor got = run(model, io, attention);
  const at::Tensor want = io.view("output").to(at::kDouble);
  const double cosine = (got.flatten().dot(want.flatten()) / (got.norm() * want.norm())).item<double>();
  CAPTURE(cosine);
  CHECK(cosine > 0.99);
  CHECK(attention.fallback_count() == 0);
}

TEST_CASE("the CogVideoX transformer in bf16 with FP8 linears on CUDA stays close to its bf16 self",
          "[gpu][cogvideox][fp8]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kFixture / "io.safetensors");
  const auto model = sagevid::CogVideoXTransformer::load(kFixture / "transformer",
                                                         at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  const bool fast_accum = GENERATE(false, true);
  CAPTURE(fast_accum);
  // QKV and FF-in take their E4M3 rows from the norm before them; the other two linears quantize their own.
  const sagevid::Attention attention;
  const at::Tensor want = run(model, io, attention);
  const at::Tensor got = run(model.with_fp8_linears(fast_accum), io, attention);
  REQUIRE(got.sizes() == want.sizes());
  const double cosine = (got.flatten().dot(want.flatten()) / (got.norm() * want.norm())).item<double>();
  CAPTURE(cosine);
  CHECK(cosine > 0.99);
  CHECK((got - want).abs().max().item<double>() > 0);  // the FP8 layers did run
}
