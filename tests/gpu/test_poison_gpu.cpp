#include "catch.h"
#include "test_random.h"

#include "sagevid/kernels/cuda_check.h"
#include "sagevid/kernels/poison.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/isnan.h>

TEST_CASE("poison fills every byte, at any size", "[gpu][poison]") {
  sagevid::test::Random rng;
  for (int64_t bytes : {int64_t(1), int64_t(255), int64_t(1000003), int64_t(64) << 20}) {
    CAPTURE(bytes);
    at::Tensor data = rng.normal({bytes}).mul(50).to(at::kCUDA, at::kByte);  // random, not zeros
    sagevid::kernels::poison_device_memory(data.data_ptr(), bytes, nullptr, 0xAB);
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(data.eq(0xAB).all().item<bool>());
  }
}

TEST_CASE("the default pattern reads as NaN in every float type", "[gpu][poison]") {
  for (auto dtype : {at::kFloat, at::kHalf, at::kBFloat16, at::kFloat8_e4m3fn}) {
    CAPTURE(c10::toString(dtype));
    at::Tensor data = at::empty({4097}, at::TensorOptions().device(at::kCUDA).dtype(dtype));
    sagevid::kernels::poison_device_memory(data.data_ptr(), data.nbytes(), nullptr);
    SAGEVID_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(at::isnan(data.to(at::kFloat)).all().item<bool>());
  }
}
