// Shared main() of the Catch2 suites. The GPU suite reports itself skipped (exit 77, which ctest shows
// as "Skipped") on a machine without a CUDA device, so a CPU-only run says plainly what it did not test.
#if !defined(SAGEVID_CATCH3)
#define CATCH_CONFIG_RUNNER
#endif
#include "catch.h"

#include "sagevid/kernels/device_info.h"

#include <cstdio>
#include <string_view>

// The GPU suite overrides this (tests/gpu/gpu_suite.cpp).
__attribute__((weak)) bool suite_needs_gpu() { return false; }

namespace {
bool only_listing(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]).starts_with("--list")) return true;
  return false;
}
}  // namespace

int main(int argc, char** argv) {
  if (suite_needs_gpu() && !only_listing(argc, argv) && sagevid::kernels::cuda_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device on this machine; run the gpu label on the GPU host\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
