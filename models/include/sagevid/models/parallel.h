#pragma once
// One request over several devices, as xDiT runs CogVideoX: classifier-free guidance's two halves on two sets of
// ranks (CFG parallelism), and each half's video tokens split across the ranks of its set (Ulysses sequence
// parallelism). A rank is a thread of this process with a device and the whole model on it; the ranks talk through
// libtorch's c10d process groups (NCCL between CUDA devices, Gloo between CPU ranks, which the tests use).
//
//   rank = cfg_rank * ulysses + ulysses_rank; world = cfg * ulysses = the number of devices.
#include <c10/core/Device.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sagevid {

class ConfigReader;

struct ParallelPlan {
  int cfg = 1;      // 1, or 2: the negative and the positive prompt's halves of a guided step on different ranks
  int ulysses = 1;  // ranks sharing each half's video tokens (each runs attention on heads / ulysses heads)
  int world() const { return cfg * ulysses; }
};

// Throws std::invalid_argument naming what is wrong: degrees out of range, a device count other than their product,
// a GPU listed twice or without its index, CPU mixed with CUDA.
void check_parallel_plan(const ParallelPlan& plan, const std::vector<c10::Device>& devices);
// The same for a model's attention heads, which Ulysses deals out to its ranks: at least one each (where they do not
// divide evenly, the ranks with one more take longer over attention).
void check_ulysses_heads(const ParallelPlan& plan, int64_t heads);

// The devices one model's requests run on together, and how.
struct DeviceGroup {
  std::vector<c10::Device> devices;
  ParallelPlan plan;
};
// A config's model entry may hold "devices": ["cuda:0", ...] (instead of "device") and "parallel": {"cfg": 1|2,
// "ulysses": n}; without "parallel", cfg 2 where the count is even and Ulysses over the rest. Checked with
// check_parallel_plan (the heads wait for the model); nullopt where the entry names no devices.
std::optional<DeviceGroup> read_device_group(ConfigReader& entry);

// "cfg 2 x ulysses 2 on cuda:0, cuda:1, cuda:2, cuda:3" (logs and the server's status).
std::string describe(const ParallelPlan& plan, const std::vector<c10::Device>& devices);

}  // namespace sagevid
