#pragma once
// "[2, 3, 4]": how every layer's error messages print a tensor's shape.
#include <c10/util/ArrayRef.h>

#include <sstream>
#include <string>

namespace sagevid::kernels {

inline std::string shape_string(c10::IntArrayRef shape) {
  std::ostringstream out;
  out << shape;
  return out.str();
}

}  // namespace sagevid::kernels
