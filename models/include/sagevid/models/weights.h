#pragma once
// Loads a model's named tensors from its safetensors checkpoint straight onto the target device and dtype,
// checking each shape and stored dtype (F32, F16, BF16 or F64), and remembers what was taken so a loader can
// reject tensors nobody expected.
#include "sagevid/models/safetensors.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sagevid {

class WeightLoader {
 public:
  // dir: a folder holding one checkpoint (single file or sharded with an index).
  WeightLoader(const std::filesystem::path& dir, const at::TensorOptions& target);
  // No checkpoint: get() draws random tensors of the expected shapes (benchmarks at real model sizes without
  // the weights). 1-D "*.weight" tensors (norm scales) are ones, "*.bias" zeros, the rest N(0, 0.02^2).
  static WeightLoader random(const at::TensorOptions& target, uint64_t seed);

  bool contains(const std::string& name) const { return !checkpoint_ || checkpoint_->contains(name); }
  // The tensor, on the target device and dtype. Missing or mis-shaped: std::runtime_error naming the
  // checkpoint, the tensor and both shapes; stored as anything but F32/F16/BF16/F64: naming the file, the tensor
  // and the dtype found.
  at::Tensor get(const std::string& name, at::IntArrayRef expected_shape);
  // Throws naming the tensors of the checkpoint that get() never took (a config/weights mismatch).
  void check_all_used() const;
  // The checkpoint's tensors under any of these name prefixes that get() never took (all of them when the list
  // is empty), for a model whose checkpoint also holds another's tensors (the VAE's encoder and decoder).
  std::vector<std::string> unused(const std::vector<std::string>& prefixes = {}) const;

 private:
  WeightLoader(const at::TensorOptions& target, uint64_t seed) : target_(target), seed_(seed) {}
  at::Tensor random_tensor(const std::string& name, at::IntArrayRef shape);

  std::optional<SafetensorsModel> checkpoint_;  // none: random weights
  at::TensorOptions target_;
  uint64_t seed_ = 0;
  std::set<std::string> used_;
};

}  // namespace sagevid
