#pragma once
// Fresh random inputs for every run: each test draws from its own generator seeded from the OS, and
// CAPTURE(rng.seed) in the test prints the seed on failure so the case can be replayed: SAGEVID_TEST_SEED=<seed>
// seeds every generator with it instead.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/randn.h>

#include <cstdint>
#include <cstdlib>
#include <random>

namespace sagevid::test {

inline uint64_t initial_seed() {
  if (const char* replay = std::getenv("SAGEVID_TEST_SEED")) return std::strtoull(replay, nullptr, 0);
  return (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
}

struct Random {
  uint64_t seed = initial_seed();
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);

  // Standard normal values, drawn on the CPU in fp32 and moved to the requested device and dtype.
  at::Tensor normal(at::IntArrayRef sizes, const at::TensorOptions& options = {}) {
    return at::randn(sizes, generator, at::TensorOptions().dtype(at::kFloat))
        .to(options.device(), at::typeMetaToScalarType(options.dtype()));
  }
};

}  // namespace sagevid::test
