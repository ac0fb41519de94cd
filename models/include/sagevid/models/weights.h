#pragma once
// Loads a model's named tensors from its safetensors checkpoint straight onto the target device and dtype,
// checking each shape, and remembers what was taken so a loader can reject tensors nobody expected.
#include "sagevid/models/safetensors.h"

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <set>
#include <string>

namespace sagevid {

class WeightLoader {
 public:
  // dir: a folder holding one checkpoint (single file or sharded with an index).
  WeightLoader(const std::filesystem::path& dir, const at::TensorOptions& target);

  bool contains(const std::string& name) const { return checkpoint_.contains(name); }
  // The tensor, on the target device and dtype. Missing or mis-shaped: std::runtime_error naming the
  // checkpoint, the tensor and both shapes.
  at::Tensor get(const std::string& name, at::IntArrayRef expected_shape);
  // Throws naming the tensors of the checkpoint that get() never took (a config/weights mismatch).
  void check_all_used() const;

 private:
  SafetensorsModel checkpoint_;
  at::TensorOptions target_;
  std::set<std::string> used_;
};

}  // namespace sagevid
