#pragma once
// "a, b, c": how messages list names (choices, models, tensors). One home, so every list reads the same.
#include <cstddef>
#include <limits>
#include <ranges>
#include <string>
#include <string_view>

namespace sagevid {

// The items (anything a std::string_view can be made from) between separators; past `limit` items the
// rest are cut to "...".
template <std::ranges::input_range Range>
std::string join(const Range& items, std::string_view separator = ", ",
                 std::size_t limit = std::numeric_limits<std::size_t>::max()) {
  std::string text;
  std::size_t count = 0;
  for (const auto& item : items) {
    if (count > 0) text += separator;
    if (count++ == limit) return text + "...";
    text += std::string_view(item);
  }
  return text;
}

}  // namespace sagevid
