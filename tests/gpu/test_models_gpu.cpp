// The model parts on CUDA: the same fixtures as the CPU parity tests, run on the GPU (fp32 for parity with
// diffusers; bf16, the serving dtype, within its rounding).
#include "catch.h"

#include "sagevid/models/cogvideox_vae.h"
#include "sagevid/models/safetensors.h"

#include <filesystem>

namespace {

const std::filesystem::path kFixtures(SAGEVID_FIXTURES_DIR);

double max_relative_error(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor a = got.to(at::kCPU, at::kDouble), b = want.to(at::kDouble);
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

}  // namespace

TEST_CASE("the VAE decoder on CUDA matches diffusers in fp32 and bf16", "[gpu][vae]") {
  const sagevid::SafetensorsModel io = sagevid::SafetensorsModel::open(kFixtures / "vae" / "io.safetensors");
  const auto dtype = GENERATE(at::kFloat, at::kBFloat16);
  CAPTURE(c10::toString(dtype));
  const auto decoder = sagevid::CogVideoXVaeDecoder::load(kFixtures / "vae" / "vae",
                                                          at::TensorOptions().device(at::kCUDA).dtype(dtype));
  const double tolerance = dtype == at::kFloat ? 5e-3 : 5e-2;  // cuDNN runs fp32 convolutions in TF32 by default
  const double plain = max_relative_error(decoder.decode(io.view("latents").to(at::kCUDA)), io.view("sample"));
  CAPTURE(plain);
  CHECK(plain <= tolerance);
}
