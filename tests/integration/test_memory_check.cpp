// The memory admission check: what the device has free, and the refusal naming both numbers.
#include "catch.h"
#include "test_random.h"

#include "memory_check.h"

#include <unistd.h>

#include <random>

using sagevid::MemoryEstimate;

TEST_CASE("the CPU's free memory is positive and at most its physical memory", "[integration][memory]") {
  const int64_t free_bytes = sagevid::free_device_memory(c10::Device(c10::kCPU));
  CHECK(free_bytes > 0);
  CHECK(free_bytes <= int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGESIZE)));
}

TEST_CASE("an estimate over the free memory is refused naming both numbers and one within it passes",
          "[integration][memory]") {
  sagevid::test::Random rng;
  CAPTURE(rng.seed);
  std::mt19937_64 draw(rng.seed);
  const auto mib = [&] { return int64_t(std::uniform_int_distribution<int>(1, 100000)(draw)) << 20; };
  const MemoryEstimate estimate{.text_encode = mib(), .denoise = mib(), .decode = mib()};
  CHECK_NOTHROW(sagevid::check_memory_fits(estimate, estimate.peak(), "cpu"));
  const int64_t free_bytes = estimate.peak() - (int64_t(1) << 20);
  const std::string needed = std::to_string(estimate.peak() >> 20) + ".0 MiB on cuda:1 (";
  CHECK_THROWS_AS(sagevid::check_memory_fits(estimate, free_bytes, "cuda:1"), sagevid::RequestTooLarge);
  CHECK_THROWS_WITH(sagevid::check_memory_fits(estimate, free_bytes, "cuda:1"),
                    ContainsSubstring(needed + estimate.peak_phase() + " peak)") &&
                        ContainsSubstring(std::to_string(free_bytes >> 20) + ".0 MiB is free"));
}
