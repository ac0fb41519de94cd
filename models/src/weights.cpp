#include "sagevid/models/weights.h"

#include <sstream>
#include <stdexcept>

namespace sagevid {
namespace {

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

}  // namespace

WeightLoader::WeightLoader(const std::filesystem::path& dir, const at::TensorOptions& target)
    : checkpoint_(SafetensorsModel::open(dir)), target_(target) {}

at::Tensor WeightLoader::get(const std::string& name, at::IntArrayRef expected_shape) {
  if (!checkpoint_.contains(name))
    throw std::runtime_error(checkpoint_.path().string() + ": missing tensor '" + name + "' (expected shape " +
                             shape_string(expected_shape) + ")");
  const TensorInfo& info = checkpoint_.info(name);
  if (at::IntArrayRef(info.shape) != expected_shape)
    throw std::runtime_error(checkpoint_.path().string() + ": tensor '" + name + "' has shape " +
                             shape_string(info.shape) + ", the config expects " + shape_string(expected_shape));
  used_.insert(name);
  return checkpoint_.load(name, target_);
}

void WeightLoader::check_all_used() const {
  std::string unused;
  int count = 0;
  for (const std::string& name : checkpoint_.names()) {
    if (used_.count(name)) continue;
    if (++count <= 5) unused += (unused.empty() ? "" : ", ") + name;
  }
  if (count > 0)
    throw std::runtime_error(checkpoint_.path().string() + ": " + std::to_string(count) +
                             " tensor(s) the config has no place for: " + unused + (count > 5 ? ", ..." : ""));
}

}  // namespace sagevid
