// Shared main() of the Catch2 suites. The GPU suites report themselves skipped (exit 77, which ctest shows
// as "Skipped") on a machine with fewer CUDA devices than they need, so a run says plainly what it did not test.
#if !defined(SAGEVID_CATCH3)
#define CATCH_CONFIG_RUNNER
#endif
#include "catch.h"

#include "sagevid/kernels/device_info.h"

#include <cstdio>
#include <string_view>

// The CUDA devices a suite needs: the GPU suites override this (tests/gpu/gpu_suite.cpp, multi_gpu_suite.cpp).
__attribute__((weak)) int suite_needs_gpus() { return 0; }

namespace {
bool only_listing(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]).starts_with("--list")) return true;
  return false;
}
}  // namespace

int main(int argc, char** argv) {
  const int needed = suite_needs_gpus(), present = sagevid::kernels::cuda_device_count();
  if (needed > present && !only_listing(argc, argv)) {
    std::printf("SKIPPED: needs %d CUDA device%s, this machine has %d; run the gpu label on a GPU host with them\n",
                needed, needed == 1 ? "" : "s", present);
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
