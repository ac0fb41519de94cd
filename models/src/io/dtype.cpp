#include "sagevid/models/dtype.h"

#include "sagevid/models/config_reader.h"

#include <stdexcept>
#include <string>

namespace sagevid {
namespace {

struct NamedDtype {
  std::string_view name;
  c10::ScalarType type;
};
constexpr std::string_view kDtypeChoices = "float32, float16 or bfloat16";
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

c10::ScalarType read_dtype(ConfigReader& reader, c10::ScalarType default_value) {
  const std::string name = reader.get<std::string>("dtype", std::string(dtype_name(default_value)));
  if (auto dtype = dtype_from_name(name)) return *dtype;
  reader.fail("dtype", "'" + name + "': expected " + std::string(kDtypeChoices));
}

}  // namespace sagevid
