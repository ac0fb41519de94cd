#include "sagevid/models/dtype.h"

#include <stdexcept>
#include <string>

namespace sagevid {
namespace {

struct NamedDtype {
  std::string_view name;
  c10::ScalarType type;
};
constexpr NamedDtype kDtypes[] = {{"float32", c10::kFloat}, {"float16", c10::kHalf}, {"bfloat16", c10::kBFloat16}};

}  // namespace

std::optional<c10::ScalarType> dtype_from_name(std::string_view name) {
  for (const NamedDtype& d : kDtypes)
    if (d.name == name) return d.type;
  return std::nullopt;
}

std::string_view dtype_name(c10::ScalarType dtype) {
  for (const NamedDtype& d : kDtypes)
    if (d.type == dtype) return d.name;
  throw std::invalid_argument(std::string("no name for dtype ") + c10::toString(dtype));
}

}  // namespace sagevid
