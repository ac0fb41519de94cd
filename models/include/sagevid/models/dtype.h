#pragma once
// The dtype names of configs, the command line and the API: float32, float16 and bfloat16.
#include <c10/core/ScalarType.h>

#include <optional>
#include <string_view>

namespace sagevid {

inline constexpr std::string_view kDtypeChoices = "float32, float16 or bfloat16";

std::optional<c10::ScalarType> dtype_from_name(std::string_view name);
// The name of float32, float16 or bfloat16; throws std::invalid_argument for another type.
std::string_view dtype_name(c10::ScalarType dtype);

}  // namespace sagevid
