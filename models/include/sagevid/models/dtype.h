#pragma once
// The dtype names of configs, the command line and the API: float32, float16 and bfloat16.
#include <c10/core/ScalarType.h>

#include <optional>
#include <string_view>

namespace sagevid {

class ConfigReader;

std::optional<c10::ScalarType> dtype_from_name(std::string_view name);
// The name of float32, float16 or bfloat16; throws std::invalid_argument for another type.
std::string_view dtype_name(c10::ScalarType dtype);
// The config key "dtype" (default_value when absent); another name fails naming the key.
c10::ScalarType read_dtype(ConfigReader& reader, c10::ScalarType default_value);

}  // namespace sagevid
