#include "sagevid/models/weights.h"

#include "sagevid/kernels/shape_string.h"
#include "sagevid/models/join.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>

#include <stdexcept>

namespace sagevid {
namespace {

// Every weight the models load is floating point; anything else is a damaged or mislabelled checkpoint whose
// bytes a silent conversion would turn into garbage. F64 converts faithfully (diffusers saves its float64 sincos
// position buffers so); FP8 does not (its checkpoints need scales we would not apply).
bool is_weight_dtype(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble;
}

}  // namespace

WeightLoader::WeightLoader(const std::filesystem::path& dir, const at::TensorOptions& target)
    : checkpoint_(SafetensorsModel::open(dir)), target_(target) {}

WeightLoader WeightLoader::random(const at::TensorOptions& target, uint64_t seed) { return {target, seed}; }

at::Tensor WeightLoader::random_tensor(const std::string& name, at::IntArrayRef shape) {
  const auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with(".bias")) return at::zeros(shape, target_);
  if (shape.size() == 1 && ends_with(".weight")) return at::ones(shape, target_);
  // Drawn on the target device (a real-size model would take minutes on the CPU); CPU draws are seeded.
  at::Generator generator;
  if (target_.device().is_cpu()) generator = at::make_generator<at::CPUGeneratorImpl>(seed_ + used_.size());
  at::Tensor t = at::randn(shape, generator, target_.dtype(at::kFloat));
  return t.mul_(0.02).to(target_.dtype());
}

at::Tensor WeightLoader::get(const std::string& name, at::IntArrayRef expected_shape) {
  if (!checkpoint_) {
    used_.insert(name);
    return random_tensor(name, expected_shape);
  }
  if (!checkpoint_->contains(name))
    throw std::runtime_error(checkpoint_->path().string() + ": missing tensor '" + name + "' (expected shape " +
                             kernels::shape_string(expected_shape) + ")");
  const TensorInfo& info = checkpoint_->info(name);
  if (at::IntArrayRef(info.shape) != expected_shape)
    throw std::runtime_error(checkpoint_->path().string() + ": tensor '" + name + "' has shape " +
                             kernels::shape_string(info.shape) + ", the config expects " +
                             kernels::shape_string(expected_shape));
  if (!is_weight_dtype(info.dtype))
    throw std::runtime_error(checkpoint_->file_of(name).path().string() + ": tensor '" + name + "' is stored as " +
                             info.dtype_name + ", expected a floating point dtype (F32, F16, BF16 or F64)");
  used_.insert(name);
  return checkpoint_->load(name, target_);
}

std::vector<std::string> WeightLoader::unused(const std::vector<std::string>& prefixes) const {
  std::vector<std::string> names;
  if (!checkpoint_) return names;
  const auto wanted = [&](const std::string& name) {
    if (prefixes.empty()) return true;
    for (const std::string& prefix : prefixes)
      if (name.starts_with(prefix)) return true;
    return false;
  };
  for (const std::string& name : checkpoint_->names())
    if (!used_.count(name) && wanted(name)) names.push_back(name);
  return names;
}

void WeightLoader::check_all_used() const {
  const std::vector<std::string> names = unused();
  if (!names.empty())
    throw std::runtime_error(checkpoint_->path().string() + ": " + std::to_string(names.size()) +
                             " tensor(s) the config has no place for: " + join(names, ", ", 5));
}

}  // namespace sagevid
